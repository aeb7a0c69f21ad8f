"""Residual vector quantizers: Mimi's split RVQ (a semantic and an acoustic RVQ reading the same latent) and
the chain of the 9-codebook variant (stages that each quantize what the stages before them leave).

Codebooks are stored precomputed (``embed_sum / clamp(cluster_usage, 1e-5)``) in float32 together with
half their squared norms, so the nearest-codebook search is one matmul and an argmin:
``argmin_j |x - e_j|^2 = argmin_j (|e_j|^2 / 2 - x . e_j)``. The search and the residual updates always run
in float32, whatever the model dtype: a code is an argmin, and low precision would flip near-ties.
"""

from __future__ import annotations

import dataclasses

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..compiled import CompiledLRU
from ..config import QuantizerConfig
from .linear import matmul, per_clip_active


def _nearest_of_two(x: mx.array, book: mx.array, candidates: mx.array) -> mx.array:
    """The nearer of the matmul search's two best candidates, by an exact per-row squared distance.

    Why: the expanded form |e|^2/2 - x.e loses precision to cancellation (scores ~600, gaps ~1e-5) and
    its rounding depends on how the product is computed (compiled streaming step vs an offline chunk). A
    near-tie (two centroids within ~2e-7 relative, seen on espeak speech) then went different ways in
    streaming and offline encoding. The direct distance sum((x - e)^2) of the two finalists decides
    instead; exact ties go to the lower index.
    """
    pair = book[candidates]  # (..., 2, D)
    dist = ((x[..., None, :] - pair) ** 2).sum(axis=-1)
    first, second = candidates[..., 0], candidates[..., 1]
    second_wins = (dist[..., 1] < dist[..., 0]) | ((dist[..., 1] == dist[..., 0]) & (second < first))
    return mx.where(second_wins, second, first)


def nearest_code(x: mx.array, book: mx.array, half_sq_norms: mx.array) -> mx.array:
    """Index of the nearest codebook entry for each row of x (float32).

    The matmul scores give two finalists by two argmins (not ``argpartition``, which is a full sort on
    Metal, 32 times per frame); the direct distance then decides between them.
    """
    scores = half_sq_norms - matmul(x, book.T)
    first = mx.argmin(scores, axis=-1)
    others = mx.where(mx.arange(book.shape[0]) == first[..., None], mx.inf, scores)
    second = mx.argmin(others, axis=-1)
    return _nearest_of_two(x, book, mx.stack([first, second], axis=-1))


class ResidualVQ(nn.Module):
    """``n`` codebooks applied in turn to the residual of a 1x1-projected latent (Mimi), or of the latent
    itself where the config has no projections (``codebook_dim`` None: JODIO)."""

    def __init__(self, config: QuantizerConfig, num_codebooks: int):
        super().__init__()
        dim, vq_dim = config.dim, config.codebook_dim
        self.num_codebooks = num_codebooks
        self.codebook_size = config.codebook_size
        if vq_dim is not None:
            self.input_proj = mx.zeros((vq_dim, dim))
            self.output_proj = mx.zeros((dim, vq_dim))
        self.codebooks = mx.zeros((num_codebooks, config.codebook_size, vq_dim or dim))
        self.half_sq_norms = mx.zeros((num_codebooks, config.codebook_size))

    def encode(self, latent: mx.array, num_codebooks: int) -> mx.array:
        """latent: (B, F, dim) float32 -> codes (B, F, n) uint32."""
        residual = matmul(latent, self.input_proj.T) if "input_proj" in self else latent
        codes = []
        for i in range(num_codebooks):
            book = self.codebooks[i]
            index = nearest_code(residual, book, self.half_sq_norms[i])
            residual = residual - book[index]
            codes.append(index)
        return mx.stack(codes, axis=-1)

    def decode(self, codes: mx.array) -> mx.array:
        """codes: (B, F, n) with n <= num_codebooks -> (B, F, dim) float32."""
        n = codes.shape[-1]
        offsets = mx.arange(n, dtype=codes.dtype) * self.codebook_size
        flat = self.codebooks[:n].reshape(-1, self.codebooks.shape[-1])
        quantized = flat[codes + offsets].sum(axis=-2)
        return matmul(quantized, self.output_proj.T) if "output_proj" in self else quantized


class _CompiledSearch(nn.Module):
    """``encode_compiled``: ``encode`` through a compiled function per input shape (the same graph, same codes).

    A chunk's 32 levels of small ops run as one compiled graph, ~2x faster offline (44.8 -> 23.7 ms per
    32-frame chunk, 32 codebooks, AMD EPYC CPU). The codebooks are passed in at every call (compiled.py), so a
    codebook changed in place is searched at once. Shapes vary (last chunks, batch sizes): a small LRU per
    thread, whose evicted functions release their traces.
    """

    MAX_COMPILED = 16

    def __init__(self):
        super().__init__()
        search = CompiledLRU(self, lambda quantizer, latent, k: quantizer.encode(latent, k), self.MAX_COMPILED)
        object.__setattr__(self, "_search", search)  # not a parameter

    def encode(self, latent: mx.array, num_codebooks: int) -> mx.array:
        raise NotImplementedError

    def encode_compiled(self, latent: mx.array, num_codebooks: int) -> mx.array:
        key = (tuple(latent.shape), latent.dtype, num_codebooks, per_clip_active())
        return self._search(key, latent, num_codebooks)


