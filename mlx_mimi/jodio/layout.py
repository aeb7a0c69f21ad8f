"""JODIO's checkpoint names: a PyTorch ``state_dict`` under the dump's module names -> this package's layout."""

from __future__ import annotations

from functools import partial

import numpy as np

from ..checkpoint import DUMP, Taker, fold_weight_norm
from ..errors import WeightsError
from ..layers.conv import conv_matrix, convtr_matrix
from ..layers.transformer import interleaved_to_rotate_half
from .config import JodioConfig
from .layers import strided_matrix

REPAIR = (
    "mlx-mimi's repair of the dump's decoder: post_vq_proj reads 256 features (printed: 6) and repair_proj, "
    "Linear(1028 -> 256), feeds the decoder transformer"
)


def check_source(names: set[str], config: JodioConfig) -> None:
    """A file without ``repair_proj`` (a checkpoint of the dump as printed) is an error naming the repair unless
    the config asks for the encoder only."""
    if config.has_decoder and "repair_proj.weight" not in names:
        raise WeightsError(
            "JODIO checkpoint without repair_proj.weight: the dump's decoder has no layer from the 1028-wide codes "
            "to its 256-wide transformer, so this file can only encode. Load it encoder-only "
            "(load(..., decoder=False); CLI: mimi convert --encoder-only). See README, 'JODIO'"
        )


def sanitize(tensors: dict[str, np.ndarray], config: JodioConfig, layout: str = DUMP) -> dict[str, np.ndarray]:
    """A JODIO state_dict under the dump's names -> this package's names and layouts (weight norm folded)."""
    stride_1 = partial(conv_matrix, stride=1)
    take = Taker(fold_weight_norm(tensors), "JODIO dump")

    out: dict[str, np.ndarray] = {}

    def conv(ours: str, src: str, matrix) -> None:
        out[ours + ".weight"] = matrix(take(src + ".weight"))
        out[ours + ".bias"] = take(src + ".bias")

    def dense(ours: str, src: str, shape: tuple[int, int]) -> None:
        w = take(src + ".weight")
        if w.shape != shape:
            hint = f": {REPAIR}" if src == "post_vq_proj" else ""
            raise WeightsError(f"tensor {src + '.weight'!r} has shape {w.shape}, expected {shape}{hint}")
        out[ours + ".weight"] = w
        out[ours + ".bias"] = take(src + ".bias")

    if config.has_encoder:
        conv("encoder.input_proj", "encoder.input_proj", stride_1)
        for i in range(len(config.ratios)):
            src = f"encoder.conv_blocks.{i}"
            for j in range(len(config.dilations)):
                conv(f"encoder.blocks.{i}.units.{j}.conv", f"{src}.layers.{j}.0", stride_1)
            conv(f"encoder.blocks.{i}.downsample", f"{src}.downsample", strided_matrix)
        conv("encoder.final_conv", "encoder.final_conv", strided_matrix)
        dense("pre_vq_proj", "pre_vq_proj", (config.latent_dim, config.channels))
        _transformer(out, take, "encoder_transformer", config.encoder_transformer, config)
    for path in ("semantic", "acoustic"):
        count = config.num_semantic_quantizers if path == "semantic" else config.num_acoustic_quantizers
        books = np.stack([take(f"{path}_rvq.quantizers.{j}.codebook.weight") for j in range(count)])
        out[f"quantizer.{path}.codebooks"] = books
        out[f"quantizer.{path}.half_sq_norms"] = (0.5 * (books.astype(np.float64) ** 2).sum(-1)).astype(np.float32)
    if config.has_decoder:
        dense("repair_proj", "repair_proj", (config.decoder_width, config.latent_dim))
        _transformer(out, take, "decoder_transformer", config.decoder_transformer, config)
        dense("post_vq_proj", "post_vq_proj", (config.channels, config.decoder_width))
        conv("decoder.initial_upsample", "decoder.initial_upsample", convtr_matrix)
        for i in range(len(config.ratios)):
            src = f"decoder.conv_blocks.{i}"
            conv(f"decoder.blocks.{i}.upsample", f"{src}.upsample", convtr_matrix)
            for j in range(len(config.dilations)):
                conv(f"decoder.blocks.{i}.units.{j}.conv", f"{src}.layers.{j}.0", stride_1)
        conv("decoder.final_proj", "decoder.final_proj", stride_1)
    dropped = () if config.has_decoder else ("decoder.", "decoder_transformer.", "post_vq_proj.", "repair_proj.")
    dropped += () if config.has_encoder else ("encoder.", "encoder_transformer.", "pre_vq_proj.")
    take.check_all_used(dropped, what="JODIO checkpoint")
    return out


def _transformer(out: dict, take, side: str, spec, config: JodioConfig) -> None:
    for i in range(spec.num_layers):
        src, ours = f"{side}.layers.{i}.", f"{side}.layers.{i}."
        q, k, v = (take(f"{src}attention.{p}_proj.weight") for p in "qkv")
        if config.rope_layout == "interleaved":
            q, k = interleaved_to_rotate_half(q, spec.num_heads), interleaved_to_rotate_half(k, spec.num_heads)
        out[ours + "attn.qkv.weight"] = np.concatenate([q, k, v], axis=0)
        out[ours + "attn.out.weight"] = take(src + "attention.out_proj.weight")
        out[ours + "mlp.fc1.weight"] = take(src + "feed_forward.linear1.weight")
        out[ours + "mlp.fc2.weight"] = take(src + "feed_forward.linear2.weight")
        out[ours + "attn_norm.weight"] = take(src + "attention_norm.weight")
        out[ours + "mlp_norm.weight"] = take(src + "mlp_norm.weight")
    out[f"{side}.norm.weight"] = take(f"{side}.norm.weight")
