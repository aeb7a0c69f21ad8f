"""JODIO, the codec of seed 002's module dump: its layers and the four state-passing cores the codec base runs."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ..codec import Codec
from ..layers.linear import Dense
from ..layers.quantizer import build_quantizer
from ..layers.tiles import in_tiles, tile_steps
from ..layers.transformer import Transformer
from ..schedule import Schedule
from .config import JodioConfig
from .layers import JodioDecoder, JodioEncoder
from .layout import REPAIR


class Jodio(Codec):
    """JODIO (``JodioConfig``). The same API as ``Mimi``: encode/decode, batches, streams.

    Codes are (B, 10, F) at 12.5 Hz: 2 semantic then 8 acoustic codebooks. ``decode`` returns F * 1920
    samples: the (repaired) decoder's F * 1920 - 2210, aligned with the input from its first sample, then 2210
    zeros; a stream decoder runs ``decoder_delay`` (2210) samples behind that (README, "JODIO"). A right-padded
    batch pads with zeros, as a clip alone is padded, and no frame reads past its own first sample (+1), so each
    clip gets its own codes without per-clip padding (``PADS_PER_CLIP`` is false).
    """

    ENCODER_PARTS = ("encoder", "pre_vq_proj", "encoder_transformer")
    DECODER_PARTS = ("repair_proj", "decoder_transformer", "post_vq_proj", "decoder")

    def __init__(self, config: JodioConfig, dtype: mx.Dtype = mx.float32):
        super().__init__(config, dtype)
        c, d = config.channels, config.latent_dim
        if config.has_encoder:
            self.encoder = JodioEncoder(config.seanet)
            self.pre_vq_proj = Dense(c, d, bias=True)
            self.encoder_transformer = Transformer(config.encoder_transformer)
        self.quantizer = build_quantizer(config.quantizer)
        if config.has_decoder:
            self.repair_proj = Dense(d, config.decoder_width, bias=True)  # the repair: not in the dump
            self.decoder_transformer = Transformer(config.decoder_transformer)
            self.post_vq_proj = Dense(config.decoder_width, c, bias=True)
            self.decoder = JodioDecoder(config.seanet)

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
        self, pcm: mx.array, state: dict, schedule: Schedule, final: bool = False
    ) -> tuple[mx.array, dict]:
        """pcm (B, T, 1) -> latent (B, ceil(T / 1920), 1028). A partial last frame (``final``) is padded with
        zeros."""
        extra = (-pcm.shape[1]) % self.frame_size
        if extra:
            if not final:
                raise ValueError(f"input of {pcm.shape[1]} samples is not a whole number of frames")
            pcm = mx.concatenate([pcm, mx.zeros((pcm.shape[0], extra, pcm.shape[2]), dtype=pcm.dtype)], axis=1)
        size = tile_steps(schedule.seanet_tile_frames, self.frame_size)
        x, seanet = in_tiles(self.encoder, pcm.astype(self.dtype), state["seanet"], size)
        x, transformer = self.encoder_transformer(self.pre_vq_proj(x), state["transformer"], schedule)
        return x, {"seanet": seanet, "transformer": transformer}

    def decode_latent_chunk(self, latent: mx.array, state: dict, schedule: Schedule) -> tuple[mx.array, dict]:
        """latent (B, F, 1028) float32 -> pcm (B, F * 1920, 1), ``decoder_delay`` samples behind ``decode``."""
        x, transformer = self.decoder_transformer(
            self.repair_proj(latent.astype(self.dtype)), state["transformer"], schedule
        )
        size = tile_steps(schedule.seanet_tile_frames, 1)
        pcm, seanet = in_tiles(self.decoder, self.post_vq_proj(x), state["seanet"], size)
        return pcm, {"transformer": transformer, "seanet": seanet}

    # -- offline decoding: the printed decoder's alignment -------------------------------------------------
    def finish_decode(self, pcm: mx.array) -> mx.array:
        """Stream-aligned audio (B, 1, N) -> offline alignment: ``decoder_delay`` samples earlier, zero tail."""
        ahead = pcm[..., self.decoder_delay :]
        tail = mx.zeros((*pcm.shape[:-1], pcm.shape[-1] - ahead.shape[-1]), dtype=pcm.dtype)
        return mx.concatenate([ahead, tail], axis=-1)

    def clip_audio(self, audio: mx.array, frames: int) -> mx.array:
        """One clip of a batched ``decode``: its own frames, and zeros where its decoder output ends (the batch's
        padding frames decoded into them)."""
        n = frames * self.frame_size
        keep = max(n - self.decoder_delay, 0)
        return mx.concatenate([audio[:keep], mx.zeros((n - keep,), dtype=audio.dtype)])

    # -- what `mimi info` says --------------------------------------------------------------------------
    def describe(self) -> list[str]:
        c = self.config
        readings = (
            f"residual={str(c.residual).lower()}, input_lookahead={c.input_lookahead}, rope={str(c.rope).lower()} "
            f"({c.rope_layout}), mlp={c.mlp_activation}, norm_eps={c.norm_eps:g}, acoustic_input={c.acoustic_input}"
        )
        lines = [
            "architecture: JODIO (seed 002's module dump; README, 'JODIO')",
            f"codebooks: {c.num_quantizers} ({c.num_semantic_quantizers} semantic + {c.num_acoustic_quantizers} "
            f"acoustic, split, no projections) x {c.codebook_size} entries, {c.latent_dim}-d",
            f"encoder: SEANet {c.channels} ch strides {c.ratios} + {c.final_stride}, SiLU, transformer "
            f"{c.encoder_layers} layers d={c.latent_dim} {c.encoder_heads} heads, RMSNorm, window {c.attention_window}",
            f"readings: {readings}",
        ]
        if c.has_decoder:
            lines.append(f"decoder repair: {REPAIR}")
            lines.append(f"decoder output: F * {c.frame_size} - {c.decoder_delay} samples, zero-padded at the end")
        else:
            lines.append("decoder repair: none loaded (encoder only)")
        return lines
