"""Random, non-degenerate Mimi weights built without torch, for the tests that need no reference.

The same recipe as reference.random_hf_model (which builds the weights with transformers' own MimiModel and
is what CI uses): PyTorch-style uniform init for the convs, widened transformer weights so attention is
peaked, codebooks drawn level by level from Gaussians fitted to the residuals of real speech (so speech
hits hundreds of distinct codes), and the decoder's last conv scaled to speech-like output. Saved in
mlx-mimi's converted layout. Only used where torch is missing (a Mac user's plain ``pytest``).
"""

from __future__ import annotations

import math
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from mlx_mimi.config import MimiConfig
from mlx_mimi.convert import write_converted
from mlx_mimi.model import Mimi


def _init(name: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    if "_transformer." in name:
        if name.endswith("_scale"):
            return rng.uniform(0.1, 0.6, shape)
        if name.endswith("norm.weight"):
            return 1 + 0.2 * rng.standard_normal(shape)
        if name.endswith("norm.bias"):
            return 0.1 * rng.standard_normal(shape)
        return rng.standard_normal(shape) * (1.5 / math.sqrt(shape[-1]))
    if name.startswith("upsample."):
        return rng.uniform(-0.5, 0.5, shape)
    # conv weights are (taps * out, in) or (2 * out, stride * in) matrices: ~3 taps of `in` inputs each
    fan_in = 3 * shape[-1] if len(shape) == 2 else 64
    bound = 1 / math.sqrt(max(fan_in, 1))
    return rng.uniform(-bound, bound, shape)


def _calibrate_codebooks(model: Mimi, speech: np.ndarray, rng: np.random.Generator) -> None:
    latent = np.array(model.encode_latent(speech))[0].astype(np.float64)  # (F, hidden)
    for path in (model.quantizer.semantic, model.quantizer.acoustic):
        residual = latent @ np.array(path.input_proj).astype(np.float64).T
        books = []
        for _ in range(path.codebooks.shape[0]):
            mean, cov = residual.mean(0), np.cov(residual.T)
            cov = cov + 0.05 * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
            book = mean + rng.standard_normal((path.codebooks.shape[1], cov.shape[0])) @ np.linalg.cholesky(cov).T
            nearest = ((book**2).sum(-1) - 2 * residual @ book.T).argmin(-1)
            residual = residual - book[nearest]
            books.append(book)
        books = np.stack(books).astype(np.float32)
        path.codebooks = mx.array(books)
        path.half_sq_norms = mx.array((0.5 * (books.astype(np.float64) ** 2).sum(-1)).astype(np.float32))


def random_model(speech: np.ndarray, folder: Path, seed: int = 0) -> Path:
    """Build the model from ``speech`` (24 kHz, >= 20 s) and write it to ``folder`` (converted layout)."""
    rng = np.random.default_rng(seed)
    model = Mimi(MimiConfig())
    params = [(k, mx.array(_init(k, v.shape, rng).astype(np.float32))) for k, v in tree_flatten(model.parameters())]
    model.update(tree_unflatten(params))
    mx.eval(model.parameters())
    _calibrate_codebooks(model, speech[-20 * 24_000 :], rng)
    codes = np.array(model.encode(speech[: 2 * 24_000]))
    peak = float(np.abs(np.array(model.decode(codes))).max())
    final = model.decoder.final_conv
    final.weight = final.weight * (0.3 / peak)
    final.bias = final.bias * (0.3 / peak)
    mx.eval(model.parameters())
    model.source = {"model_id": "random (torch-free test weights)", "revision": None, "layout": "mlx-mimi"}
    return write_converted(model, folder)
