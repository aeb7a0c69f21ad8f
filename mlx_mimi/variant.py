"""The 9-codebook variant of seed 003 (content + prosody + 7 acoustic), built from Mimi by surgery.

The variant is a configuration, not a fork: the same encoder, transformers and decoder, and a quantizer of
topology "chain" (config ``quantizer_topology``/``chain_stages``, layers/quantizer.py) whose stages each
quantize what the stages before them leave of the latent:

    content  (1 codebook)   fresh: a 2048 x 512 codebook on the latent itself, no projection (seeded)
    prosody  (1 codebook)   Mimi's semantic codebook 0 with Mimi's semantic projections
    acoustic (7 codebooks)  Mimi's acoustic codebooks 1-7 with Mimi's acoustic projections

The content head is the seed's ``VectorQuantize(dim=512, codebook_size=2048)``: with the library's defaults
(codebook_dim = dim) it has no projection. The seed writes the other heads the same way, but Mimi's codebooks live
in 256-d projected spaces, so each transplanted codebook keeps the projections it was trained in.
``content_projection=True`` gives the content head a fresh 512 -> 256 -> 512 pair instead (the earlier reading).
Decoding with q codebooks sums the outputs of the stages those codes reach (the seed's ``q_total = q_c + q_p +
q_a``, truncated like Mimi's RVQ). The distillation bridges belong to training (mlx_mimi/train.py).
"""

from __future__ import annotations

import dataclasses
import math

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from .errors import MimiError
from .layers.quantizer import nearest_code
from .load import load_into
from .model import Mimi

NINE_CODEBOOKS = [1, 1, 7]  # content, prosody, acoustic
CONTENT_INITS = ("random", "kmeans")


def nine_codebooks(
    mimi: Mimi,
    *,
    seed: int = 0,
    content_init: str = "random",
    latents: mx.array | np.ndarray | None = None,
    kmeans_iters: int = 10,
    content_projection: bool = False,
) -> Mimi:
    """Surgery per seed 003's table: a new model whose quantizer is the content -> prosody -> acoustic chain.

    ``content_init``: "random" draws the content codebook as the seed's library does (kaiming-uniform over the
    (1, 2048, dim) tensor: entries of size ~1e-3, so at first the content stage takes almost nothing), or "kmeans"
    runs ``kmeans_iters`` Lloyd iterations on ``latents`` ((N, 512) quantizer inputs, e.g.
    ``mimi.encode_latent(pcm)`` of audio the user gives, at least one frame per codebook entry), as the content head
    sees them. ``content_projection``: the content head's codebook in a fresh 256-d projected space (default: on
    the latent, as the seed writes it). Everything random comes from ``seed``.
    """
    config = mimi.config
    if config.quantizer_topology != "split":
        raise MimiError("the 9-codebook surgery starts from Mimi's split quantizer; this model is already a variant")
    if config.quantization is not None:
        raise MimiError("the 9-codebook surgery needs a float model (quantize the variant afterwards)")
    if config.num_semantic_quantizers != 1 or config.num_acoustic_quantizers < 7:
        raise MimiError(
            f"the surgery needs 1 semantic and at least 7 acoustic codebooks, this model has "
            f"{config.num_semantic_quantizers} and {config.num_acoustic_quantizers}"
        )
    if content_init not in CONTENT_INITS:
        raise MimiError(f"content_init must be one of {', '.join(CONTENT_INITS)}, got {content_init!r}")
    new_config = dataclasses.replace(
        config,
        num_quantizers=sum(NINE_CODEBOOKS),
        num_semantic_quantizers=NINE_CODEBOOKS[0],
        quantizer_topology="chain",
        chain_stages=list(NINE_CODEBOOKS),
        chain_projections=[bool(content_projection), True, True],
        distill_dim=None,
    )
    variant = Mimi(new_config, dtype=mimi.dtype)
    weights = {k: v for k, v in tree_flatten(mimi.parameters()) if not k.startswith("quantizer.")}
    for stage, (path, first) in ((1, ("semantic", 0)), (2, ("acoustic", 0))):
        rvq = getattr(mimi.quantizer, path)
        n = NINE_CODEBOOKS[stage]
        weights[f"quantizer.stages.{stage}.input_proj"] = rvq.input_proj
        weights[f"quantizer.stages.{stage}.output_proj"] = rvq.output_proj
        weights[f"quantizer.stages.{stage}.codebooks"] = rvq.codebooks[first : first + n]
        weights[f"quantizer.stages.{stage}.half_sq_norms"] = rvq.half_sq_norms[first : first + n]
    weights.update(_fresh_content(new_config, seed, content_init, latents, kmeans_iters, content_projection))
    load_into(variant, weights)
    variant.source = {**getattr(mimi, "source", {}), "variant": "nine-codebooks"}
    return variant


