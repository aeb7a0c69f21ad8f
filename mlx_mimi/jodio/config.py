"""JODIO's config (seed 002's module dump): its sizes, and the readings a module dump cannot show."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field

from ..config import CodecConfig, QuantizerConfig, TransformerConfig, check_quantization, check_types
from ..errors import ConfigError


@dataclass(frozen=True)
class JodioSEANetConfig:
    """JODIO's SEANet encoder and decoder (jodio/layers.py)."""

    channels: int
    kernel_size: int
    ratios: tuple[int, ...]  # encoder strides; the decoder reverses them
    final_stride: int
    dilations: tuple[int, ...]  # per encoder block; the decoder reverses them
    residual: bool
    input_lookahead: int


@dataclass
class JodioConfig(CodecConfig):
    """JODIO, the codec of seed 002's module dump. The shape fields default to the dump's sizes; the fields
    under "readings" are what a module dump cannot show, each set to the reading that fits the dump and
    Mimi's design best (README, "JODIO"). The forward order is the only one the dump's shapes allow:
    SEANet encoder -> pre_vq_proj -> encoder transformer -> both RVQs; decoding sums the RVQs, then
    repair_proj -> decoder transformer -> post_vq_proj -> SEANet decoder.
    """

    model_type: typing.ClassVar[str] = "jodio"

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
        check_types(self)
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
            check_quantization(self.quantization)

    @property
    def seanet(self) -> JodioSEANetConfig:
        return JodioSEANetConfig(
            channels=self.channels,
            kernel_size=self.kernel_size,
            ratios=tuple(self.ratios),
            final_stride=self.final_stride,
            dilations=tuple(self.dilations),
            residual=self.residual,
            input_lookahead=self.input_lookahead,
        )

    @property
    def quantizer(self) -> QuantizerConfig:
        """Two split RVQs of codebooks in the latent's own space (no projections)."""
        return QuantizerConfig(
            dim=self.latent_dim,
            codebook_dim=None,
            codebook_size=self.codebook_size,
            num_codebooks=self.num_quantizers,
            num_semantic=self.num_semantic_quantizers,
            acoustic_input=self.acoustic_input,
        )

    @property
    def hop_length(self) -> int:
        """Samples per step of the SEANet encoder before final_conv (960)."""
        return math.prod(self.ratios)

    @property
    def frame_size(self) -> int:
        """Samples per code frame (1920)."""
        return self.hop_length * self.final_stride

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