class SplitResidualVQ(_CompiledSearch):
    """Mimi's quantizer: the semantic and the acoustic RVQ both read the latent; decoding sums them.

    ``acoustic_input`` "residual" (a JODIO reading kept selectable) has the acoustic RVQ read what the
    semantic one leaves of the latent instead.
    """

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        self.num_semantic = config.num_semantic
        self.num_codebooks = config.num_codebooks
        self.acoustic_reads_residual = config.acoustic_input == "residual"
        self.semantic = ResidualVQ(config, config.num_semantic)
        self.acoustic = ResidualVQ(config, config.num_acoustic)

    def encode(self, latent: mx.array, num_codebooks: int) -> mx.array:
        """latent (B, F, dim) -> codes (B, F, num_codebooks); semantic codebooks first."""
        latent = latent.astype(mx.float32)
        codes = self.semantic.encode(latent, self.num_semantic)
        if num_codebooks > self.num_semantic:
            if self.acoustic_reads_residual:
                latent = latent - self.semantic.decode(codes)
            acoustic = self.acoustic.encode(latent, num_codebooks - self.num_semantic)
            codes = mx.concatenate([codes, acoustic], axis=-1)
        return codes

    def decode(self, codes: mx.array) -> mx.array:
        """codes (B, F, K) -> latent (B, F, dim) float32: the sum of both paths' projected outputs."""
        latent = self.semantic.decode(codes[..., : self.num_semantic])
        if codes.shape[-1] > self.num_semantic:
            latent = latent + self.acoustic.decode(codes[..., self.num_semantic :])
        return latent


class ChainResidualVQ(_CompiledSearch):
    """The 9-codebook variant's quantizer: stage i quantizes ``latent - sum(outputs of stages < i)``.

    Each stage is an RVQ, with 512 -> 256 -> 512 projections around its codebooks where ``chain_projections``
    says so (the variant: prosody with Mimi's semantic ones, acoustic with Mimi's acoustic ones) or with its
    codebooks on the latent itself (the variant's content head, seed 003's ``VectorQuantize(dim=512)``). With fewer
    codebooks than the chain holds, the stages run in order and the last one stops early; decoding sums the outputs
    of the stages the codes reach.
    """

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        self.num_codebooks = config.num_codebooks
        self.stage_sizes = list(config.chain_stages)
        projected = config.chain_projections or (True,) * len(self.stage_sizes)
        self.stages = [
            ResidualVQ(config if p else dataclasses.replace(config, codebook_dim=None), n)
            for n, p in zip(self.stage_sizes, projected, strict=True)
        ]

    def spans(self, num_codebooks: int) -> list[tuple[ResidualVQ, int, int]]:
        """(stage, first code index, codebooks used) for the stages that ``num_codebooks`` codes reach."""
        out, start = [], 0
        for stage, size in zip(self.stages, self.stage_sizes, strict=True):
            used = min(size, num_codebooks - start)
            if used <= 0:
                break
            out.append((stage, start, used))
            start += used
        return out

    def encode(self, latent: mx.array, num_codebooks: int) -> mx.array:
        latent = latent.astype(mx.float32)
        total, codes = None, []
        for stage, _, used in self.spans(num_codebooks):
            stage_codes = stage.encode(latent if total is None else latent - total, used)
            codes.append(stage_codes)
            if len(codes) < len(self.stages):  # the seed's order: x - (q_c + q_p), not (x - q_c) - q_p
                part = stage.decode(stage_codes)
                total = part if total is None else total + part
        return mx.concatenate(codes, axis=-1)

    def decode(self, codes: mx.array) -> mx.array:
        latent = None
        for stage, start, used in self.spans(codes.shape[-1]):
            part = stage.decode(codes[..., start : start + used])
            latent = part if latent is None else latent + part
        return latent


def build_quantizer(config: QuantizerConfig) -> SplitResidualVQ | ChainResidualVQ:
    return ChainResidualVQ(config) if config.topology == "chain" else SplitResidualVQ(config)


CODEBOOK_EPS = 1e-5  # the references' clamp(cluster_usage, min=1e-5)


def codebook_arrays(embed_sum: np.ndarray, cluster_usage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A reference codebook (EMA ``embed_sum`` and ``cluster_usage``) -> the float32 codebook and half its
    squared norms, as the search needs them: ``embed_sum / clamp(cluster_usage, min=1e-5)``."""
    usage = np.maximum(cluster_usage.astype(np.float32), CODEBOOK_EPS)
    book = embed_sum.astype(np.float32) / usage[:, None]
    return book, 0.5 * (book.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
