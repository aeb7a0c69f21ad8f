"""Checkpoint layouts: detect (Hugging Face, Kyutai original, mlx-mimi converted), sanitize to ours, load strictly.

``sanitize`` turns any supported layout into this package's parameter names and shapes (conv weights in MLX
order, 1x1 projections squeezed, q|k|v stacked with rotate-half RoPE, codebooks divided and normed in
float32). ``load_model`` then loads it strictly: a missing, unexpected or mis-shaped tensor is one error
that names it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from .config import JodioConfig, MimiConfig, config_from_dict, config_from_file
from .errors import MimiError, PerformanceWarning, WeightsError
from .jodio import DUMP_LAYOUT, Jodio, dump_config, is_dump_layout, sanitize_dump
from .layers.linear import QUANT_BITS, QUANT_GROUP_SIZES, WeightMatrix
from .model import Mimi

HF, ORIGINAL, CONVERTED = "hf", "original", "mlx-mimi"
FORMAT_NAME = "mlx-mimi"
# 2: conv weights stored as their matmul matrices (layers/conv.py); 1: MLX conv order (out, kernel, in)
FORMAT_VERSION = "2"
CODEBOOK_EPS = 1e-5  # the references' clamp(cluster_usage, min=1e-5)

__all__ = ["WeightsError", "detect_layout", "load_model", "sanitize"]


def layout_of(names: set[str] | list[str], metadata: dict | None = None) -> str | None:
    """The layout a checkpoint's tensor names (and metadata) are in, or None for anything else (a language
    model, say)."""
    names = set(names)
    if (metadata or {}).get("format") == FORMAT_NAME or any(n.startswith("quantizer.semantic.") for n in names):
        return CONVERTED
    if is_dump_layout(names):
        return DUMP_LAYOUT
    if any(n.startswith("quantizer.semantic_residual_vector_quantizer.") for n in names) or any(
        n.startswith(("encoder.layers.", "decoder.layers.")) for n in names
    ):
        return HF
    if any(n.startswith("quantizer.rvq_first.") for n in names) or any(
        n.startswith(("encoder.model.", "decoder.model.")) for n in names
    ):
        return ORIGINAL
    return None


def detect_layout(names: set[str] | list[str], metadata: dict | None = None) -> str:
    layout = layout_of(names, metadata)
    if layout is not None:
        return layout
    raise WeightsError(
        "unrecognised checkpoint: neither the Hugging Face, Kyutai original, JODIO dump nor mlx-mimi layout"
    )


def fold_weight_norm(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Replace weight-norm pairs (``weight_g``/``weight_v`` or torch parametrizations) by the plain weight."""
    out = dict(tensors)
    pairs = []
    for name in tensors:
        if name.endswith(".weight_g"):
            pairs.append((name, name[: -len("_g")] + "_v", name[: -len("_g")]))
        elif name.endswith(".parametrizations.weight.original0"):
            base = name[: -len(".parametrizations.weight.original0")]
            pairs.append((name, base + ".parametrizations.weight.original1", base + ".weight"))
    for g_name, v_name, w_name in pairs:
        if v_name not in tensors:
            raise WeightsError(f"weight-norm tensor {g_name} has no matching {v_name}")
        g, v = out.pop(g_name).astype(np.float32), out.pop(v_name).astype(np.float32)
        norm = np.sqrt((v.reshape(v.shape[0], -1) ** 2).sum(axis=1)).reshape((-1,) + (1,) * (v.ndim - 1))
        out[w_name] = g.reshape(norm.shape) * v / norm
    return out


