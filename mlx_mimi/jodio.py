"""JODIO, the codec of seed 002's module dump: the model (Mimi's offline, batch and stream plumbing around
JODIO's layers) and its checkpoint names (a PyTorch ``state_dict`` under the dump's module names)."""

from __future__ import annotations

from functools import partial
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .config import JodioConfig
from .errors import WeightsError
from .layers.linear import Dense
from .layers.quantizer import build_quantizer
from .layers.seanet import JodioDecoder, JodioEncoder
from .layers.transformer import Transformer
from .model import Mimi, in_tiles

DUMP_LAYOUT = "jodio-dump"
REPAIR = (
    "mlx-mimi's repair of the dump's decoder: post_vq_proj reads 256 features (printed: 6) and repair_proj, "
    "Linear(1028 -> 256), feeds the decoder transformer"
)


class Jodio(Mimi):
    """JODIO (``JodioConfig``). The same API as ``Mimi``: encode/decode, batches, streams.

    Codes are (B, 10, F) at 12.5 Hz: 2 semantic then 8 acoustic codebooks. ``decode`` returns F * 1920
    samples: the (repaired) decoder's F * 1920 - 2210, aligned with the input from its first sample, then 2210
    zeros; a stream decoder runs ``decoder_delay`` (2210) samples behind that (README, "JODIO").
    """

    def __init__(self, config: JodioConfig, dtype: mx.Dtype = mx.float32):
        nn.Module.__init__(self)
        self.config = config
        self.dtype = dtype
        c, d = config.channels, config.latent_dim
        if config.has_encoder:
            self.encoder = JodioEncoder(config)
            self.pre_vq_proj = Dense(c, d, bias=True)
            self.encoder_transformer = Transformer(config.encoder_transformer)
        self.quantizer = build_quantizer(config)
        if config.has_decoder:
            self.repair_proj = Dense(d, config.decoder_width, bias=True)  # the repair: not in the dump
            self.decoder_transformer = Transformer(config.decoder_transformer)
            self.post_vq_proj = Dense(config.decoder_width, c, bias=True)
            self.decoder = JodioDecoder(config)

    @property
    def decoder_delay(self) -> int:
        """Samples a stream decoder's output runs behind ``decode``'s (2210)."""
        return self.config.decoder_delay

    # -- state-passing cores ---------------------------------------------------------------------------
    def encoder_state(self, batch_size: int) -> dict[str, Any]:
        self._need("encoder")
        return {
            "seanet": self.encoder.initial_state(batch_size, self.dtype),
            "transformer": self.encoder_transformer.initial_state(batch_size, self.dtype),
        }

    def decoder_state(self, batch_size: int) -> dict[str, Any]:
        self._need("decoder")
        return {
            "transformer": self.decoder_transformer.initial_state(batch_size, self.dtype),
            "seanet": self.decoder.initial_state(batch_size, self.dtype),
        }

    def latent_chunk(
        self, pcm: mx.array, state: dict, final: bool = False, valid: mx.array | None = None
    ) -> tuple[mx.array, dict]:
        """pcm (B, T, 1) -> latent (B, ceil(T / 1920), 1028). A partial last frame (``final``) is padded with
        zeros. ``valid`` is accepted for the batch path and unused: a right-padded batch pads with zeros too,
        and no frame reads past its own first sample (+1), so each clip gets its own codes."""
        extra = (-pcm.shape[1]) % self.frame_size
        if extra:
            if not final:
                raise ValueError(f"input of {pcm.shape[1]} samples is not a whole number of frames")
            pcm = mx.concatenate([pcm, mx.zeros((pcm.shape[0], extra, pcm.shape[2]), dtype=pcm.dtype)], axis=1)
        x, seanet = in_tiles(self.encoder, pcm.astype(self.dtype), state["seanet"], self.frame_size)
        x, transformer = self.encoder_transformer(self.pre_vq_proj(x), state["transformer"])
        return x, {"seanet": seanet, "transformer": transformer}

    def decode_chunk(self, codes: mx.array, state: dict) -> tuple[mx.array, dict]:
        """codes (B, F, K) -> pcm (B, F * 1920, 1), ``decoder_delay`` samples behind ``decode``."""
        latent = self.quantizer.decode(codes).astype(self.dtype)
        x, transformer = self.decoder_transformer(self.repair_proj(latent), state["transformer"])
        pcm, seanet = in_tiles(self.decoder, self.post_vq_proj(x), state["seanet"], 1)
        return pcm, {"transformer": transformer, "seanet": seanet}

    # -- offline decoding: the printed decoder's alignment -------------------------------------------------
    def decode(self, codes: Any, chunk_frames: int | None = None) -> mx.array:
        """Codes (B, K, F) -> float32 audio (B, 1, F * 1920): the decoder's F * 1920 - 2210 samples, then zeros."""
        return self._align(super().decode(codes, chunk_frames))

    def _align(self, pcm: mx.array) -> mx.array:
        """Stream-aligned audio (B, 1, N) -> offline alignment: ``decoder_delay`` samples earlier, zero tail."""
        ahead = pcm[..., self.decoder_delay :]
        tail = mx.zeros((*pcm.shape[:-1], pcm.shape[-1] - ahead.shape[-1]), dtype=pcm.dtype)
        return mx.concatenate([ahead, tail], axis=-1)

    def _clip_audio(self, audio: mx.array, frames: int) -> mx.array:
        """One clip of a batched ``decode``: its own frames, and zeros where its decoder output ends (the batch's
        padding frames decoded into them)."""
        n = frames * self.frame_size
        keep = max(n - self.decoder_delay, 0)
        return mx.concatenate([audio[:keep], mx.zeros((n - keep,), dtype=audio.dtype)])


