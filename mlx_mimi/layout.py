"""Mimi's checkpoint layouts: the Hugging Face (transformers) and Kyutai original names -> this package's names and
shapes (conv weights as their matmul matrices, 1x1 projections squeezed, q|k|v stacked with rotate-half RoPE,
codebooks divided and normed in float32), and older converted files -> the current format."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from .checkpoint import CONVERTED, FORMAT_VERSION, HF, ORIGINAL, Taker, detect_layout, fold_weight_norm
from .config import MimiConfig
from .errors import WeightsError
from .layers.conv import conv_matrix, convtr_matrix
from .layers.quantizer import codebook_arrays
from .layers.transformer import interleaved_to_rotate_half


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


def upgrade_converted(arrays: dict, config: MimiConfig, version: str) -> dict:
    """Converted files of an older format version -> the current layout (version 1 kept MLX conv order). The
    9-codebook variant's distillation bridge, which older folders hold in the quantizer, is dropped: it lives in the
    training checkpoint now (train.py)."""
    arrays = {k: v for k, v in arrays.items() if not k.startswith("quantizer.bridge.")}
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


_IGNORED = re.compile(r"(\.initialized|\._initialized)$")


def sanitize(tensors: dict[str, np.ndarray], config: MimiConfig, layout: str | None = None) -> dict[str, np.ndarray]:
    """The Hugging Face or Kyutai original layout -> our names and shapes (numpy, float32). Raises WeightsError
    naming a missing or unexpected tensor."""
    layout = layout or detect_layout(list(tensors))
    if layout == CONVERTED:
        return dict(tensors)
    take = Taker(fold_weight_norm(tensors), layout)

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
        if src + ".bias" in take:
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
    take.check_all_used(dropped, ignored=_IGNORED)
    return out
