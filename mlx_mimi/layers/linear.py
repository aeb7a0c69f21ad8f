"""Dense products: the one place where mlx-mimi multiplies activations by a weight matrix.

Batch invariance. MLX folds a (B, T, K) @ (K, N) product into one (B*T, K) matmul. A BLAS may pick another
kernel (and so another summation order) for another row count: on x86 OpenBLAS, small row counts take
dedicated paths, so clip 0 of a batch can differ in the last bit from the same clip alone. Inside
``per_clip_matmuls()`` (offline encode/decode), the weight is broadcast over the batch instead, and MLX's
CPU backend then runs one matmul per clip, with exactly the shapes a single clip would have: batched and
single offline results are bit-identical on the CPU backend, at no cost when rows per clip are many. The
streaming steps stay folded: there each clip has 1-2 rows, and one matmul reads the weights once for the
whole batch instead of once per clip (memory-bound at batch 1).

The mode is a ``contextvars.ContextVar``: per thread (and per asyncio task), so one thread's offline encode
never changes another thread's stream.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import mlx.core as mx
import mlx.nn as nn

_PER_CLIP = contextvars.ContextVar("mlx_mimi_per_clip_matmuls", default=False)


@contextlib.contextmanager
def per_clip_matmuls() -> Iterator[None]:
    """Within this block (in this thread), batched products use the same shapes per clip as a single clip."""
    token = _PER_CLIP.set(True)
    try:
        yield
    finally:
        _PER_CLIP.reset(token)


def matmul(x: mx.array, w_t: mx.array, bias: mx.array | None = None) -> mx.array:
    """``x @ w_t (+ bias)`` for x (B, T, K) or (T, K) and w_t (K, N)."""
    if x.ndim == 3 and x.shape[0] > 1 and _PER_CLIP.get():
        w_t = mx.broadcast_to(w_t, (x.shape[0], *w_t.shape))
    if bias is not None:
        return mx.addmm(bias, x, w_t)
    return x @ w_t


class Dense(nn.Module):
    """A linear layer, weight (out, in) as in PyTorch, through ``matmul``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.weight = mx.zeros((out_features, in_features))
        if bias:
            self.bias = mx.zeros((out_features,))

    def __call__(self, x: mx.array) -> mx.array:
        return matmul(x, self.weight.T, self.get("bias"))
