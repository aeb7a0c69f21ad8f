"""Model configs read from a checkpoint's config.json: MimiConfig, JodioConfig, and the values derived from them."""

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
    # A quantized converted checkpoint: {"bits", "group_size", "mode": "affine", "modules": [quantized layers]}.
    quantization: dict | None = None
    # How the codebooks are wired (layers/quantizer.py). "split" is Mimi's: a semantic RVQ
    # (num_semantic_quantizers codebooks) and an acoustic RVQ (the rest) both read the latent, and decoding
    # sums them. "chain" is the 9-codebook variant (mlx_mimi/variant.py): stages of chain_stages codebooks
    # (content 1, prosody 1, acoustic 7), each with its own 1x1 projections, each quantizing what the stages
    # before it leave of the latent; decoding sums every stage's output.
    quantizer_topology: str = "split"
    chain_stages: list[int] | None = None
    # The chain's distillation bridge: content stage output -> teacher features of this width (training).
    distill_dim: int | None = None

    def __post_init__(self) -> None:
        _check_types(self)
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
            _check_quantization(self.quantization)
        self._validate_topology()

    def _validate_topology(self) -> None:
        if self.quantizer_topology not in ("split", "chain"):
            raise ConfigError(f"quantizer_topology must be 'split' or 'chain', got {self.quantizer_topology!r}")
        if self.quantizer_topology == "split":
            if self.chain_stages is not None or self.distill_dim is not None:
                raise ConfigError("chain_stages and distill_dim apply to quantizer_topology 'chain' only")
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
        if self.distill_dim is not None and self.distill_dim < 1:
            raise ConfigError(f"config field 'distill_dim' must be >= 1, got {self.distill_dim!r}")

    # -- (de)serialisation ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MimiConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
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
        config = config_from_file(path)
        if not isinstance(config, cls):
            raise ConfigError(f"{path}: not a Mimi config (model_type {type(config).__name__})")
        return config

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model_type"] = "mimi"
        return out

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


def _check_types(config: MimiConfig) -> None:
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


def _check_quantization(q: dict) -> None:
    bits, group, modules = q.get("bits"), q.get("group_size"), q.get("modules")
    if bits not in (2, 3, 4, 5, 6, 8) or isinstance(bits, bool):
        raise ConfigError(f"quantization bits must be one of 2, 3, 4, 5, 6, 8, got {bits!r}")
    if group not in (32, 64, 128) or isinstance(group, bool):
        raise ConfigError(f"quantization group_size must be 32, 64 or 128, got {group!r}")
    if q.get("mode", "affine") != "affine":
        raise ConfigError(f"only affine quantization is supported, got mode {q.get('mode')!r}")
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError("quantization modules must be a list of layer names")


