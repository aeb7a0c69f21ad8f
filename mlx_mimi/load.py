"""Loading by registry: ``model_type`` -> (config class, model class, sanitize), as mlx-lm's ``load_model`` does;
the model's config from the checkpoint, its weights sanitized to ours, then a strict load that names any missing,
unexpected or mis-shaped tensor."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from . import layout as mimi_layout
from .checkpoint import CONVERTED, DUMP, FORMAT_VERSION, HF, LAYOUT_MODEL_TYPE, ORIGINAL, detect_layout, first_of
from .config import MimiConfig, config_from_file
from .errors import ConfigError, MimiError, WeightsError
from .hub import ResolvedModel, resolve
from .jodio import layout as jodio_layout
from .jodio.config import JodioConfig
from .jodio.model import Jodio
from .model import Mimi
from .quantize import (
    check_quantize_arguments,
    check_quantized_tensors,
    expect_quantized,
    parse_keep_float,
    quantize_model,
    warn_if_quantized_on_cpu,
    without_prefixes,
)


@dataclass(frozen=True)
class ModelType:
    """What the loader needs of one codec."""

    config: type  # ``from_dict(data)``
    model: type  # ``model(config, dtype=...)``
    sanitize: Callable  # (tensors (numpy), config, layout) -> our names and shapes
    default_config: Callable  # (layout, file) -> the config of a source file that ships none (or ConfigError)
    check_source: Callable  # (tensor names, config) -> None, or WeightsError where the file cannot serve the config
    upgrade: Callable  # (converted arrays, config, format version) -> the current format


def _mimi_default_config(layout: str, where: str) -> MimiConfig:
    if layout == ORIGINAL:
        return MimiConfig()  # Kyutai's file ships without a config: it is kyutai/mimi's architecture
    raise ConfigError(
        f"{where} is in the Hugging Face layout but has no config.json beside it (download the repo's config.json too)"
    )


def _jodio_default_config(layout: str, where: str) -> JodioConfig:
    return JodioConfig()  # the dump's sizes and mlx-mimi's readings (README, "JODIO")


def _nothing_to_check(names: set[str], config) -> None:
    return None


def _current_format_only(arrays: dict, config, version: str) -> dict:
    if version != FORMAT_VERSION:
        raise WeightsError(f"mlx-mimi format version {version!r} is not one this codec's files were written in")
    return arrays


REGISTRY: dict[str, ModelType] = {
    "mimi": ModelType(
        config=MimiConfig,
        model=Mimi,
        sanitize=mimi_layout.sanitize,
        default_config=_mimi_default_config,
        check_source=_nothing_to_check,
        upgrade=mimi_layout.upgrade_converted,
    ),
    "jodio": ModelType(
        config=JodioConfig,
        model=Jodio,
        sanitize=jodio_layout.sanitize,
        default_config=_jodio_default_config,
        check_source=jodio_layout.check_source,
        upgrade=_current_format_only,
    ),
}


def config_from_dict(data: dict):
    """The config a config.json describes: its ``model_type`` ("jodio"; anything else is Mimi's, as
    transformers' own Mimi config.json says "mimi")."""
    model_type = data.get("model_type") if isinstance(data, dict) else None
    return REGISTRY["jodio" if model_type == "jodio" else "mimi"].config.from_dict(data)


def read_config(path: str | Path):
    try:
        return config_from_dict(config_from_file(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


# -- dtypes -----------------------------------------------------------------------------------------------------
_DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}


def parse_dtype(dtype: str | mx.Dtype | None) -> mx.Dtype | None:
    """None, a name or an MLX dtype -> one of the three float dtypes the model runs in; MimiError otherwise."""
    if dtype is None:
        return None
    if isinstance(dtype, mx.Dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise MimiError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")


def dtype_name(dtype: mx.Dtype) -> str:
    return next(k for k, v in _DTYPES.items() if v == dtype)


# -- loading ----------------------------------------------------------------------------------------------------
def load_model(
    model: str | Path = "kyutai/mimi",
    dtype: str | mx.Dtype | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    quantize: int | None = None,
    group_size: int = 64,
    keep_float: tuple[str, ...] | str | None = None,
    decoder: bool = True,
) -> nn.Module:
    """Load Mimi (or JODIO) from a hub repo id, a local folder or a .safetensors file, in any supported layout.

    The config comes from the checkpoint: a converted file embeds it; a Hugging Face layout needs its
    config.json (an error without it); Kyutai's original file never has one and is ``kyutai/mimi``'s
    architecture (``MimiConfig()``'s defaults). A quantized converted folder loads quantized, with no flags;
    ``quantize=8`` (or 4, ...) quantizes a float checkpoint on load (``quantize.quantize_model``).
    ``decoder=False`` loads the encoder only (a tokenizer; a JODIO checkpoint without the decoder repair).
    """
    parse_dtype(dtype)  # before any I/O: bad arguments fail at once
    keep_float = parse_keep_float(keep_float)
    if quantize is not None:
        check_quantize_arguments(quantize, group_size)
    codec = load_resolved(resolve(model, revision=revision, cache_dir=cache_dir), dtype, decoder=decoder)
    if quantize is not None:
        quantize_model(codec, quantize, group_size, keep_float)
    release_load_buffers()  # the file's arrays and their conversions are gone by now
    return codec


def load_resolved(resolved: ResolvedModel, dtype: str | mx.Dtype | None = None, decoder: bool = True) -> nn.Module:
    """Load the files ``hub.resolve`` found (``decoder=False``: the encoder only)."""
    requested = parse_dtype(dtype)
    arrays, metadata = _read_tensors(resolved)
    layout = detect_layout(list(arrays), metadata)
    model_type, config = _config_for(layout, metadata, resolved)
    entry = REGISTRY[model_type]
    if config is None:
        config = entry.default_config(layout, str(resolved.weights))
    dropped = ()
    if not decoder:
        if not config.has_encoder:
            raise MimiError(f"{resolved.weights} holds no encoder: it cannot be loaded without its decoder")
        if config.has_decoder:
            config.has_decoder = False
            dropped = entry.model.dropped_prefixes(True, False)
            config.quantization = without_prefixes(config.quantization, dropped)
    if layout != CONVERTED:
        entry.check_source(set(arrays), config)
    stored = parse_dtype(metadata.get("dtype")) if layout == CONVERTED else None
    codec = entry.model(config, dtype=requested or stored or mx.float32)
    if config.quantization is not None:
        expect_quantized(codec)
        warn_if_quantized_on_cpu(codec)
    if layout == CONVERTED:
        arrays = {k: v for k, v in arrays.items() if not k.startswith(dropped or ("\0",))}
        weights = entry.upgrade(arrays, config, metadata.get("format_version", "1"))  # ours: no numpy trip
    else:
        weights = entry.sanitize({k: np.array(v.astype(mx.float32)) for k, v in arrays.items()}, config, layout)
    load_into(codec, weights)
    codec.source = {"model_id": resolved.model_id, "revision": resolved.revision, "layout": layout}
    return codec


def _read_tensors(resolved: ResolvedModel) -> tuple[dict[str, mx.array], dict]:
    """The checkpoint's tensors (lazy: ``mx.load`` reads a tensor's bytes only when it is evaluated) and the first
    file's metadata. In a combined checkpoint, only the tensors under the codec's prefix, the prefix removed: the
    language model's tensors are never evaluated, so never read into memory."""
    arrays: dict[str, mx.array] = {}
    metadata: dict = {}
    for i, path in enumerate(resolved.shards):
        try:
            tensors, meta = mx.load(str(path), return_metadata=True)
        except Exception as exc:
            raise WeightsError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
        metadata = meta if i == 0 else metadata
        if not resolved.prefix:
            arrays.update(tensors)
            continue
        arrays.update({k[len(resolved.prefix) :]: v for k, v in tensors.items() if k.startswith(resolved.prefix)})
    if resolved.prefix and not arrays:
        raise WeightsError(f"{resolved.weights}: no {resolved.prefix}* tensors")
    return arrays, ({} if resolved.prefix else metadata)


def _config_for(layout: str, metadata: dict, resolved: ResolvedModel):
    """(model type, its config or None where the source ships none) for a checkpoint of ``layout``."""
    if resolved.config_data is not None:  # a combined checkpoint's codec_config
        config = config_from_dict(resolved.config_data)
        return config.model_type, config
    if layout == CONVERTED:
        if "config" not in metadata:
            raise WeightsError(f"{resolved.weights}: mlx-mimi file without its embedded config")
        try:
            data = json.loads(metadata["config"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{resolved.weights}: embedded config is not JSON ({exc})") from exc
        config = config_from_dict(data)
        return config.model_type, config
    model_type = LAYOUT_MODEL_TYPE[layout]
    if resolved.config is None:
        return model_type, None
    config = read_config(resolved.config)
    if config.model_type != model_type:
        name = type(config).__name__[: -len("Config")]
        raise ConfigError(f"{resolved.config} describes {name}, but the weights are {layout}")
    return model_type, config


def load_into(model: nn.Module, weights: dict) -> nn.Module:
    """Strict load: every parameter present with its exact shape, nothing left over."""
    expected = dict(tree_flatten(model.parameters()))
    check_quantized_tensors(model, expected, weights)
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise WeightsError(f"missing tensor {first_of(missing)}")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise WeightsError(f"unexpected tensor {first_of(extra)}")
    params = []
    for name, ref in expected.items():
        w = weights[name]
        if tuple(w.shape) != tuple(ref.shape):
            raise WeightsError(f"tensor {name!r} has shape {tuple(w.shape)}, expected {tuple(ref.shape)}")
        arr = w if isinstance(w, mx.array) else mx.array(np.ascontiguousarray(w))
        if mx.issubdtype(ref.dtype, mx.floating):  # packed quantized weights stay uint32
            keep_f32 = name.startswith("quantizer.")  # the search runs in float32 whatever the model dtype
            arr = arr.astype(mx.float32 if keep_f32 else model.dtype)
        elif arr.dtype != ref.dtype:
            raise WeightsError(f"tensor {name!r} has dtype {arr.dtype}, expected {ref.dtype}")
        params.append((name, arr))
    model.update(tree_unflatten(params))
    mx.eval(model.parameters())
    return model


def release_load_buffers() -> None:
    """Empty MLX's buffer cache of the temporaries a load leaves (casts, conversions, ~30 MB).

    Why: on the CPU backend the cache holds at most 32 MB by default and keeps what it holds; full of load
    leftovers, it recycles nothing, so every 4 MB activation of the SEANets came fresh from the OS and
    page-faulted in (a 15360 x 64 ELU: 10 ms instead of 2 ms on an AMD EPYC after loading the model).
    """
    mx.clear_cache()


__all__ = ["DUMP", "HF", "ORIGINAL", "CONVERTED", "REGISTRY", "load_model", "load_resolved", "load_into"]