# -- the dump's names ---------------------------------------------------------------------------------------
def is_dump_layout(names: set[str]) -> bool:
    return any(
        n.startswith(("semantic_rvq.quantizers.", "encoder.conv_blocks.", "decoder.conv_blocks.")) for n in names
    )


def dump_config(names: set[str], config: JodioConfig | None) -> JodioConfig:
    """The config for a dump-layout checkpoint: the given one (a config.json beside it) or the dump's sizes.

    A file without ``repair_proj`` (a checkpoint of the dump as printed) is an error naming the repair unless
    the config asks for the encoder only.
    """
    config = config or JodioConfig()
    if config.has_decoder and "repair_proj.weight" not in names:
        raise WeightsError(
            "JODIO checkpoint without repair_proj.weight: the dump's decoder has no layer from the 1028-wide codes "
            "to its 256-wide transformer, so this file can only encode. Load it encoder-only "
            "(load(..., decoder=False); CLI: mimi convert --encoder-only). See README, 'JODIO'"
        )
    return config


def _strided_matrix(w: np.ndarray) -> np.ndarray:
    """Conv1d weight (out, in, K) -> (out, K * in) for ShortStridedConv1d (taps outermost)."""
    out, cin, k = w.shape
    return w.transpose(0, 2, 1).reshape(out, k * cin)


