"""What every checkpoint file needs, whatever its codec: which layout its tensor names are in, which model type that
layout holds, weight-norm folding, and one-line names of bad tensors. Below the hub, which decides from names
alone (a header) before anything large is downloaded."""

from __future__ import annotations

import numpy as np

from .errors import WeightsError

HF, ORIGINAL, CONVERTED, DUMP = "hf", "original", "mlx-mimi", "jodio-dump"
FORMAT_NAME = "mlx-mimi"  # the converted layout's metadata "format"
# 2: conv weights stored as their matmul matrices (layers/conv.py); 1: MLX conv order (out, kernel, in)
FORMAT_VERSION = "2"
# Which model type each source layout holds (a converted file names its own in its embedded config).
LAYOUT_MODEL_TYPE = {HF: "mimi", ORIGINAL: "mimi", DUMP: "jodio"}
MODEL_TYPES = ("mimi", "jodio")  # what a config.json's "model_type" may name (load.py's registry)


def layout_of(names: set[str] | list[str], metadata: dict | None = None) -> str | None:
    """The layout a checkpoint's tensor names (and metadata) are in, or None for anything else (a language
    model, say)."""
    names = set(names)
    if (metadata or {}).get("format") == FORMAT_NAME or any(n.startswith("quantizer.semantic.") for n in names):
        return CONVERTED
    if any(n.startswith(("semantic_rvq.quantizers.", "encoder.conv_blocks.", "decoder.conv_blocks.")) for n in names):
        return DUMP
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


def is_model_config(config) -> bool:
    """Whether a config.json's contents describe a codec mlx-mimi reads (not, say, a language model's)."""
    return isinstance(config, dict) and (config.get("model_type") in MODEL_TYPES or "upsampling_ratios" in config)


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


def first_of(names: list[str]) -> str:
    """The first name quoted, and how many more there are: one error line for any number of bad tensors."""
    return repr(names[0]) + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")


class Taker:
    """Takes source tensors by name (float32 numpy), remembering which were used, so that what is left over can be
    reported as one error naming it."""

    def __init__(self, tensors: dict[str, np.ndarray], layout: str):
        self.tensors, self.layout = tensors, layout
        self.used: set[str] = set()

    def __call__(self, name: str) -> np.ndarray:
        if name not in self.tensors:
            raise WeightsError(f"missing tensor {name!r} ({self.layout} layout)")
        self.used.add(name)
        return np.asarray(self.tensors[name], dtype=np.float32)

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def check_all_used(self, dropped: tuple[str, ...] = (), ignored=None, what: str = "") -> None:
        """WeightsError naming the tensors nobody took (except names under ``dropped`` prefixes and names
        ``ignored`` matches)."""
        extra = sorted(
            n
            for n in self.tensors
            if n not in self.used and not n.startswith(dropped or ("\0",)) and not (ignored and ignored.search(n))
        )
        if extra:
            raise WeightsError(f"unexpected tensor {first_of(extra)} in the {what or self.layout + ' checkpoint'}")
