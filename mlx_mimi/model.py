"""Mimi: its layers (SEANet, transformers, frame-rate convs, split RVQ) and the four state-passing cores the codec
base (codec.py) runs offline and streaming."""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from .codec import Codec
from .config import MimiConfig
from .layers.conv import CausalConv1d, DepthwiseUpsample
from .layers.quantizer import build_quantizer
from .layers.seanet import SEANetDecoder, SEANetEncoder
from .layers.transformer import Transformer
from .schedule import Schedule

STAGE_NAMES = ("content", "prosody", "acoustic")  # the 9-codebook variant's chain (variant.py)


class Mimi(Codec):
    """Kyutai's Mimi (``MimiConfig``): encode, decode, batches and streams (codec.py)."""

    PADS_PER_CLIP = True  # its strided convs pad a clip's partial last frame by the clip's own rule
    ENCODER_PARTS = ("encoder", "encoder_transformer", "downsample")
    DECODER_PARTS = ("upsample", "decoder_transformer", "decoder")

    def __init__(self, config: MimiConfig, dtype: mx.Dtype = mx.float32):
        super().__init__(config, dtype)
        stride = config.downsample_stride
        d = config.hidden_size
        if config.has_encoder:
            self.encoder = SEANetEncoder(config.seanet)
            self.encoder_transformer = Transformer(config.transformer)
            self.downsample = CausalConv1d(d, d, 2 * stride, stride=stride, bias=False, pad_mode="replicate")
        self.quantizer = build_quantizer(config.quantizer)
        if config.has_decoder:
            self.upsample = DepthwiseUpsample(d, stride)
            self.decoder_transformer = Transformer(config.transformer)
            self.decoder = SEANetDecoder(config.seanet)

    # -- state-passing cores (shared by offline and streaming) ------------------------------------------
    def encoder_state(self, batch_size: int) -> dict[str, Any]:
        self._need("encoder")
        return {
            "seanet": self.encoder.initial_state(batch_size, self.dtype),
            "transformer": self.encoder_transformer.initial_state(batch_size, self.dtype),
            "downsample": self.downsample.initial_state(batch_size, self.dtype),
        }

    def decoder_state(self, batch_size: int) -> dict[str, Any]:
        self._need("decoder")
        return {
            "upsample": self.upsample.initial_state(batch_size, self.dtype),
            "transformer": self.decoder_transformer.initial_state(batch_size, self.dtype),
            "seanet": self.decoder.initial_state(batch_size, self.dtype),
        }

    def latent_chunk(
        self, pcm: mx.array, state: dict, schedule: Schedule, final: bool = False, valid: mx.array | None = None
    ) -> tuple[mx.array, dict]:
        """pcm (B, T, 1) -> the quantizer's input latent (B, F, hidden). T is a multiple of the frame size
        unless ``final``. ``valid`` (B,) int: samples of each clip of a right-padded batch in this chunk."""
        pcm = pcm.astype(self.dtype)
        out = self.encoder.tiled(pcm, state["seanet"], schedule, self.frame_size, final, valid)
        x, seanet = out[0], out[1]
        valid = out[2] if valid is not None else None
        fresh = state["transformer"]["pos"] == 0
        x, transformer = self.encoder_transformer(x, state["transformer"], schedule)
        x, down = self.downsample(x, state["downsample"], fresh=fresh, final=final, valid=valid)
        return x, {"seanet": seanet, "transformer": transformer, "downsample": down}

    def decode_latent_chunk(self, latent: mx.array, state: dict, schedule: Schedule) -> tuple[mx.array, dict]:
        """latent (B, F, hidden) float32 -> pcm (B, F * frame_size, 1) in the model dtype."""
        x, up = self.upsample(latent.astype(self.dtype), state["upsample"])
        x, transformer = self.decoder_transformer(x, state["transformer"], schedule)
        if schedule.evaluation_points:
            mx.eval(x, transformer)
        pcm, seanet = self.decoder.tiled(x, state["seanet"], schedule, self.config.downsample_stride)
        return pcm, {"upsample": up, "transformer": transformer, "seanet": seanet}

    # -- what `mimi info` says --------------------------------------------------------------------------
    def describe(self) -> list[str]:
        c = self.config
        if c.quantizer_topology == "chain":
            stages = ", ".join(f"{name} {n}" for name, n in zip(STAGE_NAMES, c.chain_stages, strict=False))
            projected = c.chain_projections or [True] * len(c.chain_stages)
            spaces = ", ".join(
                f"{name} {c.codebook_dim if p else c.hidden_size}-d"
                for name, p in zip(STAGE_NAMES, projected, strict=False)
            )
            wiring = f"in a chain: {stages}; codebooks {spaces}"
        else:
            wiring = f"{c.num_semantic_quantizers} semantic + {c.num_acoustic_quantizers} acoustic, split"
        return [
            f"codebooks: {c.num_quantizers} ({wiring}) x {c.codebook_size} entries"
            + ("" if c.quantizer_topology == "chain" else f", {c.codebook_dim}-d"),
            f"encoder: SEANet strides {c.seanet_ratios}, transformer {c.num_hidden_layers} layers d={c.hidden_size} "
            f"{c.num_attention_heads} heads, window {c.sliding_window} steps at {c.encoder_rate:g} Hz",
        ]
