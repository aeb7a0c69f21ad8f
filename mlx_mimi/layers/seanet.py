"""SEANet encoders and decoders: Mimi's (ELU residual blocks, channels doubling at each stride) and JODIO's
(one SiLU dilated conv per unit at a constant width, kernel-3 strided and transposed convs)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..config import JodioConfig, MimiConfig
from .activations import elu, elu_halves, silu
from .conv import CausalConv1d, ConvTranspose1d, ShortConvTranspose1d, ShortStridedConv1d

State = list


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


class ResidualBlock(nn.Module):
    """x + conv2(elu(conv1(elu(x)))): a K-tap conv to dim // compress, then a 1x1 conv back."""

    def __init__(self, dim: int, hidden: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv1 = CausalConv1d(dim, hidden, kernel_size, dilation=dilation)
        self.conv2 = CausalConv1d(hidden, dim, 1)

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> mx.array | None:
        return self.conv1.initial_state(batch_size, dtype)

    def __call__(self, x: mx.array, state: mx.array | None) -> tuple[mx.array, mx.array | None]:
        h, state = self.conv1(elu_halves(x), state)
        h, _ = self.conv2(elu(h), None)
        return x + h, state


def _residual_blocks(config: MimiConfig, dim: int) -> list[ResidualBlock]:
    return [
        ResidualBlock(dim, dim // config.compress, config.residual_kernel_size, config.dilation_growth_rate**j)
        for j in range(config.num_residual_layers)
    ]


class EncoderStage(nn.Module):
    def __init__(self, config: MimiConfig, dim: int, ratio: int):
        super().__init__()
        self.residuals = _residual_blocks(config, dim)
        self.downsample = CausalConv1d(dim, 2 * dim, 2 * ratio, stride=ratio)


class SEANetEncoder(nn.Module):
    """Waveform (B, T, 1) -> (B, T / 960, hidden) at 25 Hz."""

    def __init__(self, config: MimiConfig):
        super().__init__()
        if config.use_conv_shortcut:
            raise ValueError("use_conv_shortcut=true is not supported (Mimi uses identity skips)")
        nf = config.num_filters
        self.init_conv = CausalConv1d(config.audio_channels, nf, config.kernel_size)
        self.stages = []
        dim = nf
        for ratio in config.seanet_ratios:
            self.stages.append(EncoderStage(config, dim, ratio))
            dim *= 2
        self.final_conv = CausalConv1d(dim, config.hidden_size, config.last_kernel_size)

    def _convs(self) -> list:
        """Stateful layers in call order (one state entry each)."""
        out = [self.init_conv]
        for stage in self.stages:
            out.extend(stage.residuals)
            out.append(stage.downsample)
        out.append(self.final_conv)
        return out

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> State:
        return [layer.initial_state(batch_size, dtype) for layer in self._convs()]

    @property
    def receptive_field(self) -> int:
        """Input samples one output step depends on (4280 for Mimi)."""
        field, stride = 1, 1
        for layer in self._convs():
            conv = layer.conv1 if isinstance(layer, ResidualBlock) else layer
            field += (conv.kernel_size - 1) * conv.dilation * stride
            stride *= conv.stride
        return field

    def tail_start(self, stages: int) -> int:
        """Index in ``_convs()`` of the first layer of the last ``stages`` stages (the final conv follows them)."""
        per_stage = 1 + len(self.stages[0].residuals)
        return len(self._convs()) - 1 - stages * per_stage

    def __call__(
        self,
        x: mx.array,
        state: State,
        final: bool = False,
        valid: mx.array | None = None,
        span: tuple[int, int | None] = (0, None),
    ) -> tuple[mx.array, State] | tuple[mx.array, State, mx.array]:
        """``valid`` (B,) int: input steps that belong to each clip of a right-padded batch. With it, the call
        also returns each clip's valid output steps (the strided convs' ceil(valid / stride)).
        ``span``: run only the layers ``_convs()[start:stop]`` (x is the first one's input); the state returned is
        the whole list with those layers' entries replaced."""
        new = list(state)
        start, stop = span
        for i, layer in enumerate(self._convs()[start:stop], start):
            if layer is self.init_conv or isinstance(layer, ResidualBlock):
                x, new[i] = layer(x, state[i])
            elif layer is self.final_conv:
                x, new[i] = layer(elu_halves(x), state[i])
            else:  # a stage's downsample
                x, new[i] = layer(elu_halves(x), state[i], final=final, valid=valid)
                if valid is not None:
                    valid = (valid + layer.stride - 1) // layer.stride
        return (x, new) if valid is None else (x, new, valid)


class DecoderStage(nn.Module):
    def __init__(self, config: MimiConfig, dim: int, ratio: int):
        super().__init__()
        self.upsample = ConvTranspose1d(dim, dim // 2, ratio)
        self.residuals = _residual_blocks(config, dim // 2)


class SEANetDecoder(nn.Module):
    """(B, F, hidden) at 25 Hz -> waveform (B, F * 960, 1)."""

    def __init__(self, config: MimiConfig):
        super().__init__()
        nf = config.num_filters
        dim = nf * 2 ** len(config.upsampling_ratios)
        self.init_conv = CausalConv1d(config.hidden_size, dim, config.kernel_size)
        self.stages = []
        for ratio in config.upsampling_ratios:
            self.stages.append(DecoderStage(config, dim, ratio))
            dim //= 2
        self.final_conv = CausalConv1d(nf, config.audio_channels, config.last_kernel_size)

    def _convs(self) -> list:
        out = [self.init_conv]
        for stage in self.stages:
            out.append(stage.upsample)
            out.extend(stage.residuals)
        out.append(self.final_conv)
        return out

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> State:
        return [layer.initial_state(batch_size, dtype) for layer in self._convs()]

    def head_end(self, stages: int) -> int:
        """Index in ``_convs()`` just past the init conv and the first ``stages`` stages."""
        return 1 + stages * (1 + len(self.stages[0].residuals))

    def __call__(self, x: mx.array, state: State, span: tuple[int, int | None] = (0, None)) -> tuple[mx.array, State]:
        """``span``: run only the layers ``_convs()[start:stop]``, as in ``SEANetEncoder``."""
        new = list(state)
        start, stop = span
        for i, layer in enumerate(self._convs()[start:stop], start):
            if isinstance(layer, ConvTranspose1d):
                x = elu(x)
            elif layer is self.final_conv:
                x = elu_halves(x)
            x, new[i] = layer(x, state[i])
        return x, new


# -- JODIO (seed 002's dump) --------------------------------------------------------------------------------
# Every conv of the dump pads (k - 1) * d on both sides; read causally, the right side is trimmed, which is a
# left-padded causal conv. Two layers do not fit that reading and are run as a stream *behind* the printed
# model, with the steps before the printed start held at zero (``zero_before``):
# - input_proj (padding 1, as printed) sees one sample ahead. It runs as a causal conv one sample late, and
#   the first downsample reads one step less of left context, which puts the frames back where they belong.
# - each transposed conv's padding=2 drops the first 2 steps it writes. The decoder keeps them as zeros, so
#   its output runs ``JodioConfig.decoder_delay`` (2210) samples behind the printed decoder's.
# Offline and streaming then share one path, and a stream needs whole frames only.


def zero_before(x: mx.array, first: mx.array, start: int) -> mx.array:
    """x (B, T, C) holds stream steps first .. first + T - 1: steps before ``start`` set to zero."""
    keep = (first + mx.arange(x.shape[1])) >= start
    return mx.where(keep[None, :, None], x, mx.zeros((1,), dtype=x.dtype))


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
    def __init__(self, config: JodioConfig, stride: int, context: int):
        super().__init__()
        c, k = config.channels, config.kernel_size
        self.units = [DilatedUnit(c, k, d, config.residual) for d in config.dilations]
        self.downsample = ShortStridedConv1d(c, c, k, stride, context)


class JodioEncoder(nn.Module):
    """Waveform (B, T, 1), T a multiple of the frame size -> (B, T / 1920, channels) at 12.5 Hz."""

    def __init__(self, config: JodioConfig):
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
        return {"samples": mx.array(0, dtype=mx.int32), "convs": convs}

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
    def __init__(self, config: JodioConfig, stride: int):
        super().__init__()
        c, k = config.channels, config.kernel_size
        self.upsample = ShortConvTranspose1d(c, c, k, stride)
        self.units = [DilatedUnit(c, k, d, config.residual) for d in reversed(config.dilations)]


class JodioDecoder(nn.Module):
    """(B, F, channels) at 12.5 Hz -> waveform (B, F * 1920, 1), ``decoder_delay`` samples behind the printed
    decoder: output sample n is the printed decoder's sample n - 2210 (zero before it)."""

    def __init__(self, config: JodioConfig):
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
        return {"frames": mx.array(0, dtype=mx.int32), "convs": convs}

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