def sanitize_dump(tensors: dict[str, np.ndarray], config: JodioConfig) -> dict[str, np.ndarray]:
    """A JODIO state_dict under the dump's names (weight norm folded) -> this package's names and layouts."""
    # weights.py owns the layouts' shared pieces; it imports this module, so they are imported here
    from .weights import _first_of, conv_matrix, convtr_matrix

    stride_1 = partial(conv_matrix, stride=1)
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in tensors:
            raise WeightsError(f"missing tensor {name!r} (JODIO dump layout)")
        used.add(name)
        return np.asarray(tensors[name], dtype=np.float32)

    out: dict[str, np.ndarray] = {}

    def conv(ours: str, src: str, matrix) -> None:
        out[ours + ".weight"] = matrix(take(src + ".weight"))
        out[ours + ".bias"] = take(src + ".bias")

    def dense(ours: str, src: str, shape: tuple[int, int]) -> None:
        w = take(src + ".weight")
        if w.shape != shape:
            hint = f": {REPAIR}" if src == "post_vq_proj" else ""
            raise WeightsError(f"tensor {src + '.weight'!r} has shape {w.shape}, expected {shape}{hint}")
        out[ours + ".weight"] = w
        out[ours + ".bias"] = take(src + ".bias")

    if config.has_encoder:
        conv("encoder.input_proj", "encoder.input_proj", stride_1)
        for i in range(len(config.ratios)):
            src = f"encoder.conv_blocks.{i}"
            for j in range(len(config.dilations)):
                conv(f"encoder.blocks.{i}.units.{j}.conv", f"{src}.layers.{j}.0", stride_1)
            conv(f"encoder.blocks.{i}.downsample", f"{src}.downsample", _strided_matrix)
        conv("encoder.final_conv", "encoder.final_conv", _strided_matrix)
        dense("pre_vq_proj", "pre_vq_proj", (config.latent_dim, config.channels))
        _transformer(out, take, "encoder_transformer", config.encoder_transformer, config)
    for path in ("semantic", "acoustic"):
        count = config.num_semantic_quantizers if path == "semantic" else config.num_acoustic_quantizers
        books = np.stack([take(f"{path}_rvq.quantizers.{j}.codebook.weight") for j in range(count)])
        out[f"quantizer.{path}.codebooks"] = books
        out[f"quantizer.{path}.half_sq_norms"] = (0.5 * (books.astype(np.float64) ** 2).sum(-1)).astype(np.float32)
    if config.has_decoder:
        dense("repair_proj", "repair_proj", (config.decoder_width, config.latent_dim))
        _transformer(out, take, "decoder_transformer", config.decoder_transformer, config)
        dense("post_vq_proj", "post_vq_proj", (config.channels, config.decoder_width))
        conv("decoder.initial_upsample", "decoder.initial_upsample", convtr_matrix)
        for i in range(len(config.ratios)):
            src = f"decoder.conv_blocks.{i}"
            conv(f"decoder.blocks.{i}.upsample", f"{src}.upsample", convtr_matrix)
            for j in range(len(config.dilations)):
                conv(f"decoder.blocks.{i}.units.{j}.conv", f"{src}.layers.{j}.0", stride_1)
        conv("decoder.final_proj", "decoder.final_proj", stride_1)
    dropped = () if config.has_decoder else ("decoder.", "decoder_transformer.", "post_vq_proj.", "repair_proj.")
    dropped += () if config.has_encoder else ("encoder.", "encoder_transformer.", "pre_vq_proj.")
    extra = sorted(n for n in tensors if n not in used and not n.startswith(dropped or ("\0",)))
    if extra:
        raise WeightsError(f"unexpected tensor {_first_of(extra)} in the JODIO checkpoint")
    return out


def _transformer(out: dict, take, side: str, spec, config: JodioConfig) -> None:
    from .weights import interleaved_to_rotate_half  # weights.py imports this module

    for i in range(spec.num_layers):
        src, ours = f"{side}.layers.{i}.", f"{side}.layers.{i}."
        q, k, v = (take(f"{src}attention.{p}_proj.weight") for p in "qkv")
        if config.rope_layout == "interleaved":
            q, k = interleaved_to_rotate_half(q, spec.num_heads), interleaved_to_rotate_half(k, spec.num_heads)
        out[ours + "attn.qkv.weight"] = np.concatenate([q, k, v], axis=0)
        out[ours + "attn.out.weight"] = take(src + "attention.out_proj.weight")
        out[ours + "mlp.fc1.weight"] = take(src + "feed_forward.linear1.weight")
        out[ours + "mlp.fc2.weight"] = take(src + "feed_forward.linear2.weight")
        out[ours + "attn_norm.weight"] = take(src + "attention_norm.weight")
        out[ours + "mlp_norm.weight"] = take(src + "mlp_norm.weight")
    out[f"{side}.norm.weight"] = take(f"{side}.norm.weight")
