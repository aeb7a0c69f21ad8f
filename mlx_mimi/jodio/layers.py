"""JODIO's layers (seed 002's module dump): SiLU dilated units at a constant width, kernel-3 strided and transposed
convs shorter than their strides, and its SEANet encoder and decoder, each with an explicit streaming state."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..layers.activations import silu
from ..layers.conv import CausalConv1d, overlap_add
from ..layers.linear import WeightMatrix
from .config import JodioSEANetConfig


class StateRunner:
    """Calls a stack's stateful layers in order, each with the next entry of the stack's state list, and
    collects their new states in ``new`` (one entry per layer, the order ``initial_state`` made them in)."""

    def __init__(self, states: list):
        self._states = iter(states)
        self.new: list = []

    def __call__(self, layer, h: mx.array, **kw) -> mx.array:
        h, s = layer(h, next(self._states), **kw)
        self.new.append(s)
        return h


def strided_matrix(w):
    """A PyTorch Conv1d weight (out, in, K) -> (out, K * in) for ShortStridedConv1d (taps outermost)."""
    out, cin, k = w.shape
    return w.transpose(0, 2, 1).reshape(out, k * cin)


class ShortStridedConv1d(WeightMatrix):
    """A strided conv whose kernel is not longer than its stride plus its left context (JODIO's downsamples).

    Output i reads inputs ``i * stride - context + j`` for taps j < kernel (zeros before the stream's start);
    the input is a whole number of strides. Weight ``(out, kernel * in)``, taps outermost.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, context: int):
        super().__init__()
        if not 0 <= context < kernel_size <= stride + context:
            raise ValueError(f"need 0 <= context < kernel <= stride + context, got {context}, {kernel_size}, {stride}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.context = kernel_size, stride, context
        self.weight = mx.zeros((out_channels, kernel_size * in_channels))
        self.bias = mx.zeros((out_channels,))

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> mx.array | None:
        return mx.zeros((batch_size, self.context, self.in_channels), dtype=dtype) if self.context else None

    def __call__(self, x: mx.array, state: mx.array | None) -> tuple[mx.array, mx.array | None]:
        steps, s = x.shape[1], self.stride
        if steps % s:
            raise ValueError(f"input of {steps} steps is not a multiple of the stride {s}")
        xp = x if state is None else mx.concatenate([state, x], axis=1)
        n = steps // s
        cols = mx.concatenate([xp[:, j : j + (n - 1) * s + 1 : s] for j in range(self.kernel_size)], axis=-1)
        new_state = None if state is None else xp[:, xp.shape[1] - self.context :]
        return self.product(cols, self.bias), new_state


class ShortConvTranspose1d(WeightMatrix):
    """A transposed conv with a kernel of at most twice its stride (JODIO's: kernel 3, strides 2..8).

    Input step i writes output steps ``i * stride + j`` for taps j < kernel, and the bias lands on every step,
    as PyTorch's ``ConvTranspose1d`` computes before its ``padding`` crop (the caller accounts for the crop;
    see layers/seanet.py's JODIO decoder). Taps past the stride spill into the next step's block: that block
    is the state (none where kernel <= stride). Weight layout ``(kernel * out, in)``, like ``ConvTranspose1d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        if kernel_size > 2 * stride:
            raise ValueError(f"kernel {kernel_size} is longer than twice the stride {stride}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.weight = mx.zeros((kernel_size * out_channels, in_channels))
        self.bias = mx.zeros((out_channels,))

    @property
    def overlaps(self) -> bool:
        return self.kernel_size > self.stride

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> mx.array | None:
        if not self.overlaps:
            return None
        return mx.zeros((batch_size, 1, self.stride * self.out_channels), dtype=dtype)

    def __call__(self, x: mx.array, state: mx.array | None) -> tuple[mx.array, mx.array | None]:
        b, n, _ = x.shape
        s, c = self.stride, self.out_channels
        z = self.product(x).reshape(b, n, self.kernel_size, c)
        blocks = 2 if self.overlaps else 1
        if self.kernel_size < blocks * s:
            gap = mx.zeros((b, n, blocks * s - self.kernel_size, c), dtype=z.dtype)
            z = mx.concatenate([z, gap], axis=2)
        if self.overlaps:
            z, state = overlap_add(z.reshape(b, n, 2, s * c), state)
        return z.reshape(b, n * s, c) + self.bias, state


# Every conv of the dump pads (k - 1) * d on both sides; read causally, the right side is trimmed, which is a
# left-padded causal conv. Two layers do not fit that reading and are run as a stream *behind* the printed
# model, with the steps before the printed start held at zero (``zero_before``):
# - input_proj (padding 1, as printed) sees one sample ahead. It runs as a causal conv one sample late, and
#   the first downsample reads one step less of left context, which puts the frames back where they belong.
# - each transposed conv's padding=2 drops the first 2 steps it writes. The decoder keeps them as zeros, so
#   its output runs ``JodioConfig.decoder_delay`` (2210) samples behind the printed decoder's.
# Offline and streaming then share one path, and a stream needs whole frames only.


def zero_before(x: mx.array, first: mx.array, start: int) -> mx.array:
    """x (B, T, C) holds stream steps first[b] .. first[b] + T - 1 of each row: steps before ``start`` set to zero."""
    keep = (first[:, None] + mx.arange(x.shape[1])) >= start
    return mx.where(keep[:, :, None], x, mx.zeros((1,), dtype=x.dtype))


class DilatedUnit(nn.Module):
    """JODIO's ``Sequential(ParametrizedConv1d, SiLU)``: x + silu(conv(x)), or silu(conv(x)) without the skip."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, residual: bool):
        super().__init__()
        self.conv = CausalConv1d(channels, channels, kernel_size, dilation=dilation)
        self.residual = residual

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> mx.array:
        return self.conv.initial_state(batch_size, dtype)

    def __call__(self, x: mx.array, state: mx.array) -> tuple[mx.array, mx.array]:
        h, state = self.conv(x, state)
        h = silu(h)
        return (x + h if self.residual else h), state


class JodioEncoderBlock(nn.Module):
    def __init__(self, config: JodioSEANetConfig, stride: int, context: int):
        super().__init__()
        c, k = config.channels, config.kernel_size
        self.units = [DilatedUnit(c, k, d, config.residual) for d in config.dilations]
        self.downsample = ShortStridedConv1d(c, c, k, stride, context)


class JodioEncoder(nn.Module):
    """Waveform (B, T, 1), T a multiple of the frame size -> (B, T / 1920, channels) at 12.5 Hz."""

    def __init__(self, config: JodioSEANetConfig):
        super().__init__()
        c, k = config.channels, config.kernel_size
        self.lookahead = config.input_lookahead
        self.input_proj = CausalConv1d(1, c, k)
        self.blocks = [
            JodioEncoderBlock(config, stride, k - 1 - (self.lookahead if i == 0 else 0))
            for i, stride in enumerate(config.ratios)
        ]
        self.final_conv = ShortStridedConv1d(c, c, k, config.final_stride, k - 1)

    def _convs(self) -> list:
        out = [self.input_proj]
        for block in self.blocks:
            out.extend(block.units)
            out.append(block.downsample)
        out.append(self.final_conv)
        return out

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> dict:
        convs = [layer.initial_state(batch_size, dtype) for layer in self._convs()]
        return {"samples": mx.zeros((batch_size,), dtype=mx.int32), "convs": convs}  # per row

    def __call__(self, x: mx.array, state: dict) -> tuple[mx.array, dict]:
        first, steps = state["samples"], x.shape[1]
        run = StateRunner(state["convs"])

        x = run(self.input_proj, x)
        for i, block in enumerate(self.blocks):
            for unit in block.units:
                if i == 0 and self.lookahead:  # the printed model's step -1: its padding, zero
                    x = zero_before(x, first, self.lookahead)
                x = run(unit, x)
            if i == 0 and self.lookahead:
                x = zero_before(x, first, self.lookahead)
            x = run(block.downsample, x)
        x = run(self.final_conv, x)
        return x, {"samples": first + steps, "convs": run.new}


class JodioDecoderBlock(nn.Module):
    def __init__(self, config: JodioSEANetConfig, stride: int):
        super().__init__()
        c, k = config.channels, config.kernel_size
        self.upsample = ShortConvTranspose1d(c, c, k, stride)
        self.units = [DilatedUnit(c, k, d, config.residual) for d in reversed(config.dilations)]


class JodioDecoder(nn.Module):
    """(B, F, channels) at 12.5 Hz -> waveform (B, F * 1920, 1), ``decoder_delay`` samples behind the printed
    decoder: output sample n is the printed decoder's sample n - 2210 (zero before it)."""

    def __init__(self, config: JodioSEANetConfig):
        super().__init__()
        c, k = config.channels, config.kernel_size
        self.crop = k - 1  # what each transposed conv's padding=2 drops from its start
        self.initial_upsample = ShortConvTranspose1d(c, c, k, config.final_stride)
        self.blocks = [JodioDecoderBlock(config, stride) for stride in reversed(config.ratios)]
        self.final_proj = CausalConv1d(c, 1, k)

    def _convs(self) -> list:
        out = [self.initial_upsample]
        for block in self.blocks:
            out.append(block.upsample)
            out.extend(block.units)
        out.append(self.final_proj)
        return out

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> dict:
        convs = [layer.initial_state(batch_size, dtype) for layer in self._convs()]
        return {"frames": mx.zeros((batch_size,), dtype=mx.int32), "convs": convs}  # per row

    def __call__(self, x: mx.array, state: dict) -> tuple[mx.array, dict]:
        frames, count = state["frames"], x.shape[1]
        run = StateRunner(state["convs"])

        # per level: steps per frame and the delay behind the printed model (zeros before it)
        per_frame = self.initial_upsample.stride
        delay = self.crop
        x = zero_before(run(self.initial_upsample, x), frames * per_frame, delay)
        for block in self.blocks:
            per_frame *= block.upsample.stride
            delay = delay * block.upsample.stride + self.crop
            x = zero_before(run(block.upsample, x), frames * per_frame, delay)
            for unit in block.units:
                x = zero_before(run(unit, x), frames * per_frame, delay)
        x = zero_before(run(self.final_proj, x), frames * per_frame, delay)
        return x, {"frames": frames + count, "convs": run.new}
