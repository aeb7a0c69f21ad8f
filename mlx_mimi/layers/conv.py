"""Causal convolutions, channels-last (B, T, C), written as matmuls, each with an explicit streaming state.

Every conv here takes ``(x, state)`` and returns ``(y, new_state)``. The state is the left context the next
call needs: for a causal conv, the last ``k_eff - stride`` input samples; for a transposed conv, the part of
the last output block that overlaps the next one. Offline processing is the same call from the initial
state, so streaming equals offline by construction.

Why matmuls: every strided conv in Mimi has kernel = 2 * stride, and every transposed conv too. Grouping the
time axis into blocks of ``stride`` turns them into one matmul over pairs of adjacent blocks (encoder) or one
matmul plus a two-block overlap-add (decoder). Matmuls are the fastest op MLX has on every backend, and this
avoids MLX's slow CPU conv kernels and ``conv_transpose1d`` entirely.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .linear import matmul


def elu(x: mx.array) -> mx.array:
    """ELU with alpha 1: max(x, expm1(min(x, 0))), since expm1(x) >= x everywhere.

    A maximum instead of a select: on MLX's CPU backend ``where`` costs 4x a ``maximum`` pass.
    """
    return mx.maximum(x, mx.expm1(mx.minimum(x, 0)))


class CausalConv1d(nn.Module):
    """Causal conv with the reference padding: left context ``k_eff - stride``, zero (or edge) padded.

    Weight layout: MLX conv order ``(out, kernel, in)``. Strided convs must have kernel == 2 * stride.
    ``pad_mode`` "replicate" (the downsample conv only) starts a stream by repeating its first sample
    and pads a partial last block by repeating the last one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = True,
        pad_mode: str = "constant",
    ):
        super().__init__()
        if stride > 1 and (kernel_size != 2 * stride or dilation != 1):
            raise ValueError(f"strided conv needs kernel == 2 * stride, got kernel {kernel_size}, stride {stride}")
        if pad_mode not in ("constant", "replicate"):
            raise ValueError(f"unsupported pad_mode {pad_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation
        self.pad_mode = pad_mode
        self.weight = mx.zeros((out_channels, kernel_size, in_channels))
        if bias:
            self.bias = mx.zeros((out_channels,))

    @property
    def context(self) -> int:
        """Input samples carried from one call to the next (``k_eff - stride``)."""
        return (self.kernel_size - 1) * self.dilation + 1 - self.stride

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> mx.array | None:
        if self.context == 0:
            return None
        return mx.zeros((batch_size, self.context, self.in_channels), dtype=dtype)

    def _project(self, cols: mx.array) -> mx.array:
        return matmul(cols, self.weight.reshape(self.out_channels, -1).T, self.get("bias"))

    def __call__(
        self, x: mx.array, state: mx.array | None, fresh: mx.array | None = None, final: bool = False
    ) -> tuple[mx.array, mx.array | None]:
        """``x``: (B, T, C_in). ``fresh``: bool scalar, true at a stream's start (replicate mode only).

        ``final``: this is the stream's last call; pad a partial last block as the reference does.
        T must be a multiple of the stride unless ``final``.
        """
        ctx = self.context
        if ctx == 0:
            return self._project(x), None
        if self.pad_mode == "replicate" and fresh is not None:
            state = mx.where(fresh, mx.repeat(x[:, :1], ctx, axis=1), state)
        xp = mx.concatenate([state, x], axis=1)
        new_state = xp[:, -ctx:]
        if self.stride > 1:
            extra = (-x.shape[1]) % self.stride
            if extra and not final:
                raise ValueError(f"input of {x.shape[1]} steps is not a multiple of the stride {self.stride}")
            if extra:
                if self.pad_mode == "replicate":
                    pad = mx.repeat(xp[:, -1:], extra, axis=1)
                else:
                    pad = mx.zeros((xp.shape[0], extra, xp.shape[2]), dtype=xp.dtype)
                xp = mx.concatenate([xp, pad], axis=1)
            b, t, c = xp.shape
            blocks = xp.reshape(b, t // self.stride, self.stride * c)
            cols = mx.concatenate([blocks[:, :-1], blocks[:, 1:]], axis=-1)
        else:
            t = x.shape[1]
            d = self.dilation
            cols = mx.concatenate([xp[:, k * d : k * d + t] for k in range(self.kernel_size)], axis=-1)
        return self._project(cols), new_state


def _overlap_add(z: mx.array, state: mx.array) -> tuple[mx.array, mx.array]:
    """z: (B, L, 2, S*C), the two output blocks each input step writes; state: (B, 1, S*C) carried block.

    Block t of the output is the first block of step t plus the second block of step t - 1.
    """
    first, second = z[:, :, 0], z[:, :, 1]
    prev = mx.concatenate([state, second[:, :-1]], axis=1)
    return first + prev, second[:, -1:]


class ConvTranspose1d(nn.Module):
    """Causal transposed conv with kernel == 2 * stride, all ``K - S`` trimmed on the right.

    Weight layout ``(kernel, out, in)``: one matmul ``x @ W.T`` yields both output blocks of each step.
    The state is the second block of the last step, without bias (so the bias is added once).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, bias: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.weight = mx.zeros((2 * stride, out_channels, in_channels))
        if bias:
            self.bias = mx.zeros((out_channels,))

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> mx.array:
        return mx.zeros((batch_size, 1, self.stride * self.out_channels), dtype=dtype)

    def __call__(self, x: mx.array, state: mx.array) -> tuple[mx.array, mx.array]:
        b, n, _ = x.shape
        z = matmul(x, self.weight.reshape(-1, self.in_channels).T)
        y, new_state = _overlap_add(z.reshape(b, n, 2, -1), state)
        y = y.reshape(b, n * self.stride, self.out_channels)
        if "bias" in self:
            y = y + self.bias
        return y, new_state


class DepthwiseUpsample(nn.Module):
    """The frame-rate upsample: a depthwise (groups = channels) transposed conv, kernel 2 * stride, no bias.

    Depthwise means each channel is scaled by its own kernel tap: elementwise, no dense kernel needed.
    Weight layout ``(kernel, channels)``.
    """

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.channels = channels
        self.stride = stride
        self.weight = mx.zeros((2 * stride, channels))

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> mx.array:
        return mx.zeros((batch_size, 1, self.stride * self.channels), dtype=dtype)

    def __call__(self, x: mx.array, state: mx.array) -> tuple[mx.array, mx.array]:
        b, n, c = x.shape
        z = x[:, :, None, :] * self.weight
        y, new_state = _overlap_add(z.reshape(b, n, 2, -1), state)
        return y.reshape(b, n * self.stride, c), new_state
