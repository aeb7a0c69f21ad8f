"""The converter: any supported checkpoint layout -> mlx-mimi's layout (model.safetensors + config.json).

The converted file holds exactly the model's parameters (sanitized: MLX conv order, squeezed projections,
stacked q|k|v in one RoPE layout, float32 codebooks with their half squared norms), so loading it is a
plain ``mx.load`` and a strict update, with no per-tensor work. Its metadata carries the format, the
config and the dtype, so the file alone is enough to load.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from .atomic import atomic_write
from .checkpoint import FORMAT_NAME, FORMAT_VERSION
from .corpus import same_file
from .errors import MimiError
from .hub import resolve
from .load import dtype_name, load_resolved, parse_dtype
from .quantize import parse_keep_float, quantize_model, without_prefixes


def convert(
    model: str | Path,
    output: str | Path,
    dtype: str | None = "float32",
    encoder: bool = True,
    decoder: bool = True,
    revision: str | None = None,
    cache_dir: str | None = None,
    quantize: int | None = None,
    group_size: int = 64,
    keep_float: tuple[str, ...] | str | None = None,
) -> Path:
    """Convert ``model`` (hub id, folder or file, any layout) into the folder ``output``; return it.

    ``encoder=False`` or ``decoder=False`` drops that half (a tokenizer needs only the encoder). Codebooks
    stay float32 in every dtype: the search runs in float32. ``quantize`` (bits) quantizes every weight
    matrix it can (``quantize.quantize_model``) and records it in the config, so the folder loads quantized.
    """
    if not (encoder or decoder):
        raise MimiError("keep at least one of the encoder and the decoder")
    parse_dtype(dtype)
    parse_keep_float(keep_float)
    out = Path(output)
    resolved = resolve(model, revision=revision, cache_dir=cache_dir)
    refuse_overwriting_source(model, resolved, out)
    mimi = load_resolved(resolved, dtype=dtype)
    q = mimi.config.quantization
    if q is not None and quantize is None:
        warnings.warn(
            f"{model} is quantized ({q['bits']}-bit, group size {q['group_size']}): the converted model stays "
            "quantized (quantization cannot be undone; convert the float checkpoint for a float model)",
            stacklevel=2,
        )
    if quantize is not None:
        quantize_model(mimi, quantize, group_size, keep_float)
    return write_converted(mimi, out, encoder=encoder, decoder=decoder)


def refuse_overwriting_source(model: str, resolved, out: Path) -> None:
    """A folder written from ``model`` must not replace the files it is read from (checked before any work)."""
    for target in (out / "model.safetensors", out / "config.json"):
        for source in (*resolved.shards, resolved.config):
            if source is not None and same_file(target, source):
                raise MimiError(f"writing {model} into {out} would overwrite its source {source}: choose another -o")


def write_converted(mimi, output: str | Path, encoder: bool = True, decoder: bool = True) -> Path:
    """Write a loaded model in mlx-mimi's layout (model.safetensors + config.json) into the folder ``output``."""
    config = dataclasses.replace(mimi.config)
    config.has_encoder = config.has_encoder and encoder
    config.has_decoder = config.has_decoder and decoder
    dropped = mimi.dropped_prefixes(config.has_encoder, config.has_decoder)
    weights = {k: v for k, v in tree_flatten(mimi.parameters()) if not k.startswith(dropped or ("\0",))}
    config.quantization = without_prefixes(config.quantization, dropped)
    config_json = json.dumps(config.to_dict(), indent=2, sort_keys=True)
    source = getattr(mimi, "source", {}) or {}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "dtype": dtype_name(mimi.dtype),
        "config": config_json,
        "source_model": str(source.get("model_id", "")),
        "source_layout": str(source.get("layout", "")),
    }
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "model.safetensors", lambda tmp: mx.save_safetensors(tmp, weights, metadata=metadata))
    atomic_write(out / "config.json", lambda tmp: Path(tmp).write_text(config_json + "\n"))
    return out
