"""MimiConfig: the architecture, read from a checkpoint's config.json, with the values derived from it."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class MimiConfig:
    """The fields of transformers' ``MimiConfig``; the defaults are those of ``kyutai/mimi``."""

    sampling_rate: int = 24_000
    audio_channels: int = 1
    hidden_size: int = 512
    num_filters: int = 64
    num_residual_layers: int = 1
    upsampling_ratios: list[int] = field(default_factory=lambda: [8, 6, 5, 4])
    kernel_size: int = 7
    last_kernel_size: int = 3
    residual_kernel_size: int = 3
    dilation_growth_rate: int = 2
    use_causal_conv: bool = True
    pad_mode: str = "constant"
    compress: int = 2
    trim_right_ratio: float = 1.0
    codebook_size: int = 2048
    codebook_dim: int = 256
    num_quantizers: int = 32
    use_conv_shortcut: bool = False
    vector_quantization_hidden_dimension: int = 256
    num_semantic_quantizers: int = 1
    upsample_groups: int = 512
    num_hidden_layers: int = 8
    intermediate_size: int = 2048
    num_attention_heads: int = 8
    num_key_value_heads: int = 8
    head_dim: int | None = None
    hidden_act: str = "gelu"
    max_position_embeddings: int = 8000
    norm_eps: float = 1e-5
    rope_theta: float = 10_000.0
    sliding_window: int = 250
    layer_scale_initial_scale: float = 0.01
    attention_bias: bool = False
    frame_rate: float | None = None
    # Which halves a (converted) checkpoint carries; an encoder-only file cannot decode.
    has_encoder: bool = True
    has_decoder: bool = True

    def __post_init__(self) -> None:
        self.upsampling_ratios = list(self.upsampling_ratios)
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        self.validate()

    # -- derived values ---------------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """Samples per step of the SEANet encoder (960: the transformer runs at 25 Hz)."""
        return math.prod(self.upsampling_ratios)

    @property
    def encoder_rate(self) -> float:
        """Steps per second of the SEANet output and of both transformers (25 Hz)."""
        return self.sampling_rate / self.hop_length

    @property
    def downsample_stride(self) -> int:
        """Transformer steps per code frame (2): the stride of the downsample/upsample convs."""
        if self.frame_rate is None:
            return 2
        return max(1, int(round(math.ceil(self.encoder_rate) / self.frame_rate)))

    @property
    def frame_size(self) -> int:
        """Samples per code frame (1920)."""
        return self.hop_length * self.downsample_stride

    @property
    def frame_rate_hz(self) -> float:
        """Code frames per second (12.5)."""
        return self.sampling_rate / self.frame_size

    @property
    def num_codebooks(self) -> int:
        return self.num_quantizers

    @property
    def num_acoustic_quantizers(self) -> int:
        return self.num_quantizers - self.num_semantic_quantizers

    @property
    def seanet_ratios(self) -> list[int]:
        """Encoder strides, input side first (4, 5, 6, 8)."""
        return list(reversed(self.upsampling_ratios))

    def validate(self) -> None:
        if not 0 < self.num_semantic_quantizers < self.num_quantizers:
            raise ValueError(
                f"num_semantic_quantizers must be in [1, num_quantizers); got {self.num_semantic_quantizers} "
                f"of {self.num_quantizers}"
            )
        if not self.use_causal_conv:
            raise ValueError("mlx-mimi implements the causal Mimi only (use_causal_conv=true)")
        if self.audio_channels != 1:
            raise ValueError(f"mlx-mimi supports mono Mimi only; config has audio_channels={self.audio_channels}")
        if self.trim_right_ratio != 1.0:
            raise ValueError(f"only trim_right_ratio=1.0 is supported, got {self.trim_right_ratio}")
        if self.hidden_act not in ("gelu",):
            raise ValueError(f"unsupported hidden_act {self.hidden_act!r} (Mimi uses exact 'gelu')")
        if self.num_key_value_heads != self.num_attention_heads:
            raise ValueError("grouped-query attention is not used by Mimi and not supported")

    # -- (de)serialisation ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MimiConfig:
        data = dict(data)
        rope = data.pop("rope_parameters", None) or data.pop("rope_scaling", None)
        if isinstance(rope, dict) and "rope_theta" in rope and "rope_theta" not in data:
            data["rope_theta"] = rope["rope_theta"]
        if data.get("encoder_config", "absent") is None:
            data["has_encoder"] = False
        if data.get("decoder_config", "absent") is None:
            data["has_decoder"] = False
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names and v is not None})

    @classmethod
    def from_file(cls, path: str | Path) -> MimiConfig:
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model_type"] = "mimi"
        return out
