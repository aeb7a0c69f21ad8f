"""Dense products: the one place where mlx-mimi multiplies activations by a weight matrix, float or quantized.

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


def per_clip_active() -> bool:
    """Whether this thread is inside ``per_clip_matmuls()``: compiled code traced in one mode is not reused in
    the other (its products' shapes differ)."""
    return _PER_CLIP.get()


def matmul(x: mx.array, w_t: mx.array, bias: mx.array | None = None) -> mx.array:
    """``x @ w_t (+ bias)`` for x (B, T, K) or (T, K) and w_t (K, N)."""
    if x.ndim == 3 and x.shape[0] > 1 and _PER_CLIP.get():
        w_t = mx.broadcast_to(w_t, (x.shape[0], *w_t.shape))
    if bias is not None:
        return mx.addmm(bias, x, w_t)
    return x @ w_t


QUANT_BITS = (2, 3, 4, 5, 6, 8)
QUANT_GROUP_SIZES = (32, 64, 128)


class WeightMatrix(nn.Module):
    """A layer whose weight is one (out, in) matrix, applied as ``x @ W.T``.

    Float, or quantized with MLX's own affine kernels (``mx.quantize`` / ``mx.quantized_matmul``): then the layer
    holds ``weight`` packed in uint32, ``scales`` and ``biases`` per ``group_size`` inputs, like
    ``nn.QuantizedLinear``. Quantized matmuls need no per-clip shapes: they compute every row alone.
    """

    group_size = 0
    bits = 0

    @property
    def quantized(self) -> bool:
        return "scales" in self

    def quantizable(self, group_size: int) -> bool:
        return self.weight.ndim == 2 and self.weight.shape[-1] % group_size == 0

    def product(self, x: mx.array, bias: mx.array | None = None) -> mx.array:
        if "scales" not in self:
            return matmul(x, self.weight.T, bias)
        y = mx.quantized_matmul(
            x, self.weight, self.scales, self.biases, transpose=True, group_size=self.group_size, bits=self.bits
        )
        return y if bias is None else y + bias

    def quantize(self, group_size: int, bits: int) -> None:
        """Quantize this layer's float weight in place."""
        self.weight, self.scales, self.biases = mx.quantize(self.weight, group_size=group_size, bits=bits)
        self.group_size, self.bits = group_size, bits

    def expect_quantized(self, group_size: int, bits: int, dtype: mx.Dtype) -> None:
        """Placeholders shaped as a quantized weight, for a strict load of quantized tensors (nothing computed)."""
        out, cin = self.weight.shape
        self.weight = mx.zeros((out, cin * bits // 32), dtype=mx.uint32)
        self.scales = mx.zeros((out, cin // group_size), dtype=dtype)
        self.biases = mx.zeros((out, cin // group_size), dtype=dtype)
        self.group_size, self.bits = group_size, bits


class Dense(WeightMatrix):
    """A linear layer, weight (out, in) as in PyTorch."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.weight = mx.zeros((out_features, in_features))
        if bias:
            self.bias = mx.zeros((out_features,))

    def __call__(self, x: mx.array) -> mx.array:
        return self.product(x, self.get("bias"))
