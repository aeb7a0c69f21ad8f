"""Mimi's config from a checkpoint's config.json, the per-component configs its layers take (SEANetConfig,
TransformerConfig, QuantizerConfig), and what every codec config shares (CodecConfig)."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError


class CodecConfig:
    """What the codec plumbing (codec.py, streaming, the CLI) reads from any codec's config. Subclasses are
    dataclasses with ``sampling_rate``, ``codebook_size``, ``num_quantizers``, ``num_semantic_quantizers``,
    ``has_encoder``, ``has_decoder``, ``quantization`` fields, a ``frame_size`` and a ``quantizer`` property."""

    model_type: typing.ClassVar[str] = ""

    @property
    def num_codebooks(self) -> int:
        return self.num_quantizers

    @property
    def num_acoustic_quantizers(self) -> int:
        return self.num_quantizers - self.num_semantic_quantizers

    @property
    def frame_rate_hz(self) -> float:
        """Code frames per second (12.5)."""
        return self.sampling_rate / self.frame_size

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in cls._renamed(dict(data)).items() if k in names and v is not None})

    @classmethod
    def _renamed(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Older or foreign spellings of fields -> ours (none by default)."""
        return data

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model_type"] = self.model_type
        return out


@dataclass(frozen=True)
class SEANetConfig:
    """Mimi's SEANet encoder and decoder (the decoder mirrors the encoder)."""

    audio_channels: int
    num_filters: int
    hidden_size: int
    ratios: tuple[int, ...]  # encoder strides, input side first (4, 5, 6, 8)
    kernel_size: int
    last_kernel_size: int
    residual_kernel_size: int
    dilation_growth_rate: int
    num_residual_layers: int
    compress: int


@dataclass(frozen=True)
class QuantizerConfig:
    """The codebooks and how they are wired (layers/quantizer.py).

    "split" (Mimi's): a semantic RVQ of ``num_semantic`` codebooks and an acoustic RVQ of the rest both read the
    latent (``acoustic_input`` "residual": what the semantic one leaves), and decoding sums them. "chain" (the
    9-codebook variant): stages of ``chain_stages`` codebooks, each quantizing what the stages before it leave of
    the latent; decoding sums every stage's output.
    """

    dim: int  # the latent's width
    codebook_dim: int | None  # width of the 1x1-projected space the codebooks live in; None: no projections
    codebook_size: int
    num_codebooks: int
    num_semantic: int
    topology: str = "split"
    chain_stages: tuple[int, ...] | None = None
    chain_projections: tuple[bool, ...] | None = None  # per chain stage: 1x1 projections around its codebooks?
    acoustic_input: str = "latent"

    @property
    def num_acoustic(self) -> int:
        return self.num_codebooks - self.num_semantic