@dataclass
class JodioConfig:
    """JODIO, the codec of seed 002's module dump. The shape fields default to the dump's sizes; the fields
    under "readings" are what a module dump cannot show, each set to the reading that fits the dump and
    Mimi's design best (README, "JODIO"). The forward order is the only one the dump's shapes allow:
    SEANet encoder -> pre_vq_proj -> encoder transformer -> both RVQs; decoding sums the RVQs, then
    repair_proj -> decoder transformer -> post_vq_proj -> SEANet decoder.
    """

    sampling_rate: int = 24_000
    channels: int = 896  # SEANet width, every conv
    latent_dim: int = 1028  # pre_vq_proj's output: the encoder transformer's width and the codebook dim
    ratios: list[int] = field(default_factory=lambda: [4, 5, 6, 8])  # encoder downsample strides
    final_stride: int = 2  # final_conv (encoder) and initial_upsample (decoder)
    kernel_size: int = 3  # every conv, transposed ones included: smaller than the strides
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4])  # per encoder block; the decoder reverses
    codebook_size: int = 2048
    num_semantic_quantizers: int = 2
    num_quantizers: int = 10  # semantic + acoustic
    encoder_layers: int = 22
    encoder_heads: int = 16
    encoder_head_dim: int = 64  # 16 x 64 = the dump's q/k/v width of 1024
    encoder_intermediate: int = 4112
    decoder_width: int = 256
    decoder_layers: int = 4
    decoder_heads: int = 4
    decoder_head_dim: int = 64
    decoder_intermediate: int = 1024
    # -- readings (not visible in a module dump) --------------------------------------------------------
    residual: bool = True  # x + silu(conv(x)) around each dilated conv (SEANet's residual units); false: chained
    input_lookahead: int = 1  # input_proj as printed (padding 1 on both sides: 1 sample ahead); 0: causal
    attention_window: int = 250  # causal, a query sees itself and 249 steps before (20 s at 12.5 Hz)
    rope: bool = True
    rope_theta: float = 10_000.0
    rope_layout: str = "rotate_half"  # how q/k pair their RoPE dimensions: "rotate_half" or "interleaved"
    mlp_activation: str = "gelu"  # exact GELU, or "silu"
    norm_eps: float = 1e-6  # RMSNorm: x * rsqrt(mean(x^2) + eps) * weight
    acoustic_input: str = "latent"  # the acoustic RVQ reads the latent (Mimi's split) or "residual"
    # The repair (labelled as such): post_vq_proj has in_features 256 (the dump prints 6) and repair_proj,
    # Linear(latent_dim -> decoder_width), feeds the decoder transformer. The dump has no such layer.
    decoder_repair: str = "repair_proj"
    has_encoder: bool = True
    has_decoder: bool = True
    quantization: dict | None = None

    def __post_init__(self) -> None:
        _check_types(self)
        self.ratios, self.dilations = list(self.ratios), list(self.dilations)
        positive = [f.name for f in dataclasses.fields(self) if f.type in ("int", int)]
        for name in positive:
            if name != "input_lookahead" and getattr(self, name) < 1:
                raise ConfigError(f"config field {name!r} must be >= 1, got {getattr(self, name)!r}")
        if not self.dilations or any(d < 1 for d in self.dilations):
            raise ConfigError(f"config field 'dilations' must be positive ints, got {self.dilations}")
        if not self.ratios or any(r < self.kernel_size - 1 for r in self.ratios + [self.final_stride]):
            raise ConfigError(f"JODIO's strides must be >= kernel_size - 1, got {self.ratios}, {self.final_stride}")
        if self.input_lookahead not in (0, 1):
            raise ConfigError(f"input_lookahead must be 0 (causal) or 1 (as printed), got {self.input_lookahead}")
        if not 0 < self.num_semantic_quantizers < self.num_quantizers:
            raise ConfigError(
                f"num_semantic_quantizers must be in [1, num_quantizers), got {self.num_semantic_quantizers}"
            )
        choices = {
            "rope_layout": ("rotate_half", "interleaved"),
            "mlp_activation": ("gelu", "silu"),
            "acoustic_input": ("latent", "residual"),
            "decoder_repair": ("repair_proj", "none"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"config field {name!r} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.decoder_repair == "none" and self.has_decoder:
            raise ConfigError("the dump's decoder cannot run without the repair: decoder_repair 'none' is encoder-only")
        for dim in (self.encoder_head_dim, self.decoder_head_dim):
            if dim % 2:
                raise ConfigError(f"head dims must be even for RoPE, got {dim}")
        if self.quantization is not None:
            _check_quantization(self.quantization)

    # -- what the shared plumbing (model.Mimi's offline, batch and stream code) reads ----------------------
    quantizer_topology = "split"
    chain_stages = None
    vector_quantization_hidden_dimension = None  # JODIO's codebooks have no projections

    @property
    def hidden_size(self) -> int:
        return self.latent_dim

    @property
    def num_acoustic_quantizers(self) -> int:
        return self.num_quantizers - self.num_semantic_quantizers

    @property
    def num_codebooks(self) -> int:
        return self.num_quantizers

    @property
    def hop_length(self) -> int:
        """Samples per step of the SEANet encoder before final_conv (960)."""
        return math.prod(self.ratios)

    @property
    def frame_size(self) -> int:
        """Samples per code frame (1920)."""
        return self.hop_length * self.final_stride

    @property
    def frame_rate_hz(self) -> float:
        return self.sampling_rate / self.frame_size

    @property
    def decoder_delay(self) -> int:
        """Samples the as-printed decoder's output runs ahead of its frames: each transposed conv's padding=2
        drops the first 2 steps it writes, 2 * (960 + 120 + 20 + 4 + 1) = 2210 samples in all, so F frames
        decode to F * 1920 - 2210 samples (README, "JODIO")."""
        delay, hop = 0, self.frame_size
        for stride in [self.final_stride, *reversed(self.ratios)]:
            hop //= stride
            delay += (self.kernel_size - 1) * hop
        return delay

    @property
    def encoder_transformer(self) -> TransformerConfig:
        return self._transformer(
            self.latent_dim, self.encoder_layers, self.encoder_heads, self.encoder_head_dim, self.encoder_intermediate
        )

    @property
    def decoder_transformer(self) -> TransformerConfig:
        return self._transformer(
            self.decoder_width,
            self.decoder_layers,
            self.decoder_heads,
            self.decoder_head_dim,
            self.decoder_intermediate,
        )

    def _transformer(self, width: int, layers: int, heads: int, head_dim: int, hidden: int) -> TransformerConfig:
        return TransformerConfig(
            hidden_size=width,
            num_layers=layers,
            num_heads=heads,
            head_dim=head_dim,
            intermediate_size=hidden,
            window=self.attention_window,
            norm="rms_norm",
            norm_eps=self.norm_eps,
            layer_scale=None,
            rope=self.rope,
            rope_theta=self.rope_theta,
            activation=self.mlp_activation,
            final_norm=True,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JodioConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names and v is not None})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model_type"] = "jodio"
        return out


def config_from_dict(data: dict[str, Any]) -> MimiConfig | JodioConfig:
    """The config class a config.json names (``model_type`` "jodio", else Mimi's)."""
    if isinstance(data, dict) and data.get("model_type") == "jodio":
        return JodioConfig.from_dict(data)
    return MimiConfig.from_dict(data)


def config_from_file(path: str | Path) -> MimiConfig | JodioConfig:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON config ({exc})") from exc
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