# -- name maps: our module prefix -> (source prefix, kind) ------------------------------------------------
def _seanet_modules(config: MimiConfig, layout: str) -> dict[str, tuple[str, str, int]]:
    """our module -> (source module, kind, stride)."""
    seq = "layers" if layout == HF else "model"
    conv = "conv" if layout == HF else "conv.conv"
    convtr = "conv" if layout == HF else "convtr.convtr"
    r = config.num_residual_layers
    n = len(config.upsampling_ratios)
    out: dict[str, tuple[str, str, int]] = {}
    for side in ("encoder", "decoder"):
        out[f"{side}.init_conv"] = (f"{side}.{seq}.0.{conv}", "conv", 1)
        out[f"{side}.final_conv"] = (f"{side}.{seq}.{n * (r + 2) + 2}.{conv}", "conv", 1)
        ratios = config.seanet_ratios if side == "encoder" else config.upsampling_ratios
        for i in range(n):
            base = 1 + i * (r + 2)
            first_res = base if side == "encoder" else base + 2
            for j in range(r):
                for our, theirs in (("conv1", 1), ("conv2", 3)):
                    src = f"{side}.{seq}.{first_res + j}.block.{theirs}.{conv}"
                    out[f"{side}.stages.{i}.residuals.{j}.{our}"] = (src, "conv", 1)
            if side == "encoder":
                out[f"encoder.stages.{i}.downsample"] = (f"encoder.{seq}.{base + r + 1}.{conv}", "conv", ratios[i])
            else:
                out[f"decoder.stages.{i}.upsample"] = (f"decoder.{seq}.{base + 1}.{convtr}", "convtr", ratios[i])
    stride = config.downsample_stride
    if layout == HF:
        out["downsample"] = ("downsample.conv", "conv", stride)
        out["upsample"] = ("upsample.conv", "depthwise", stride)
    else:
        out["downsample"] = ("downsample.conv.conv.conv", "conv", stride)
        out["upsample"] = ("upsample.convtr.convtr.convtr", "depthwise", stride)
    return out


def conv_matrix(w, stride: int):
    """A PyTorch Conv1d weight (out, in, K) -> the matrix layers.conv.CausalConv1d multiplies by.

    Stride 1: (K * out, in), taps stacked. Strided (K = 2 * stride): (2 * out, stride * in), the first half of
    the taps then the second, each row over (tap within the half, in channel). Works on numpy and MLX arrays.
    """
    out, cin, k = w.shape
    if stride > 1:
        return w.reshape(out, cin, 2, stride).transpose(2, 0, 3, 1).reshape(2 * out, stride * cin)
    return w.transpose(2, 0, 1).reshape(k * out, cin)


def convtr_matrix(w):
    """A PyTorch ConvTranspose1d weight (in, out, K) -> (K * out, in), as layers.conv.ConvTranspose1d uses it."""
    cin, out, k = w.shape
    return w.transpose(2, 1, 0).reshape(k * out, cin)


def upgrade_converted(arrays: dict, config: MimiConfig, version: str) -> dict:
    """Converted files of an older format version -> the current layout (version 1 kept MLX conv order)."""
    if version == FORMAT_VERSION:
        return arrays
    if version != "1":
        raise WeightsError(f"mlx-mimi format version {version!r} is newer than this mlx-mimi reads ({FORMAT_VERSION})")
    out = dict(arrays)
    for ours, (_, kind, stride) in _seanet_modules(config, HF).items():
        name = ours + ".weight"
        if name not in out or kind == "depthwise":
            continue
        w = out[name]
        if kind == "conv":  # (out, K, in) -> PyTorch (out, in, K)
            out[name] = conv_matrix(w.transpose(0, 2, 1), stride)
        else:  # (K, out, in)
            out[name] = w.reshape(-1, w.shape[-1])
    return out


def _transformer_layer_map(layout: str, side: str, i: int) -> dict[str, list[str]]:
    """our parameter name -> source tensor names (several are concatenated: q|k|v)."""
    ours = f"{side}_transformer.layers.{i}."
    if layout == HF:
        src = f"{side}_transformer.layers.{i}."
        return {
            ours + "attn.qkv.weight": [src + f"self_attn.{p}_proj.weight" for p in "qkv"],
            ours + "attn.out.weight": [src + "self_attn.o_proj.weight"],
            ours + "attn_norm.weight": [src + "input_layernorm.weight"],
            ours + "attn_norm.bias": [src + "input_layernorm.bias"],
            ours + "mlp_norm.weight": [src + "post_attention_layernorm.weight"],
            ours + "mlp_norm.bias": [src + "post_attention_layernorm.bias"],
            ours + "mlp.fc1.weight": [src + "mlp.fc1.weight"],
            ours + "mlp.fc2.weight": [src + "mlp.fc2.weight"],
            ours + "attn_scale": [src + "self_attn_layer_scale.scale"],
            ours + "mlp_scale": [src + "mlp_layer_scale.scale"],
        }
    src = f"{side}_transformer.transformer.layers.{i}."
    return {
        ours + "attn.qkv.weight": [src + "self_attn.in_proj_weight"],
        ours + "attn.out.weight": [src + "self_attn.out_proj.weight"],
        ours + "attn_norm.weight": [src + "norm1.weight"],
        ours + "attn_norm.bias": [src + "norm1.bias"],
        ours + "mlp_norm.weight": [src + "norm2.weight"],
        ours + "mlp_norm.bias": [src + "norm2.bias"],
        ours + "mlp.fc1.weight": [src + "linear1.weight"],
        ours + "mlp.fc2.weight": [src + "linear2.weight"],
        ours + "attn_scale": [src + "layer_scale_1.scale"],
        ours + "mlp_scale": [src + "layer_scale_2.scale"],
    }


