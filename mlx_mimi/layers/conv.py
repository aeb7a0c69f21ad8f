"""Causal convolutions, channels-last (B, T, C), written as matmuls, each with an explicit streaming state.

Every conv here takes ``(x, state)`` and returns ``(y, new_state)``. The state is the left context the next
call needs: for a causal conv, the last ``k_eff - stride`` input samples; for a transposed conv, the part of
the last output block that overlaps the next one. Offline processing runs the same layers from the initial
state, in longer calls.

Why matmuls: MLX's CPU conv kernels are slow, and matmuls are the fastest op MLX has on every backend.
Each weight is stored as the matrix its matmul uses, taps stacked on the output side ("output-side"):

- stride 1, K taps: ``(K * out, in)``. One matmul of the padded input gives every tap's contribution at
  every step, ``z = x @ W.T`` of width K * out; the conv is the sum of K time-shifted slices of z. Unlike
  im2col (a K * in wide copy of the input), nothing K times the input is materialised: on the 24 kHz
  residual convs of the SEANets this is 3.2x faster than im2col (AMD EPYC, OpenBLAS), 18x on the decoder's
  64 -> 1 output conv. Where the input is much narrower than the output (the 1 -> 64 first conv), im2col's
  copy is the smaller one and is used instead.
- strided, kernel = 2 * stride (every strided conv in Mimi): the time axis grouped into blocks of
  ``stride`` steps, ``(2 * out, stride * in)``: the first half of the taps acts on block t, the second on
  block t + 1; one matmul and the sum of two shifted slices.
- transposed (``ConvTranspose1d``), kernel = 2 * stride: ``(2 * stride * out, in)``; one matmul gives both
  output blocks of each step, and block t of the output adds the second block of step t - 1.

``conv_matrix`` and ``convtr_matrix`` turn PyTorch's conv weights into these matrices (the checkpoint loaders use
them). JODIO's convs with kernels shorter than their strides live with JODIO (mlx_mimi/jodio/layers.py).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .linear import WeightMatrix, matmul


def conv_matrix(w, stride: int):
    """A PyTorch Conv1d weight (out, in, K) -> the matrix ``CausalConv1d`` multiplies by.

    Stride 1: (K * out, in), taps stacked. Strided (K = 2 * stride): (2 * out, stride * in), the first half of
    the taps then the second, each row over (tap within the half, in channel). Works on numpy and MLX arrays.
    """
    out, cin, k = w.shape
    if stride > 1:
        return w.reshape(out, cin, 2, stride).transpose(2, 0, 3, 1).reshape(2 * out, stride * cin)
    return w.transpose(2, 0, 1).reshape(k * out, cin)


def convtr_matrix(w):
    """A PyTorch ConvTranspose1d weight (in, out, K) -> (K * out, in), as ``ConvTranspose1d`` uses it."""
    cin, out, k = w.shape
    return w.transpose(2, 1, 0).reshape(k * out, cin)


class CausalConv1d(WeightMatrix):
    """Causal conv with the reference padding: left context ``k_eff - stride``, zero (or edge) padded.

    Weight layout (see the module docstring): ``(kernel * out, in)`` for stride 1, ``(2 * out, stride * in)``
    for strided convs, which must have kernel == 2 * stride. ``pad_mode`` "replicate" (the downsample conv
    only) starts a stream by repeating its first sample and pads a partial last block by repeating the last one.
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
        # im2col writes K * in values per step, the output-side product K * out: pick the smaller copy
        self.im2col = stride == 1 and kernel_size > 1 and 4 * in_channels <= out_channels
        if stride > 1:
            self.weight = mx.zeros((2 * out_channels, stride * in_channels))
        else:
            self.weight = mx.zeros((kernel_size * out_channels, in_channels))
        if bias:
            self.bias = mx.zeros((out_channels,))

    def quantizable(self, group_size: int) -> bool:
        return not self.im2col and super().quantizable(group_size)  # im2col multiplies by a reshaped weight

    @property
    def context(self) -> int:
        """Input samples carried from one call to the next (``k_eff - stride``)."""
        return (self.kernel_size - 1) * self.dilation + 1 - self.stride

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> mx.array | None:
        if self.context == 0:
            return None
        return mx.zeros((batch_size, self.context, self.in_channels), dtype=dtype)

    def __call__(
        self,
        x: mx.array | list[mx.array],
        state: mx.array | None,
        fresh: mx.array | None = None,
        final: bool = False,
        valid: mx.array | None = None,
    ) -> tuple[mx.array, mx.array | None]:
        """``x``: (B, T, C_in), or a list of its time pieces (``activations.elu_halves``), joined by the
        concatenation with the state. ``fresh``: (B,) bool, true where a row's stream starts (replicate mode only).

        ``final``: this is the stream's last call; pad a partial last block as the reference does.
        T must be a multiple of the stride unless ``final``. ``valid`` (B,) int: steps of ``x`` that belong to
        each clip of a right-padded batch (the rest is padding); a strided conv then pads each clip's partial
        last block as the reference pads it for that clip alone.
        """
        ctx = self.context
        bias = self.get("bias")
        parts = x if isinstance(x, list) else [x]
        if len(parts) > 1 and (ctx == 0 or valid is not None):
            parts = [mx.concatenate(parts, axis=1)]
        if valid is not None and self.stride > 1:
            parts = [self._pad_after(parts[0], valid)]
        if ctx == 0:  # 1x1 conv
            return self.product(parts[0], bias), None
        if self.pad_mode == "replicate" and fresh is not None:
            state = mx.where(fresh[:, None, None], mx.repeat(parts[0][:, :1], ctx, axis=1), state)
        xp = mx.concatenate([state, *parts], axis=1)
        new_state = xp[:, -ctx:]
        t = xp.shape[1] - ctx
        if self.stride > 1:
            return self._strided(xp, t, final, bias), new_state
        d, n = self.dilation, self.out_channels
        if self.im2col:
            cols = mx.concatenate([xp[:, k * d : k * d + t] for k in range(self.kernel_size)], axis=-1)
            w = self.weight.reshape(self.kernel_size, n, self.in_channels).transpose(1, 0, 2)
            return matmul(cols, w.reshape(n, -1).T, bias), new_state
        z = self.product(xp)  # (B, T + (K-1) d, K * out): every tap at every step
        y = z[:, :t, :n]
        for k in range(1, self.kernel_size):
            y = y + z[:, k * d : k * d + t, k * n : (k + 1) * n]
        return (y + bias if bias is not None else y), new_state

    def _pad_after(self, x: mx.array, valid: mx.array) -> mx.array:
        """Steps at or after ``valid[b]`` of clip b replaced by the reference's padding (zeros, or the last valid
        step in replicate mode). Causal layers never look ahead, so only strided convs see the padding."""
        keep = mx.arange(x.shape[1])[None, :, None] < valid[:, None, None]
        if self.pad_mode == "replicate":
            last = mx.maximum(valid - 1, 0)[:, None, None]
            pad = mx.take_along_axis(x, mx.broadcast_to(last, (x.shape[0], 1, x.shape[2])), axis=1)
        else:
            pad = mx.zeros((1, 1, 1), dtype=x.dtype)
        return mx.where(keep, x, pad)

    def _strided(self, xp: mx.array, steps: int, final: bool, bias: mx.array | None) -> mx.array:
        extra = (-steps) % self.stride
        if extra and not final:
            raise ValueError(f"input of {steps} steps is not a multiple of the stride {self.stride}")
        if extra:
            if self.pad_mode == "replicate":
                pad = mx.repeat(xp[:, -1:], extra, axis=1)
            else:
                pad = mx.zeros((xp.shape[0], extra, xp.shape[2]), dtype=xp.dtype)
            xp = mx.concatenate([xp, pad], axis=1)
        b, t, c = xp.shape
        blocks = xp.reshape(b, t // self.stride, self.stride * c)
        z = self.product(blocks)  # (B, L + 1, 2 * out): both halves of the taps at every block
        n = self.out_channels
        y = z[:, :-1, :n] + z[:, 1:, n:]
        return y + bias if bias is not None else y


def overlap_add(z: mx.array, state: mx.array) -> tuple[mx.array, mx.array]:
    """z: (B, L, 2, S*C), the two output blocks each input step writes; state: (B, 1, S*C) carried block.

    Block t of the output is the first block of step t plus the second block of step t - 1.
    """
    first, second = z[:, :, 0], z[:, :, 1]
    prev = mx.concatenate([state, second[:, :-1]], axis=1)
    return first + prev, second[:, -1:]


class ConvTranspose1d(WeightMatrix):
    """Causal transposed conv with kernel == 2 * stride, all ``K - S`` trimmed on the right.

    Weight layout ``(kernel * out, in)``: one matmul ``x @ W.T`` yields both output blocks of each step.
    The state is the second block of the last step, without bias (so the bias is added once).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, bias: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.weight = mx.zeros((2 * stride * out_channels, in_channels))
        if bias:
            self.bias = mx.zeros((out_channels,))

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> mx.array:
        return mx.zeros((batch_size, 1, self.stride * self.out_channels), dtype=dtype)

    def __call__(self, x: mx.array, state: mx.array) -> tuple[mx.array, mx.array]:
        b, n, _ = x.shape
        z = self.product(x)
        y, new_state = overlap_add(z.reshape(b, n, 2, -1), state)
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
        y, new_state = overlap_add(z.reshape(b, n, 2, -1), state)
        return y.reshape(b, n * self.stride, c), new_state
