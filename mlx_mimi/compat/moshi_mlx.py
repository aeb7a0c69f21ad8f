"""moshi_mlx's Mimi API (0.3.0) on mlx-mimi: ``import mlx_mimi.compat.moshi_mlx as moshi_mlx``.

What Kyutai's MLX scripts call: ``models.mimi.Mimi(models.mimi_202407(num_codebooks))``, ``load_pytorch_weights``,
``encode`` / ``decode`` (whole clips), ``encode_step`` / ``decode_step`` (streaming, whole frames), ``reset_state``,
``reset_all``, ``warmup``; MLX arrays in (B, C, T) and out, codes uint32, as moshi_mlx gives them. What differs, on
purpose: the codes are the PyTorch reference's (moshi_mlx uses tanh-GELU, no causal mask offline, and its
``reset_state`` misses buffers, moshi#407), memory stays flat however long the stream (its KV cache grows), and any
weights file ``mlx_mimi.load`` reads works.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import mlx.core as mx

from ..errors import MimiError
from ..load import load_model


@dataclass
class MimiConfig:
    """What mlx-mimi needs of moshi_mlx's ``MimiConfig``: the codebook count (the rest is the checkpoint's)."""

    quantizer_nq: int
    sample_rate: float = 24_000.0
    frame_rate: float = 12.5
    channels: int = 1
    quantizer_bins: int = 2048
    quantizer_dim: int = 256


def mimi_202407(num_codebooks: int) -> MimiConfig:
    """moshi_mlx's config of the July 2024 Mimi (kyutai/mimi), with ``num_codebooks`` codebooks."""
    return MimiConfig(quantizer_nq=num_codebooks)


class Mimi:
    """``moshi_mlx.models.mimi.Mimi(cfg)``; ``load_pytorch_weights(file)`` before use."""

    def __init__(self, cfg: MimiConfig):
        self.cfg = cfg
        self._model = None
        self._encoder = self._decoder = None

    def load_pytorch_weights(self, file: str, strict: bool = True):
        """Kyutai's PyTorch file (or any layout mlx-mimi reads). ``strict``: moshi_mlx refuses a file with more
        codebooks than the config asks for; here both load, and the config's count is used."""
        model = load_model(file)
        if strict and model.num_codebooks != self.cfg.quantizer_nq:
            raise MimiError(
                f"the checkpoint has {model.num_codebooks} codebooks and the config {self.cfg.quantizer_nq}: "
                "load with strict=False to use the config's"
            )
        model.check_num_codebooks(self.cfg.quantizer_nq)
        self._model = model
        self.reset_all()
        return self

    @property
    def model(self):
        if self._model is None:
            raise MimiError("load the weights first: mimi.load_pytorch_weights(path)")
        return self._model

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    @property
    def sample_rate(self) -> float:
        return self.cfg.sample_rate

    def encode(self, xs: mx.array) -> mx.array:
        """(B, 1, T) -> codes (B, K, ceil(T / 1920)) uint32."""
        return self.model.encode(xs, num_codebooks=self.cfg.quantizer_nq).astype(mx.uint32)

    def decode(self, xs: mx.array) -> mx.array:
        """(B, K, F) codes -> (B, 1, F * 1920) float32."""
        return self.model.decode(xs)

    def encode_step(self, xs: mx.array) -> mx.array:
        """(B, 1, n * 1920) -> codes (B, K, n) uint32: whole frames only, as moshi_mlx requires."""
        frame = self.model.frame_size
        if xs.ndim != 3 or xs.shape[-1] % frame or xs.shape[-1] == 0:
            raise MimiError(f"encode_step takes (B, 1, n * {frame}) audio: whole frames, got {tuple(xs.shape)}")
        if self._encoder is None or self._encoder.batch_size != xs.shape[0]:
            self._encoder = self.model.stream_encoder(xs.shape[0], self.cfg.quantizer_nq)
        return self._encoder.step(xs).astype(mx.uint32)

    def decode_step(self, xs: mx.array) -> mx.array:
        """(B, K, n) codes -> (B, 1, n * 1920) float32."""
        if self._decoder is None or self._decoder.batch_size != xs.shape[0]:
            self._decoder = self.model.stream_decoder(xs.shape[0])
        return self._decoder.step(xs)

    def reset_state(self) -> None:
        """Start both streams anew (every buffer: moshi#407's missed ones included)."""
        for stream in (self._encoder, self._decoder):
            if stream is not None:
                stream.reset()

    def reset_all(self) -> None:
        self.reset_state()

    def warmup(self) -> None:
        pcm = mx.zeros((1, 1, self.model.frame_size * 4))
        mx.eval(self.decode(self.encode(pcm)))


models = SimpleNamespace(
    mimi=SimpleNamespace(Mimi=Mimi, MimiConfig=MimiConfig, mimi_202407=mimi_202407),
    Mimi=Mimi,
    MimiConfig=MimiConfig,
    mimi_202407=mimi_202407,
)

__all__ = ["Mimi", "MimiConfig", "mimi_202407", "models"]