def _uniform(key: mx.array, shape: tuple[int, ...], bound: float) -> mx.array:
    return mx.random.uniform(-bound, bound, shape, key=key)


def _fresh_content(
    config, seed: int, content_init: str, latents, kmeans_iters: int, projected: bool
) -> dict[str, mx.array]:
    """The content head's codebook (and, ``projected``, its projections with PyTorch nn.Linear's init), from
    ``seed``."""
    dim, size = config.hidden_size, config.codebook_size
    book_dim = config.vector_quantization_hidden_dimension if projected else dim
    keys = mx.random.split(mx.random.key(seed), 4)
    out = {}
    if projected:
        out["quantizer.stages.0.input_proj"] = _uniform(keys[0], (book_dim, dim), 1 / math.sqrt(dim))
        out["quantizer.stages.0.output_proj"] = _uniform(keys[1], (dim, book_dim), 1 / math.sqrt(book_dim))
    if content_init == "random":
        # vector_quantize_pytorch: kaiming_uniform_ on a (1, size, book_dim) tensor, fan_in = size * book_dim
        book = _uniform(keys[2], (size, book_dim), math.sqrt(6 / (size * book_dim)))
    else:
        if latents is None:
            raise MimiError("content_init='kmeans' needs latents (the quantizer inputs of some audio)")
        seen = mx.array(latents).reshape(-1, dim).astype(mx.float32)
        if projected:
            seen = seen @ out["quantizer.stages.0.input_proj"].T
        book = kmeans(seen, size, kmeans_iters, keys[3])
    out["quantizer.stages.0.codebooks"] = book[None]
    out["quantizer.stages.0.half_sq_norms"] = half_sq_norms(book)[None]
    return out


def half_sq_norms(book: mx.array) -> mx.array:
    """What the search needs beside a codebook (layers/quantizer.py)."""
    return 0.5 * (book.astype(mx.float32) ** 2).sum(axis=-1)


def cluster_sums(samples: mx.array, index: mx.array, size: int) -> tuple[mx.array, mx.array]:
    """(count, sum of samples) per codebook entry, for samples (N, D) assigned to entries ``index`` (N,)."""
    onehot = (index[:, None] == mx.arange(size)[None, :]).astype(mx.float32)
    return onehot.sum(axis=0), onehot.T @ samples


def kmeans(samples: mx.array, size: int, iters: int, key: mx.array) -> mx.array:
    """Lloyd's k-means, seeded: ``size`` centroids started from distinct samples; an empty cluster keeps its
    centroid. samples: (N, D) float32 with N >= size."""
    n = samples.shape[0]
    if n < size:
        raise MimiError(f"k-means needs at least {size} latent frames (one per codebook entry), got {n}")
    centroids = samples[mx.random.permutation(n, key=key)[:size]]
    for _ in range(iters):
        index = nearest_code(samples, centroids, half_sq_norms(centroids))
        counts, sums = cluster_sums(samples, index, size)
        centroids = mx.where(counts[:, None] > 0, sums / mx.maximum(counts, 1)[:, None], centroids)
        mx.eval(centroids)
    return centroids
