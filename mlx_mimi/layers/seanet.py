"""Mimi's SEANet encoder and decoder: ELU residual blocks, channels doubling at each stride, causal convs as
matmuls; offline they run depth first over tiles of a chunk, as the schedule says (``tiled``)."""

from __future__ import annotations

import math
from functools import partial

import mlx.core as mx
import mlx.nn as nn

from ..config import SEANetConfig
from ..schedule import Schedule
from .activations import elu, elu_halves
from .conv import CausalConv1d, ConvTranspose1d
from .tiles import in_tiles, tile_steps

State = list


class ResidualBlock(nn.Module):
    """x + conv2(elu(conv1(elu(x)))): a K-tap conv to dim // compress, then a 1x1 conv back."""

    def __init__(self, dim: int, hidden: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv1 = CausalConv1d(dim, hidden, kernel_size, dilation=dilation)
        self.conv2 = CausalConv1d(hidden, dim, 1)

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> mx.array | None:
        return self.conv1.initial_state(batch_size, dtype)

    def __call__(self, x: mx.array, state: mx.array | None, schedule: Schedule) -> tuple[mx.array, mx.array | None]:
        h, state = self.conv1(_elu_pieces(x, schedule), state)
        h, _ = self.conv2(elu(h, schedule.fast_math), None)
        return x + h, state


def _elu_pieces(x: mx.array, schedule: Schedule) -> list[mx.array]:
    """ELU in front of a causal conv (which joins the pieces in its state concatenation)."""
    return elu_halves(x, schedule.fast_math, schedule.split_elementwise)


def _residual_blocks(config: SEANetConfig, dim: int) -> list[ResidualBlock]:
    return [
        ResidualBlock(dim, dim // config.compress, config.residual_kernel_size, config.dilation_growth_rate**j)
        for j in range(config.num_residual_layers)
    ]


class EncoderStage(nn.Module):
    def __init__(self, config: SEANetConfig, dim: int, ratio: int):
        super().__init__()
        self.residuals = _residual_blocks(config, dim)
        self.downsample = CausalConv1d(dim, 2 * dim, 2 * ratio, stride=ratio)


class SEANetEncoder(nn.Module):
    """Waveform (B, T, 1) -> (B, T / 960, hidden) at 25 Hz."""

    def __init__(self, config: SEANetConfig):
        super().__init__()
        nf = config.num_filters
        self.init_conv = CausalConv1d(config.audio_channels, nf, config.kernel_size)
        self.stages = []
        dim = nf
        for ratio in config.ratios:
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

    def tail_start(self, stages: int) -> int:
        """Index in ``_convs()`` of the first layer of the last ``stages`` stages (the final conv follows them)."""
        per_stage = 1 + len(self.stages[0].residuals)
        return len(self._convs()) - 1 - stages * per_stage

    def tiled(
        self,
        pcm: mx.array,
        state: State,
        schedule: Schedule,
        frame_size: int,
        final: bool = False,
        valid: mx.array | None = None,
    ) -> tuple[mx.array, State] | tuple[mx.array, State, mx.array]:
        """The encoder over a chunk depth first: in low-rate tiles, and within each the high-rate stages in their
        own smaller tiles, then the last ``schedule.low_rate_stages`` stages once per low-rate tile (each tile's
        activations are used while they are cached). Offline, each tile is an evaluation point."""
        low = partial(self._low_rate_tile, schedule=schedule, frame_size=frame_size)
        size = tile_steps(schedule.low_rate_tile_frames, frame_size)
        return in_tiles(low, pcm, state, size, final, valid, evaluate=schedule.evaluation_points)

    def _low_rate_tile(self, pcm, state, schedule: Schedule, frame_size: int, final=False, valid=None):
        tail = self.tail_start(schedule.low_rate_stages)
        head = partial(self, schedule=schedule, span=(0, tail))
        size = tile_steps(schedule.seanet_tile_frames, frame_size)
        out = in_tiles(head, pcm, state, size, final, valid, evaluate=schedule.evaluation_points)
        valid = out[2] if valid is not None else None
        return self(out[0], out[1], schedule, final=final, valid=valid, span=(tail, None))

    def __call__(
        self,
        x: mx.array,
        state: State,
        schedule: Schedule,
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
            if layer is self.init_conv:
                x, new[i] = layer(x, state[i])
            elif isinstance(layer, ResidualBlock):
                x, new[i] = layer(x, state[i], schedule)
            elif layer is self.final_conv:
                x, new[i] = layer(_elu_pieces(x, schedule), state[i])
            else:  # a stage's downsample
                x, new[i] = layer(_elu_pieces(x, schedule), state[i], final=final, valid=valid)
                if valid is not None:
                    valid = (valid + layer.stride - 1) // layer.stride
        return (x, new) if valid is None else (x, new, valid)


class DecoderStage(nn.Module):
    def __init__(self, config: SEANetConfig, dim: int, ratio: int):
        super().__init__()
        self.upsample = ConvTranspose1d(dim, dim // 2, ratio)
        self.residuals = _residual_blocks(config, dim // 2)


class SEANetDecoder(nn.Module):
    """(B, F, hidden) at 25 Hz -> waveform (B, F * 960, 1)."""

    def __init__(self, config: SEANetConfig):
        super().__init__()
        nf = config.num_filters
        dim = nf * 2 ** len(config.ratios)
        self.init_conv = CausalConv1d(config.hidden_size, dim, config.kernel_size)
        self.stages = []
        self.ratios = tuple(reversed(config.ratios))  # upsampling strides, latent side first (8, 6, 5, 4)
        for ratio in self.ratios:
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

    def tiled(self, x: mx.array, state: State, schedule: Schedule, steps_per_frame: int) -> tuple[mx.array, State]:
        """The decoder over a chunk depth first: in low-rate tiles, each running the first
        ``schedule.low_rate_stages`` stages once, then the high-rate stages in their own smaller tiles."""
        low = partial(self._low_rate_tile, schedule=schedule, steps_per_frame=steps_per_frame)
        return in_tiles(low, x, state, tile_steps(schedule.low_rate_tile_frames, steps_per_frame))

    def _low_rate_tile(self, x, state, schedule: Schedule, steps_per_frame: int):
        stages = schedule.low_rate_stages
        head = self.head_end(stages)
        x, state = self(x, state, schedule, span=(0, head))
        rate = steps_per_frame * math.prod(self.ratios[:stages])
        rest = partial(self, schedule=schedule, span=(head, None))
        return in_tiles(rest, x, state, tile_steps(schedule.seanet_tile_frames, rate))

    def __call__(
        self, x: mx.array, state: State, schedule: Schedule, span: tuple[int, int | None] = (0, None)
    ) -> tuple[mx.array, State]:
        """``span``: run only the layers ``_convs()[start:stop]``, as in ``SEANetEncoder``."""
        new = list(state)
        start, stop = span
        for i, layer in enumerate(self._convs()[start:stop], start):
            if isinstance(layer, ConvTranspose1d):
                x, new[i] = layer(elu(x, schedule.fast_math), state[i])
            elif isinstance(layer, ResidualBlock):
                x, new[i] = layer(x, state[i], schedule)
            elif layer is self.final_conv:
                x, new[i] = layer(_elu_pieces(x, schedule), state[i])
            else:
                x, new[i] = layer(x, state[i])
        return x, new