@dataclass
class MimiConfig(CodecConfig):
    """The fields of transformers' ``MimiConfig``; the defaults are those of ``kyutai/mimi``."""

    model_type: typing.ClassVar[str] = "mimi"

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
    # A quantized converted checkpoint: {"bits", "group_size", "mode": "affine", "modules": [quantized layers]}.
    quantization: dict | None = None
    # How the codebooks are wired (layers/quantizer.py). "split" is Mimi's: a semantic RVQ
    # (num_semantic_quantizers codebooks) and an acoustic RVQ (the rest) both read the latent, and decoding
    # sums them. "chain" is the 9-codebook variant (mlx_mimi/variant.py): stages of chain_stages codebooks
    # (content 1, prosody 1, acoustic 7), each with its own 1x1 projections, each quantizing what the stages
    # before it leave of the latent; decoding sums every stage's output.
    quantizer_topology: str = "split"
    chain_stages: list[int] | None = None
    # Per chain stage, whether its codebooks live in a 1x1-projected space (vector_quantization_hidden_dimension)
    # or on the latent itself. None: every stage projected (folders written before the content head followed
    # seed 003's VectorQuantize(dim=512), which has no projection). The 9-codebook variant: [false, true, true].
    chain_projections: list[bool] | None = None
    # Written by mlx-mimi before the distillation bridges moved to the training checkpoints: read and ignored.
    distill_dim: int | None = None

    def __post_init__(self) -> None:
        check_types(self)
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
    def seanet_ratios(self) -> list[int]:
        """Encoder strides, input side first (4, 5, 6, 8)."""
        return list(reversed(self.upsampling_ratios))

    def validate(self) -> None:
        positive = (
            "sampling_rate",
            "hidden_size",
            "num_filters",
            "kernel_size",
            "last_kernel_size",
            "residual_kernel_size",
            "dilation_growth_rate",
            "compress",
            "codebook_size",
            "codebook_dim",
            "num_quantizers",
            "vector_quantization_hidden_dimension",
            "num_hidden_layers",
            "intermediate_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "sliding_window",
            "max_position_embeddings",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"config field {name!r} must be >= 1, got {getattr(self, name)!r}")
        if self.num_residual_layers < 0:
            raise ConfigError(f"config field 'num_residual_layers' must be >= 0, got {self.num_residual_layers}")
        if not self.upsampling_ratios or any(r < 1 for r in self.upsampling_ratios):
            raise ConfigError(f"config field 'upsampling_ratios' must be positive ints, got {self.upsampling_ratios}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim must be even for RoPE, got {self.head_dim}")
        for name in ("norm_eps", "rope_theta", "layer_scale_initial_scale"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ConfigError(f"config field {name!r} must be a positive number, got {getattr(self, name)!r}")
        if self.frame_rate is not None and not (math.isfinite(self.frame_rate) and self.frame_rate > 0):
            raise ConfigError(f"config field 'frame_rate' must be a positive number, got {self.frame_rate!r}")
        if not 0 < self.num_semantic_quantizers < self.num_quantizers:
            raise ConfigError(
                f"num_semantic_quantizers must be in [1, num_quantizers); got {self.num_semantic_quantizers} "
                f"of {self.num_quantizers}"
            )
        if self.use_conv_shortcut:
            raise ConfigError("use_conv_shortcut=true is not supported (Mimi uses identity skips)")
        if not self.use_causal_conv:
            raise ConfigError("mlx-mimi implements the causal Mimi only (use_causal_conv=true)")
        if self.audio_channels != 1:
            raise ConfigError(f"mlx-mimi supports mono Mimi only; config has audio_channels={self.audio_channels}")
        if self.trim_right_ratio != 1.0:
            raise ConfigError(f"only trim_right_ratio=1.0 is supported, got {self.trim_right_ratio}")
        if self.hidden_act not in ("gelu",):
            raise ConfigError(f"unsupported hidden_act {self.hidden_act!r} (Mimi uses exact 'gelu')")
        if self.num_key_value_heads != self.num_attention_heads:
            raise ConfigError("grouped-query attention is not used by Mimi and not supported")
        if self.pad_mode != "constant":
            raise ConfigError(f"only pad_mode 'constant' is supported, got {self.pad_mode!r}")
        if self.quantization is not None:
            check_quantization(self.quantization)
        self._validate_topology()

    def _validate_topology(self) -> None:
        if self.quantizer_topology not in ("split", "chain"):
            raise ConfigError(f"quantizer_topology must be 'split' or 'chain', got {self.quantizer_topology!r}")
        if self.quantizer_topology == "split":
            if self.chain_stages is not None or self.chain_projections is not None:
                raise ConfigError("chain_stages and chain_projections apply to quantizer_topology 'chain' only")
            return
        stages = self.chain_stages
        if not stages or any(n < 1 for n in stages) or sum(stages) != self.num_quantizers:
            raise ConfigError(
                f"chain_stages must be positive codebook counts summing to num_quantizers ({self.num_quantizers}), "
                f"got {stages!r}"
            )
        if self.num_semantic_quantizers != stages[0]:
            raise ConfigError(
                f"num_semantic_quantizers ({self.num_semantic_quantizers}) must equal the first chain stage "
                f"({stages[0]}): it is the fewest codebooks a code frame can have"
            )
        if self.chain_projections is not None and len(self.chain_projections) != len(stages):
            raise ConfigError(
                f"chain_projections must give one true/false per chain stage ({len(stages)}), "
                f"got {self.chain_projections!r}"
            )

    # -- (de)serialisation ------------------------------------------------------------------------------
    @classmethod
    def _renamed(cls, data: dict[str, Any]) -> dict[str, Any]:
        """transformers' spellings: rope_parameters / rope_scaling, encoder/decoder_config None for a missing half."""
        rope = data.pop("rope_parameters", None) or data.pop("rope_scaling", None)
        if isinstance(rope, dict) and "rope_theta" in rope and "rope_theta" not in data:
            data["rope_theta"] = rope["rope_theta"]
        if data.get("encoder_config", "absent") is None:
            data["has_encoder"] = False
        if data.get("decoder_config", "absent") is None:
            data["has_decoder"] = False
        return data

    # -- the components' configs -------------------------------------------------------------------------
    @property
    def seanet(self) -> SEANetConfig:
        return SEANetConfig(
            audio_channels=self.audio_channels,
            num_filters=self.num_filters,
            hidden_size=self.hidden_size,
            ratios=tuple(self.seanet_ratios),
            kernel_size=self.kernel_size,
            last_kernel_size=self.last_kernel_size,
            residual_kernel_size=self.residual_kernel_size,
            dilation_growth_rate=self.dilation_growth_rate,
            num_residual_layers=self.num_residual_layers,
            compress=self.compress,
        )

    @property
    def quantizer(self) -> QuantizerConfig:
        return QuantizerConfig(
            dim=self.hidden_size,
            codebook_dim=self.vector_quantization_hidden_dimension,
            codebook_size=self.codebook_size,
            num_codebooks=self.num_quantizers,
            num_semantic=self.num_semantic_quantizers,
            topology=self.quantizer_topology,
            chain_stages=tuple(self.chain_stages) if self.chain_stages else None,
            chain_projections=tuple(self.chain_projections) if self.chain_projections else None,
        )

    @property
    def transformer(self) -> TransformerConfig:
        """Both of Mimi's transformers: LayerNorm, LayerScale, RoPE, a 250-step window, no final norm."""
        return TransformerConfig(
            hidden_size=self.hidden_size,
            num_layers=self.num_hidden_layers,
            num_heads=self.num_attention_heads,
            head_dim=self.head_dim,
            intermediate_size=self.intermediate_size,
            window=self.sliding_window,
            norm="layer_norm",
            norm_eps=self.norm_eps,
            layer_scale=self.layer_scale_initial_scale,
            rope_theta=self.rope_theta,
            bias=self.attention_bias,
        )


@dataclass(frozen=True)
class TransformerConfig:
    """One transformer stack, as layers/transformer.py builds it (Mimi's two share one; JODIO's two differ)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    head_dim: int
    intermediate_size: int
    window: int  # a query sees itself and the window - 1 steps before it
    norm: str = "layer_norm"  # or "rms_norm" (a weight, no bias)
    norm_eps: float = 1e-5
    layer_scale: float | None = 0.01  # LayerScale's initial value; None: no LayerScale
    rope: bool = True
    rope_theta: float = 10_000.0
    activation: str = "gelu"  # exact GELU, or "silu"
    final_norm: bool = False
    bias: bool = False


def _type_ok(value: Any, kind: Any) -> bool:
    """Whether a JSON value fits a field annotation (int, float, bool, str, list[int], X | None)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return any(_type_ok(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:  # JSON has no int/bool distinction problem, but Python does: True is an int
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return isinstance(value, (list, tuple)) and all(_type_ok(v, item) for v in value)
    return True


def check_types(config: Any) -> None:
    """One ConfigError naming the first field whose value has the wrong type (before any arithmetic on it)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _type_ok(value, hints[f.name]):
            raise ConfigError(
                f"config field {f.name!r} has the wrong type: {value!r} is not {_type_name(hints[f.name])}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config field {f.name!r} must be finite, got {value!r}")


def _type_name(kind: Any) -> str:
    return str(kind).replace("typing.", "").replace("<class '", "").replace("'>", "")


def check_quantization(q: dict) -> None:
    bits, group, modules = q.get("bits"), q.get("group_size"), q.get("modules")
    if bits not in (2, 3, 4, 5, 6, 8) or isinstance(bits, bool):
        raise ConfigError(f"quantization bits must be one of 2, 3, 4, 5, 6, 8, got {bits!r}")
    if group not in (32, 64, 128) or isinstance(group, bool):
        raise ConfigError(f"quantization group_size must be 32, 64 or 128, got {group!r}")
    if q.get("mode", "affine") != "affine":
        raise ConfigError(f"only affine quantization is supported, got mode {q.get('mode')!r}")
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError("quantization modules must be a list of layer names")


def config_from_file(path: str | Path) -> Any:
    """The JSON object in a config.json (what kind of config it is, the loader's registry decides)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON config ({exc})") from exc
