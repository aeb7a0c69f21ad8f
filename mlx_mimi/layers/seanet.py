"""SEANet encoder and decoder: causal conv stacks with ELU residual blocks (identity skip)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..config import MimiConfig
from .activations import elu
from .conv import CausalConv1d, ConvTranspose1d

State = list


class ResidualBlock(nn.Module):
    """x + conv2(elu(conv1(elu(x)))): a K-tap conv to dim // compress, then a 1x1 conv back."""

    def __init__(self, dim: int, hidden: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv1 = CausalConv1d(dim, hidden, kernel_size, dilation=dilation)
        self.conv2 = CausalConv1d(hidden, dim, 1)

    def initial_state(self, batch_size: int, dtype: mx.Dtype) -> mx.array | None:
        return self.conv1.initial_state(batch_size, dtype)

    def __call__(self, x: mx.array, state: mx.array | None) -> tuple[mx.array, mx.array | None]:
        h, state = self.conv1(elu(x), state)
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

    def __call__(
        self, x: mx.array, state: State, final: bool = False, valid: mx.array | None = None
    ) -> tuple[mx.array, State] | tuple[mx.array, State, mx.array]:
        """``valid`` (B,) int: input steps that belong to each clip of a right-padded batch. With it, the call
        also returns each clip's valid output steps (the strided convs' ceil(valid / stride))."""
        state = iter(state)
        new_state = []

        def run(layer, h, **kw):
            h, s = layer(h, next(state), **kw)
            new_state.append(s)
            return h

        x = run(self.init_conv, x)
        for stage in self.stages:
            for block in stage.residuals:
                x = run(block, x)
            x = run(stage.downsample, elu(x), final=final, valid=valid)
            if valid is not None:
                valid = (valid + stage.downsample.stride - 1) // stage.downsample.stride
        x = run(self.final_conv, elu(x))
        return (x, new_state) if valid is None else (x, new_state, valid)


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

    def __call__(self, x: mx.array, state: State) -> tuple[mx.array, State]:
        state = iter(state)
        new_state = []

        def run(layer, h):
            h, s = layer(h, next(state))
            new_state.append(s)
            return h

        x = run(self.init_conv, x)
        for stage in self.stages:
            x = run(stage.upsample, elu(x))
            for block in stage.residuals:
                x = run(block, x)
        x = run(self.final_conv, elu(x))
        return x, new_state