def _rvq_sources(layout: str, path: str) -> tuple[str, Callable[[int], tuple[str, str]]]:
    """(prefix of the path's projections, j -> (embed_sum name, cluster_usage name))."""
    if layout == HF:
        prefix = f"quantizer.{path}_residual_vector_quantizer."
        return prefix, lambda j: (
            f"{prefix}layers.{j}.codebook.embed_sum",
            f"{prefix}layers.{j}.codebook.cluster_usage",
        )
    prefix = "quantizer.rvq_first." if path == "semantic" else "quantizer.rvq_rest."
    return prefix, lambda j: (
        f"{prefix}vq.layers.{j}._codebook.embedding_sum",
        f"{prefix}vq.layers.{j}._codebook.cluster_usage",
    )


def interleaved_to_rotate_half(w: np.ndarray, num_heads: int) -> np.ndarray:
    """Reorder q or k projection rows from interleaved RoPE pairs (Kyutai) to rotate-half halves (HF)."""
    out_dim, in_dim = w.shape
    head_dim = out_dim // num_heads
    return w.reshape(num_heads, head_dim // 2, 2, in_dim).transpose(0, 2, 1, 3).reshape(out_dim, in_dim)


def codebook_arrays(embed_sum: np.ndarray, cluster_usage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float32 codebook and half its squared norms, as the search needs them."""
    usage = np.maximum(cluster_usage.astype(np.float32), CODEBOOK_EPS)
    book = embed_sum.astype(np.float32) / usage[:, None]
    return book, 0.5 * (book.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)


_IGNORED = re.compile(r"(\.initialized|\._initialized)$")


def sanitize(tensors: dict[str, np.ndarray], config: MimiConfig, layout: str | None = None) -> dict[str, np.ndarray]:
    """Any supported layout -> our names and shapes (numpy, float32). Raises WeightsError on extras."""
    layout = layout or detect_layout(list(tensors))
    if layout == CONVERTED:
        return dict(tensors)
    tensors = fold_weight_norm(tensors)
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in tensors:
            raise WeightsError(f"missing tensor {name!r} ({layout} layout)")
        used.add(name)
        return np.asarray(tensors[name], dtype=np.float32)

    out: dict[str, np.ndarray] = {}
    halves = [s for s, has in (("encoder", config.has_encoder), ("decoder", config.has_decoder)) if has]
    for ours, (src, kind, stride) in _seanet_modules(config, layout).items():
        side = "encoder" if ours.startswith(("encoder", "downsample")) else "decoder"
        if side not in halves:
            continue
        w = take(src + ".weight")
        if kind == "conv":
            out[ours + ".weight"] = conv_matrix(w, stride)
        elif kind == "convtr":
            out[ours + ".weight"] = convtr_matrix(w)
        else:  # depthwise (C, 1, K) -> (K, C)
            out[ours + ".weight"] = w[:, 0, :].T
        if src + ".bias" in tensors:
            out[ours + ".bias"] = take(src + ".bias")
    heads = config.num_attention_heads
    for side in halves:
        for i in range(config.num_hidden_layers):
            for ours, srcs in _transformer_layer_map(layout, side, i).items():
                w = np.concatenate([take(s) for s in srcs], axis=0) if len(srcs) > 1 else take(srcs[0])
                if layout == ORIGINAL and ours.endswith("attn.qkv.weight"):
                    q, k, v = np.split(w, 3, axis=0)
                    q, k = interleaved_to_rotate_half(q, heads), interleaved_to_rotate_half(k, heads)
                    w = np.concatenate([q, k, v], axis=0)
                out[ours] = w
    for path, count in (
        ("semantic", config.num_semantic_quantizers),
        ("acoustic", config.num_acoustic_quantizers),
    ):
        prefix, book_names = _rvq_sources(layout, path)
        out[f"quantizer.{path}.input_proj"] = take(prefix + "input_proj.weight")[..., 0]
        out[f"quantizer.{path}.output_proj"] = take(prefix + "output_proj.weight")[..., 0]
        pairs = [codebook_arrays(*(take(n) for n in book_names(j))) for j in range(count)]
        out[f"quantizer.{path}.codebooks"] = np.stack([book for book, _ in pairs])
        out[f"quantizer.{path}.half_sq_norms"] = np.stack([norms for _, norms in pairs])
    dropped = ("encoder.", "encoder_transformer.", "downsample.") if not config.has_encoder else ()
    dropped += ("decoder.", "decoder_transformer.", "upsample.") if not config.has_decoder else ()
    extra = sorted(
        n for n in tensors if n not in used and not _IGNORED.search(n) and not n.startswith(dropped or ("\0",))
    )
    if extra:
        raise WeightsError(f"unexpected tensor {_first_of(extra)} in the {layout} checkpoint")
    return out


def _first_of(names: list[str]) -> str:
    """The first name quoted, and how many more there are: one error line for any number of bad tensors."""
    return repr(names[0]) + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")


def load_into(model: Mimi, weights: dict[str, np.ndarray]) -> Mimi:
    """Strict load: every parameter present with its exact shape, nothing left over."""
    expected = dict(tree_flatten(model.parameters()))
    _check_quantization_matches(model, expected, weights)
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise WeightsError(f"missing tensor {_first_of(missing)}")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise WeightsError(f"unexpected tensor {_first_of(extra)}")
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


def _check_quantization_matches(model: Mimi, expected: dict, weights: dict) -> None:
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


# What quantize keeps float unless told otherwise: the two SEANet conv stacks. Measured on the test suite's
# random full-size weights (10 s of speech, 8-bit, group 64): quantizing everything keeps 92% of semantic codes,
# 80% of acoustic codes 2-8 and 34 dB decode SNR; with both SEANets float (27 M of 96 M parameters; the 50 M in
# the transformers, which every streaming step reads, are still quantized) 97%, 91% and 57 dB. The encoder
# SEANet causes most code flips, the decoder SEANet most of the decode error. ``keep_float=()`` quantizes all.
DEFAULT_KEEP_FLOAT = ("encoder", "decoder")


def quantizable_layers(model: Mimi, group_size: int, keep_float: tuple[str, ...] = ()) -> dict[str, WeightMatrix]:
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


# MLX's CPU backend runs quantized matmuls through its own kernels, not OpenBLAS: 10 s of speech encoded at 1.0x
# real time with 8-bit weights against 10.8x in float32 (AMD EPYC, 2 cores). Said once, where it is decided.
QUANTIZED_ON_CPU = (
    "quantized matmuls run about 10x slower than float32 on MLX's CPU backend (measured: 10 s of speech encoded at "
    "1.0x real time with 8 bits, 10.8x in float32): quantization saves memory here, not time; on Metal it saves both"
)


def warn_if_quantized_on_cpu(model: Mimi) -> None:
    if model.config.quantization is not None and mx.default_device() == mx.cpu:
        warnings.warn(QUANTIZED_ON_CPU, PerformanceWarning, stacklevel=3)


def quantize_model(model: Mimi, bits: int, group_size: int = 64, keep_float=None) -> Mimi:
    """Quantize a float model in place (MLX affine kernels) and record it in ``model.config.quantization``.

    ``keep_float``: layers kept float (``parse_keep_float``); default: the two SEANets."""
    keep_float = parse_keep_float(keep_float)
    if model.config.quantization is not None:
        raise MimiError("this model is already quantized")
    if bits not in QUANT_BITS or isinstance(bits, bool):
        raise MimiError(f"quantize must be one of {', '.join(map(str, QUANT_BITS))} bits, got {bits!r}")
    if group_size not in QUANT_GROUP_SIZES or isinstance(group_size, bool):
        raise MimiError(f"group_size must be one of {', '.join(map(str, QUANT_GROUP_SIZES))}, got {group_size!r}")
    names = {n for n, _ in model.named_modules()}
    unknown = [k for k in keep_float if k not in names and k not in DEFAULT_KEEP_FLOAT]  # encoder-only lacks "decoder"
    if unknown:
        raise MimiError(f"keep_float names no layer: {', '.join(unknown)}")
    layers = quantizable_layers(model, group_size, keep_float)
    for layer in layers.values():
        layer.quantize(group_size, bits)
    mx.eval(model.parameters())
    release_load_buffers()
    model.config.quantization = {"bits": bits, "group_size": group_size, "mode": "affine", "modules": sorted(layers)}
    warn_if_quantized_on_cpu(model)
    return model


def _expect_quantized(model: Mimi) -> None:
    """Shape the listed layers' parameters as quantized, for a strict load of a quantized converted file."""
    q = model.config.quantization
    modules = dict(model.named_modules())
    for name in q["modules"]:
        layer = modules.get(name)
        if not isinstance(layer, WeightMatrix) or not layer.quantizable(q["group_size"]):
            raise WeightsError(f"config quantizes {name!r}, which is not a quantizable layer of this model")
        layer.expect_quantized(q["group_size"], q["bits"], model.dtype)


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


def load_model(
    model: str | Path = "kyutai/mimi",
    dtype: str | mx.Dtype | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    quantize: int | None = None,
    group_size: int = 64,
    keep_float: tuple[str, ...] | str | None = None,
    decoder: bool = True,
) -> Mimi:
    """Load Mimi (or JODIO) from a hub repo id, a local folder or a .safetensors file, in any supported layout.

    The config comes from the checkpoint: a converted file embeds it; a Hugging Face layout needs its
    config.json (an error without it); Kyutai's original file never has one and is ``kyutai/mimi``'s
    architecture (``MimiConfig()``'s defaults). A quantized converted folder loads quantized, with no flags;
    ``quantize=8`` (or 4, ...) quantizes a float checkpoint on load (``weights.quantize_model``).
    ``decoder=False`` loads the encoder only (a tokenizer; a JODIO checkpoint without the decoder repair).
    """
    from .hub import resolve

    parse_dtype(dtype)  # before any I/O: a bad argument fails at once
    keep_float = parse_keep_float(keep_float)
    mimi = load_resolved(resolve(model, revision=revision, cache_dir=cache_dir), dtype, decoder=decoder)
    if quantize is not None:
        quantize_model(mimi, quantize, group_size, keep_float)
    release_load_buffers()  # the file's arrays and their conversions are gone by now
    return mimi


def load_resolved(resolved, dtype: str | mx.Dtype | None = None, decoder: bool = True) -> Mimi:
    """Load the files ``hub.resolve`` found (``decoder=False``: the encoder only)."""
    requested = parse_dtype(dtype)
    try:
        arrays, metadata = mx.load(str(resolved.weights), return_metadata=True)
    except Exception as exc:
        raise WeightsError(f"cannot read {resolved.weights}: {str(exc).splitlines()[0]}") from exc
    layout = detect_layout(list(arrays), metadata)
    config = _config_for(layout, metadata, resolved)
    if not decoder:
        if not config.has_encoder:
            raise MimiError(f"{resolved.weights} holds no encoder: it cannot be loaded without its decoder")
        config.has_decoder = False
    if layout == DUMP_LAYOUT:
        dump_config(set(arrays), config)
    stored = parse_dtype(metadata.get("dtype")) if layout == CONVERTED else None
    target = requested or stored or mx.float32
    mimi = (Jodio if isinstance(config, JodioConfig) else Mimi)(config, dtype=target)
    if config.quantization is not None:
        _expect_quantized(mimi)
        warn_if_quantized_on_cpu(mimi)
    if layout == CONVERTED:
        weights = upgrade_converted(arrays, config, metadata.get("format_version", "1"))  # ours: no numpy trip
    elif layout == DUMP_LAYOUT:
        weights = sanitize_dump(
            fold_weight_norm({k: np.array(v.astype(mx.float32)) for k, v in arrays.items()}), config
        )
    else:
        weights = sanitize({k: np.array(v.astype(mx.float32)) for k, v in arrays.items()}, config, layout)
    load_into(mimi, weights)
    mimi.source = {"model_id": resolved.model_id, "revision": resolved.revision, "layout": layout}
    return mimi


def _config_for(layout: str, metadata: dict, resolved) -> MimiConfig:
    import json

    from .errors import ConfigError

    if layout == CONVERTED:
        if "config" not in metadata:
            raise WeightsError(f"{resolved.weights}: mlx-mimi file without its embedded config")
        try:
            data = json.loads(metadata["config"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{resolved.weights}: embedded config is not JSON ({exc})") from exc
        return config_from_dict(data)
    if resolved.config is not None:
        config = config_from_file(resolved.config)
        if isinstance(config, JodioConfig) != (layout == DUMP_LAYOUT):
            raise ConfigError(f"{resolved.config} describes {type(config).__name__[:-6]}, but the weights are {layout}")
        return config
    if layout == DUMP_LAYOUT:
        return JodioConfig()  # no config beside it: the dump's sizes and mlx-mimi's readings (README, "JODIO")
    if layout == ORIGINAL:
        return MimiConfig()  # Kyutai's file ships without a config: it is kyutai/mimi's architecture
    raise ConfigError(
        f"{resolved.weights} is in the Hugging Face layout but has no config.json beside it "
        "(download the repo's config.json too)"
    )
