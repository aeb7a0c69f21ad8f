"""Quantization: which weight matrices MLX's affine kernels cover, quantizing a float model in place, and the
placeholders and checks a strict load of a quantized file needs."""

from __future__ import annotations

import warnings

import mlx.core as mx
import mlx.nn as nn

from .errors import MimiError, PerformanceWarning, WeightsError
from .layers.linear import QUANT_BITS, QUANT_GROUP_SIZES, WeightMatrix
from .schedule import on_cpu

# What quantize keeps float unless told otherwise: the two SEANet conv stacks. Measured on the test suite's
# random full-size weights (10 s of speech, 8-bit, group 64): quantizing everything keeps 92% of semantic codes,
# 80% of acoustic codes 2-8 and 34 dB decode SNR; with both SEANets float (27 M of 96 M parameters; the 50 M in
# the transformers, which every streaming step reads, are still quantized) 97%, 91% and 57 dB. The encoder
# SEANet causes most code flips, the decoder SEANet most of the decode error. ``keep_float=()`` quantizes all.
DEFAULT_KEEP_FLOAT = ("encoder", "decoder")

# MLX's CPU backend runs quantized matmuls through its own kernels, not OpenBLAS: 10 s of speech encoded at 1.0x
# real time with 8-bit weights against 10.8x in float32 (AMD EPYC, 2 cores). Said once, where it is decided.
QUANTIZED_ON_CPU = (
    "quantized matmuls run about 10x slower than float32 on MLX's CPU backend (measured: 10 s of speech encoded at "
    "1.0x real time with 8 bits, 10.8x in float32): quantization saves memory here, not time; on Metal it saves both"
)


def parse_keep_float(keep_float) -> tuple[str, ...]:
    """``keep_float`` as the API and CLI take it -> layer names. None: the default (the SEANets); "none" (or an
    empty sequence): nothing, every quantizable layer is quantized; a comma-separated string or a sequence of
    names: those layers (a prefix names every layer under it)."""
    if keep_float is None:
        return DEFAULT_KEEP_FLOAT
    if isinstance(keep_float, str):
        keep_float = keep_float.split(",")
    if not isinstance(keep_float, (list, tuple)) or not all(isinstance(k, str) for k in keep_float):
        raise MimiError(
            "keep_float must be layer names (a list, or one comma-separated string), 'none' or None (the default), "
            f"got {keep_float!r}"
        )
    names = tuple(k.strip() for k in keep_float if k.strip())
    return () if names in ((), ("none",)) else names


def warn_if_quantized_on_cpu(model: nn.Module) -> None:
    if model.config.quantization is not None and on_cpu():
        warnings.warn(QUANTIZED_ON_CPU, PerformanceWarning, stacklevel=3)


def quantizable_layers(model: nn.Module, group_size: int, keep_float: tuple[str, ...] = ()) -> dict[str, WeightMatrix]:
    """The layers a quantization of ``group_size`` covers: every weight matrix whose input width it divides.

    Never: the codebooks and the RVQ projections (the search runs in float32), norms, biases, LayerScale, the
    depthwise upsample (not a matmul), the first conv (1 input channel, 448 weights, im2col) and any layer
    named in ``keep_float`` (a prefix matches every layer under it)."""
    out = {}
    for name, module in model.named_modules():
        if not isinstance(module, WeightMatrix) or not module.quantizable(group_size):
            continue
        if any(name == k or name.startswith(k + ".") for k in keep_float):
            continue
        out[name] = module
    return out


def check_quantize_arguments(bits, group_size) -> None:
    if bits not in QUANT_BITS or isinstance(bits, bool):
        raise MimiError(f"quantize must be one of {', '.join(map(str, QUANT_BITS))} bits, got {bits!r}")
    if group_size not in QUANT_GROUP_SIZES or isinstance(group_size, bool):
        raise MimiError(f"group_size must be one of {', '.join(map(str, QUANT_GROUP_SIZES))}, got {group_size!r}")


def quantize_model(model: nn.Module, bits: int, group_size: int = 64, keep_float=None) -> nn.Module:
    """Quantize a float model in place (MLX affine kernels) and record it in ``model.config.quantization``.

    ``keep_float``: layers kept float (``parse_keep_float``); default: the two SEANets."""
    keep_float = parse_keep_float(keep_float)
    if model.config.quantization is not None:
        raise MimiError("this model is already quantized")
    check_quantize_arguments(bits, group_size)
    names = {n for n, _ in model.named_modules()}
    unknown = [k for k in keep_float if k not in names and k not in DEFAULT_KEEP_FLOAT]  # encoder-only lacks "decoder"
    if unknown:
        raise MimiError(f"keep_float names no layer: {', '.join(unknown)}")
    layers = quantizable_layers(model, group_size, keep_float)
    for layer in layers.values():
        layer.quantize(group_size, bits)
    mx.eval(model.parameters())
    mx.clear_cache()  # the float weights' buffers (see load.release_load_buffers)
    model.config.quantization = {"bits": bits, "group_size": group_size, "mode": "affine", "modules": sorted(layers)}
    warn_if_quantized_on_cpu(model)
    return model


def without_prefixes(quantization: dict | None, dropped: tuple[str, ...]) -> dict | None:
    """A quantization record without the layers under ``dropped`` prefixes (a half of the model left out)."""
    if quantization is None or not dropped:
        return quantization
    return {**quantization, "modules": [m for m in quantization["modules"] if not (m + ".").startswith(dropped)]}


def expect_quantized(model: nn.Module) -> None:
    """Shape the layers the config lists as quantized, for a strict load of a quantized converted file."""
    q = model.config.quantization
    modules = dict(model.named_modules())
    for name in q["modules"]:
        layer = modules.get(name)
        if not isinstance(layer, WeightMatrix) or not layer.quantizable(q["group_size"]):
            raise WeightsError(f"config quantizes {name!r}, which is not a quantizable layer of this model")
        layer.expect_quantized(q["group_size"], q["bits"], model.dtype)


def check_quantized_tensors(model: nn.Module, expected: dict, weights: dict) -> None:
    """One clear error where the file's quantized layers and the config's disagree."""
    q = model.config.quantization
    for name in sorted(weights):
        if name.endswith(".scales") and name not in expected:
            raise WeightsError(f"tensor {name!r}: the file holds this layer quantized, the config has it float")
    for name in sorted(expected):
        if not name.endswith(".scales"):
            continue
        if name not in weights:
            raise WeightsError(
                f"tensor {name[: -len('scales')]}weight is float in the file, but the config quantizes it "
                f"({q['bits']} bits, group size {q['group_size']})"
            )
        got, want = tuple(weights[name].shape), tuple(expected[name].shape)
        if got != want:
            inputs = want[1] * q["group_size"]
            raise WeightsError(
                f"tensor {name!r} has shape {got}, expected {want}: quantized with group size "
                f"{inputs // max(got[1], 1)}, not the config's {q['group_size']}"
            )
