"""The 9-codebook variant of seed 003 (content + prosody + 7 acoustic), built from Mimi by surgery.

The variant is a configuration, not a fork: the same encoder, transformers and decoder, and a quantizer of
topology "chain" (config ``quantizer_topology``/``chain_stages``, layers/quantizer.py) whose stages each
quantize what the stages before them leave of the latent:

    content  (1 codebook)   fresh, with its own 512 -> 256 -> 512 projections (seeded)
    prosody  (1 codebook)   Mimi's semantic codebook 0 with Mimi's semantic projections
    acoustic (7 codebooks)  Mimi's acoustic codebooks 1-7 with Mimi's acoustic projections

The seed's own module omits Mimi's projections (its heads quantize 512-d vectors); Mimi's codebooks live in
256-d projected spaces, so each transplanted codebook keeps the projections it was trained in, and the
content head gets a fresh pair. Decoding with q codebooks sums the outputs of the stages those codes reach
(the seed's ``q_total = q_c + q_p + q_a``, truncated like Mimi's RVQ). ``bridge`` (512 -> ``distill_dim``)
maps the content output to the teacher's features for training (mlx_mimi/train.py).
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
    distill_dim: int = 1536,
    kmeans_iters: int = 10,
) -> Mimi:
    """Surgery per seed 003's table: a new model whose quantizer is the content -> prosody -> acoustic chain.

    ``content_init``: "random" draws the content codebook as the seed's library does (kaiming-uniform, entries
    of size ~3e-3: at first the content stage takes almost nothing, and the variant codes like Mimi's first 8
    codebooks), or "kmeans" runs ``kmeans_iters`` Lloyd iterations on ``latents`` ((N, 512) quantizer inputs,
    e.g. ``mimi.encode_latent(pcm)`` of audio the user gives, at least one frame per codebook entry) as seen
    through the content projection. Everything random comes from ``seed``.
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
    if isinstance(distill_dim, bool) or not isinstance(distill_dim, int) or distill_dim < 1:
        raise MimiError(f"distill_dim must be a positive int, got {distill_dim!r}")
    new_config = dataclasses.replace(
        config,
        num_quantizers=sum(NINE_CODEBOOKS),
        num_semantic_quantizers=NINE_CODEBOOKS[0],
        quantizer_topology="chain",
        chain_stages=list(NINE_CODEBOOKS),
        distill_dim=distill_dim,
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
    weights.update(_fresh_content(new_config, seed, content_init, latents, kmeans_iters))
    load_into(variant, weights)
    variant.source = {**getattr(mimi, "source", {}), "variant": "nine-codebooks"}
    return variant


def _uniform(key: mx.array, shape: tuple[int, ...], bound: float) -> mx.array:
    return mx.random.uniform(-bound, bound, shape, key=key)


def _fresh_content(config, seed: int, content_init: str, latents, kmeans_iters: int) -> dict[str, mx.array]:
    """Content stage projections (PyTorch nn.Linear's init), codebook, and the bridge, all from ``seed``."""
    dim, vq_dim, size = config.hidden_size, config.vector_quantization_hidden_dimension, config.codebook_size
    keys = mx.random.split(mx.random.key(seed), 6)
    input_proj = _uniform(keys[0], (vq_dim, dim), 1 / math.sqrt(dim))
    output_proj = _uniform(keys[1], (dim, vq_dim), 1 / math.sqrt(vq_dim))
    if content_init == "random":
        # vector_quantize_pytorch: kaiming_uniform_ on a (1, size, vq_dim) tensor, fan_in = size * vq_dim
        book = _uniform(keys[2], (size, vq_dim), math.sqrt(6 / (size * vq_dim)))
    else:
        if latents is None:
            raise MimiError("content_init='kmeans' needs latents (the quantizer inputs of some audio)")
        book = kmeans(mx.array(latents).reshape(-1, dim).astype(mx.float32) @ input_proj.T, size, kmeans_iters, keys[3])
    out = {
        "quantizer.stages.0.input_proj": input_proj,
        "quantizer.stages.0.output_proj": output_proj,
        "quantizer.stages.0.codebooks": book[None],
        "quantizer.stages.0.half_sq_norms": half_sq_norms(book)[None],
        "quantizer.bridge.weight": _uniform(keys[4], (config.distill_dim, dim), 1 / math.sqrt(dim)),
        "quantizer.bridge.bias": _uniform(keys[5], (config.distill_dim,), 1 / math.sqrt(dim)),
    }
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
