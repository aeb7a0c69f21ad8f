"""A PyTorch build of JODIO, the codec whose module dump is ``tests/data/jodio_dump.txt``.

The dump is the literal text of ``print(model)``; nothing else of JODIO was published. This file rebuilds it
from plain ``torch.nn`` modules (weight-normed convs via ``torch.nn.utils.parametrizations.weight_norm``), so
that ``print(JODIO(repaired=False))`` equals the dump (checked by
tests/test_jodio_reference.py::test_print_matches_the_dump; the dump lacks the root's closing ``)`` line, see
there) and ``state_dict()`` has the dump's names. Its forward methods fix one reading of the semantics that
the dump leaves open; mlx-mimi is tested against these readings, not against any original JODIO code.

``repaired=False`` is the dump literally: ``post_vq_proj = Linear(6, 896)`` cannot follow a 256-wide decoder
transformer, and nothing maps the 1028-wide latent into that transformer, so such a build cannot decode.
``repaired=True`` (the default) reads the misprinted ``6`` as ``decoder_width`` (256) and adds
``repair_proj = Linear(latent_dim, decoder_width)`` right after ``post_vq_proj``.

Readings (all float32 on CPU, eval mode, so the Dropout(0.1) modules are inert):

* Convs: every conv with symmetric padding is trimmed on the right, which makes the stack causal; the
  input projection (padding 1, not trimmed) alone sees one sample ahead when ``input_lookahead == 1``.
  SiLU follows each dilated conv only; ``residual`` adds its input back. No activation elsewhere.
* Transformer: pre-norm blocks (RMSNorm), causal attention over a window of ``window`` frames, RoPE
  (rotate-half convention) when ``rope``, exact GELU (or SiLU) between ``linear1`` and ``linear2``.
* RVQ: nearest codebook row by squared Euclidean distance computed in float64; the residual stays float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = [
    "JODIO",
    "Attention",
    "ConvBlock",
    "MultiLayerPerception",
    "RMSNorm",
    "ResidualVectorQuantizer",
    "SeaNetDecoder",
    "SeaNetEncoder",
    "Transformer",
    "TransformerBlock",
    "TransposedConvBlock",
    "VectorQuantizer",
]


def _dilated_layer(channels: int, dilation: int) -> nn.Sequential:
    conv = nn.Conv1d(channels, channels, 3, padding=2 * dilation, dilation=dilation)
    return nn.Sequential(weight_norm(conv), nn.SiLU())


def _run_layers(layers: nn.ModuleList, x: torch.Tensor, residual: bool) -> torch.Tensor:
    """Each layer: conv (symmetric padding, trimmed on the right: causal), SiLU, optional residual add."""
    for layer in layers:
        y = layer[0](x)[..., : x.shape[-1]]
        y = layer[1](y)
        x = x + y if residual else y
    return x


def _strided(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A stride-s conv with symmetric padding 2, its extra last frame trimmed: T -> T // s."""
    stride = conv.stride[0]
    return conv(x)[..., : x.shape[-1] // stride]


class ConvBlock(nn.Module):
    def __init__(self, channels: int, stride: int, dilations: tuple[int, ...], residual: bool = True):
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList(_dilated_layer(channels, d) for d in dilations)
        self.downsample = nn.Conv1d(channels, channels, 3, stride=stride, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _run_layers(self.layers, x, self.residual)
        return _strided(self.downsample, x)


class TransposedConvBlock(nn.Module):
    def __init__(self, channels: int, stride: int, dilations: tuple[int, ...], residual: bool = True):
        super().__init__()
        self.residual = residual
        self.upsample = nn.ConvTranspose1d(channels, channels, 3, stride=stride, padding=2, output_padding=stride - 1)
        self.layers = nn.ModuleList(_dilated_layer(channels, d) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample(x)  # as printed: L -> L * stride - 2
        return _run_layers(self.layers, x, self.residual)


class SeaNetEncoder(nn.Module):
    def __init__(
        self,
        channels: int,
        ratios: tuple[int, ...],
        final_stride: int,
        dilations: tuple[int, ...],
        residual: bool = True,
        input_lookahead: int = 1,
    ):
        super().__init__()
        if input_lookahead not in (0, 1):
            raise ValueError(f"input_lookahead must be 0 or 1, not {input_lookahead}")
        self.input_lookahead = input_lookahead
        self.input_proj = nn.Conv1d(1, channels, 3, padding=1)
        self.conv_blocks = nn.ModuleList(ConvBlock(channels, s, dilations, residual) for s in ratios)
        self.final_conv = nn.Conv1d(channels, channels, 3, stride=final_stride, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_lookahead == 1:
            x = self.input_proj(x)  # as printed: symmetric padding 1, one sample of lookahead
        else:
            x = F.conv1d(F.pad(x, (2, 0)), self.input_proj.weight, self.input_proj.bias)
        for block in self.conv_blocks:
            x = block(x)
        return _strided(self.final_conv, x)


class SeaNetDecoder(nn.Module):
    def __init__(
        self,
        channels: int,
        ratios: tuple[int, ...],
        final_stride: int,
        dilations: tuple[int, ...],
        residual: bool = True,
    ):
        super().__init__()
        self.initial_upsample = nn.ConvTranspose1d(
            channels, channels, 3, stride=final_stride, padding=2, output_padding=final_stride - 1
        )
        dilations = tuple(reversed(dilations))
        self.conv_blocks = nn.ModuleList(
            TransposedConvBlock(channels, s, dilations, residual) for s in reversed(tuple(ratios))
        )
        self.final_proj = nn.Conv1d(channels, 1, 3, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.initial_upsample(x)  # as printed: F -> 2F - 2 (final_stride 2)
        for block in self.conv_blocks:
            x = block(x)
        return self.final_proj(x)[..., : x.shape[-1]]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(
        self,
        dim: int,
        attention_dim: int,
        heads: int,
        window: int,
        rope: bool = True,
        rope_theta: float = 10000.0,
    ):
        super().__init__()
        if attention_dim % heads:
            raise ValueError(f"attention width {attention_dim} is not a multiple of {heads} heads")
        self.heads = heads
        self.head_dim = attention_dim // heads
        if rope and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, not {self.head_dim}")
        self.window = window
        self.rope = rope
        self.rope_theta = rope_theta
        self.q_proj = nn.Linear(dim, attention_dim, bias=False)
        self.k_proj = nn.Linear(dim, attention_dim, bias=False)
        self.v_proj = nn.Linear(dim, attention_dim, bias=False)
        self.out_proj = nn.Linear(attention_dim, dim, bias=False)
        self.dropout = nn.Dropout(0.1)

    def _rope(self, length: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        hd = self.head_dim
        inv_freq = self.rope_theta ** (-torch.arange(0, hd, 2, dtype=torch.float64, device=device) / hd)
        angles = torch.arange(length, dtype=torch.float64, device=device)[:, None] * inv_freq[None, :]
        angles = torch.cat((angles, angles), dim=-1)  # (L, hd): pairs (i, i + hd/2) share a frequency
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, length, self.heads, self.head_dim).transpose(1, 2)  # (B, H, L, hd)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        if self.rope:
            cos, sin = self._rope(length, x.device, x.dtype)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        pos = torch.arange(length, device=x.device)
        delta = pos[:, None] - pos[None, :]  # query i minus key j
        allowed = (delta >= 0) & (delta <= self.window - 1)
        scores = scores.masked_fill(~allowed, float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        out = (weights @ v).transpose(1, 2).reshape(b, length, self.heads * self.head_dim)
        return self.out_proj(out)


class MultiLayerPerception(nn.Module):
    def __init__(self, dim: int, intermediate: int, activation: str = "gelu"):
        super().__init__()
        if activation not in ("gelu", "silu"):
            raise ValueError(f"mlp_activation must be 'gelu' or 'silu', not {activation!r}")
        self.activation = activation
        self.linear1 = nn.Linear(dim, intermediate, bias=False)
        self.linear2 = nn.Linear(intermediate, dim, bias=False)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x)
        h = F.gelu(h) if self.activation == "gelu" else F.silu(h)
        return self.dropout(self.linear2(h))


class TransformerBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        attention_dim: int,
        heads: int,
        intermediate: int,
        window: int,
        rope: bool = True,
        rope_theta: float = 10000.0,
        mlp_activation: str = "gelu",
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.attention = Attention(dim, attention_dim, heads, window, rope, rope_theta)
        self.feed_forward = MultiLayerPerception(dim, intermediate, mlp_activation)
        self.attention_norm = RMSNorm(dim, norm_eps)
        self.mlp_norm = RMSNorm(dim, norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.feed_forward(self.mlp_norm(x))


class Transformer(nn.Module):
    def __init__(self, dim: int, layers: int, norm_eps: float = 1e-6, **block_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(TransformerBlock(dim, norm_eps=norm_eps, **block_kwargs) for _ in range(layers))
        self.norm = RMSNorm(dim, norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x)
        return self.norm(x)


class VectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.codebook = nn.Embedding(codebook_size, dim)

    def nearest(self, r: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook row (squared Euclidean distance, float64), r: (..., D) -> (...)."""
        e = self.codebook.weight.to(torch.float64)
        flat = r.reshape(-1, r.shape[-1]).to(torch.float64)
        rows = max(1, (1 << 24) // max(1, e.numel()))  # bound the (rows, N, D) difference tensor
        out = [((chunk[:, None, :] - e) ** 2).sum(-1).argmin(-1) for chunk in flat.split(rows)]
        idx = torch.cat(out) if out else flat.new_zeros(0, dtype=torch.int64)
        return idx.reshape(r.shape[:-1])


class ResidualVectorQuantizer(nn.Module):
    def __init__(self, num_quantizers: int, codebook_size: int, dim: int):
        super().__init__()
        self.quantizers = nn.ModuleList(VectorQuantizer(codebook_size, dim) for _ in range(num_quantizers))

    def encode(self, x: torch.Tensor, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, F, D) -> codes (B, n, F) int64 and the quantized sum (B, F, D) of the first n quantizers."""
        n = len(self.quantizers) if n is None else n
        residual = x
        quantized = torch.zeros_like(x)
        codes = []
        for quantizer in list(self.quantizers)[:n]:
            idx = quantizer.nearest(residual)
            row = quantizer.codebook.weight[idx]
            residual = residual - row
            quantized = quantized + row
            codes.append(idx)
        if not codes:
            return x.new_zeros((x.shape[0], 0, x.shape[1]), dtype=torch.int64), quantized
        return torch.stack(codes, dim=1), quantized

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: (B, n, F) -> sum of the codebook rows (B, F, D), in quantizer order."""
        quantized = None
        for i in range(codes.shape[1]):
            row = self.quantizers[i].codebook.weight[codes[:, i]]
            quantized = row if quantized is None else quantized + row
        if quantized is None:
            dim = self.quantizers[0].codebook.weight.shape[1] if len(self.quantizers) else 0
            return codes.new_zeros((codes.shape[0], codes.shape[2], dim), dtype=torch.float32)
        return quantized


class JODIO(nn.Module):
    def __init__(
        self,
        channels: int = 896,
        latent_dim: int = 1028,
        ratios: tuple[int, ...] = (4, 5, 6, 8),
        final_stride: int = 2,
        dilations: tuple[int, ...] = (1, 2, 4),
        encoder_layers: int = 22,
        encoder_heads: int = 16,
        encoder_intermediate: int = 4112,
        attention_dim: int = 1024,
        decoder_width: int = 256,
        decoder_layers: int = 4,
        decoder_heads: int = 4,
        decoder_intermediate: int = 1024,
        codebook_size: int = 2048,
        num_semantic: int = 2,
        num_acoustic: int = 8,
        repaired: bool = True,
        residual: bool = True,
        input_lookahead: int = 1,
        window: int = 250,
        rope: bool = True,
        rope_theta: float = 10000.0,
        mlp_activation: str = "gelu",
        norm_eps: float = 1e-6,
        acoustic_input: str = "latent",
    ):
        super().__init__()
        if acoustic_input not in ("latent", "residual"):
            raise ValueError(f"acoustic_input must be 'latent' or 'residual', not {acoustic_input!r}")
        self.ratios = tuple(ratios)
        self.final_stride = final_stride
        self.hop = math.prod(self.ratios) * final_stride
        self.num_semantic = num_semantic
        self.num_acoustic = num_acoustic
        self.repaired = repaired
        self.acoustic_input = acoustic_input
        common = dict(window=window, rope=rope, rope_theta=rope_theta, mlp_activation=mlp_activation)

        self.encoder = SeaNetEncoder(channels, self.ratios, final_stride, dilations, residual, input_lookahead)
        self.encoder_transformer = Transformer(
            latent_dim,
            encoder_layers,
            norm_eps,
            attention_dim=attention_dim,
            heads=encoder_heads,
            intermediate=encoder_intermediate,
            **common,
        )
        self.pre_vq_proj = nn.Linear(channels, latent_dim)
        self.semantic_rvq = ResidualVectorQuantizer(num_semantic, codebook_size, latent_dim)
        self.acoustic_rvq = ResidualVectorQuantizer(num_acoustic, codebook_size, latent_dim)
        if repaired:
            self.post_vq_proj = nn.Linear(decoder_width, channels)
            self.repair_proj = nn.Linear(latent_dim, decoder_width, bias=True)
        else:
            self.post_vq_proj = nn.Linear(6, channels)  # the dump, literally
        self.decoder_transformer = Transformer(
            decoder_width,
            decoder_layers,
            norm_eps,
            attention_dim=decoder_width,
            heads=decoder_heads,
            intermediate=decoder_intermediate,
            **common,
        )
        self.decoder = SeaNetDecoder(channels, self.ratios, final_stride, dilations, residual)

    @property
    def num_codebooks(self) -> int:
        return self.num_semantic + self.num_acoustic

    def latent(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, 1, T), T a multiple of the hop -> latent (B, T // hop, latent_dim)."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"wav must be (B, 1, T), not {tuple(wav.shape)}")
        if wav.shape[-1] % self.hop:
            raise ValueError(f"length {wav.shape[-1]} is not a multiple of the hop {self.hop}")
        x = self.encoder(wav)  # (B, C, F)
        x = self.pre_vq_proj(x.transpose(1, 2))
        return self.encoder_transformer(x)

    def encode(self, wav: torch.Tensor, num_codebooks: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (codes (B, K, F) int64: semantic then acoustic, latent (B, F, latent_dim))."""
        k = self.num_codebooks if num_codebooks is None else num_codebooks
        if not self.num_semantic <= k <= self.num_codebooks:
            raise ValueError(f"num_codebooks must be in [{self.num_semantic}, {self.num_codebooks}], not {k}")
        latent = self.latent(wav)
        semantic, semantic_q = self.semantic_rvq.encode(latent)
        start = latent if self.acoustic_input == "latent" else latent - semantic_q
        acoustic, _ = self.acoustic_rvq.encode(start, k - self.num_semantic)
        return torch.cat([semantic, acoustic], dim=1), latent

    def quantized(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, K, F) -> the sum of their codebook rows (B, F, latent_dim)."""
        if codes.dim() != 3 or not self.num_semantic <= codes.shape[1] <= self.num_codebooks:
            raise ValueError(f"codes must be (B, K, F) with {self.num_semantic} <= K <= {self.num_codebooks}")
        q = self.semantic_rvq.decode(codes[:, : self.num_semantic])
        if codes.shape[1] > self.num_semantic:
            q = q + self.acoustic_rvq.decode(codes[:, self.num_semantic :])
        return q

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, K, F) -> wav (B, 1, F * hop - 2210) for the default strides."""
        if not self.repaired:
            raise RuntimeError("the dump as printed cannot decode (post_vq_proj takes 6 features): use repaired=True")
        frames = codes.shape[-1]
        x = self.repair_proj(self.quantized(codes))
        x = self.decoder_transformer(x)
        x = self.post_vq_proj(x).transpose(1, 2)  # (B, C, F)
        wav = self.decoder(x)
        expected = self.decoded_length(frames)
        assert wav.shape[-1] == expected, (wav.shape, expected)
        return wav

    def decoded_length(self, frames: int) -> int:
        """The decoder's output length as printed: 2F - 2 after initial_upsample, L * s - 2 per block."""
        length = (frames - 1) * self.final_stride - 4 + 3 + (self.final_stride - 1)
        for s in reversed(self.ratios):
            length = (length - 1) * s - 4 + 3 + (s - 1)
        return length
