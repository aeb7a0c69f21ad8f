"""The codes file: a .safetensors holding (K, F) codes in the smallest integer dtype, plus metadata.

Layout (readable by any safetensors reader): tensor ``codes`` of shape (K, F), dtype uint16 (2048 < 2^16);
string metadata ``format`` = "mimi-codes", ``format_version`` = "1", ``sample_rate``, ``frame_rate``,
``codebook_size``, ``num_codebooks``, ``num_frames``, ``num_samples`` (original length at sample_rate;
decode trims to it), ``model``, ``revision``, ``source``, and ``codebooks_fingerprint`` (the model's
``codebooks_fingerprint()``: what the codes mean; decoding with a model of another fingerprint is refused).
Raw ``.npy`` arrays of (K, F) codes are accepted too (length given separately).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import CodesFileError

FORMAT = "mimi-codes"
VERSION = "1"


@dataclass
class CodesFile:
    codes: np.ndarray  # (K, F)
    num_samples: int | None = None
    sample_rate: int = 24_000
    frame_rate: float = 12.5
    model: str = ""
    revision: str = ""
    source: str = ""
    codebook_size: int = 2048
    codebooks_fingerprint: str = ""  # the encoding model's Mimi.codebooks_fingerprint(); "" where unknown
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def frame_size(self) -> int:
        return int(round(self.sample_rate / self.frame_rate))

    @property
    def num_codebooks(self) -> int:
        return int(self.codes.shape[0])

    def metadata(self) -> dict[str, str]:
        meta = {
            "format": FORMAT,
            "format_version": VERSION,
            "sample_rate": str(self.sample_rate),
            "frame_rate": str(self.frame_rate),
            "codebook_size": str(self.codebook_size),
            "num_codebooks": str(self.num_codebooks),
            "num_frames": str(int(self.codes.shape[1])),
            "model": self.model,
            "revision": self.revision or "",
            "source": self.source,
        }
        if self.num_samples is not None:
            meta["num_samples"] = str(self.num_samples)
        if self.codebooks_fingerprint:
            meta["codebooks_fingerprint"] = self.codebooks_fingerprint
        meta.update(self.extra)
        return meta


def codes_file(
    model, codes: np.ndarray, num_samples: int | None, source: str, fingerprint: str | None = None
) -> CodesFile:
    """A CodesFile for (K, F) codes made by ``model`` (a Mimi): its rates, codebook size, id, revision and
    codebooks fingerprint (``fingerprint``: already computed, for callers that write often)."""
    src = getattr(model, "source", {}) or {}
    return CodesFile(
        np.asarray(codes),
        num_samples=num_samples,
        sample_rate=model.sample_rate,
        frame_rate=model.frame_rate,
        model=str(src.get("model_id") or ""),
        revision=str(src.get("revision") or ""),
        source=source,
        codebook_size=model.config.codebook_size,
        codebooks_fingerprint=fingerprint or model.codebooks_fingerprint(),
    )


def smallest_dtype(codebook_size: int) -> np.dtype:
    return np.dtype(np.uint8 if codebook_size <= 256 else np.uint16 if codebook_size <= 65536 else np.uint32)


def save_codes(path: str | Path, codes: CodesFile) -> Path:
    from safetensors.numpy import save_file

    arr = np.ascontiguousarray(codes.codes.astype(smallest_dtype(codes.codebook_size)))
    meta = codes.metadata()
    return atomic_write(path, lambda tmp: save_file({"codes": arr}, tmp, metadata=meta))


def load_codes(path: str | Path, num_samples: int | None = None, codebook_size: int = 2048) -> CodesFile:
    """Read a codes .safetensors (or a (K, F) .npy) and validate it."""
    path = Path(path)
    if not path.is_file():
        raise CodesFileError(f"{path}: no such file")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise CodesFileError(f"{path}: not a readable .npy file ({exc})") from exc
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        out = CodesFile(arr, num_samples=num_samples, source=path.name)
    else:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = dict(f.metadata() or {})
                if "codes" not in f.keys():
                    raise CodesFileError(f"{path}: no 'codes' tensor: not a {FORMAT} file")
                arr = f.get_tensor("codes")
        except CodesFileError:
            raise
        except Exception as exc:
            raise CodesFileError(f"{path}: not a readable codes file ({str(exc).splitlines()[0]})") from exc
        if meta.get("format") != FORMAT:
            raise CodesFileError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
        if meta.get("format_version") != VERSION:
            raise CodesFileError(f"{path}: {FORMAT} version {meta.get('format_version')!r} is not supported")
        out = CodesFile(
            arr,
            num_samples=_meta_number(path, meta, "num_samples", int, None),
            sample_rate=_meta_number(path, meta, "sample_rate", int, 24_000),
            frame_rate=_meta_number(path, meta, "frame_rate", float, 12.5),
            model=meta.get("model", ""),
            revision=meta.get("revision", ""),
            source=meta.get("source", ""),
            codebook_size=_meta_number(path, meta, "codebook_size", int, codebook_size),
            codebooks_fingerprint=meta.get("codebooks_fingerprint", ""),
        )
        for key, actual in (("num_codebooks", arr.shape[0] if arr.ndim else None), ("num_frames", arr.shape[-1])):
            if key in meta and _meta_number(path, meta, key, int, None) != actual:
                raise CodesFileError(f"{path}: metadata {key}={meta[key]} does not match the codes' shape {arr.shape}")
        if out.num_samples is not None and arr.ndim == 2:
            frames, size = arr.shape[1], out.frame_size
            if not (frames - 1) * size < out.num_samples <= frames * size:
                raise CodesFileError(
                    f"{path}: metadata num_samples={out.num_samples} does not fit {frames} frames of {size} samples"
                )
        if num_samples is not None:
            out.num_samples = num_samples
    arr = out.codes
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise CodesFileError(f"{path}: codes must be a (K, F) integer array, got {arr.dtype} {arr.shape}")
    if arr.shape[1] == 0:
        raise CodesFileError(f"{path}: the file holds no frames")
    if arr.size and (arr.min() < 0 or arr.max() >= codebook_size):
        raise CodesFileError(f"{path}: codes out of range [0, {codebook_size}): found {arr.min()}..{arr.max()}")
    if out.num_samples is not None and not 1 <= out.num_samples <= arr.shape[1] * out.frame_size:
        raise CodesFileError(
            f"{path}: length {out.num_samples} is outside 1..{arr.shape[1] * out.frame_size}, the samples "
            f"{arr.shape[1]} frames decode to"
        )
    return out


def check_codes_fit(codes: CodesFile, path: str | Path, model) -> str | None:
    """Raise CodesFileError where ``model`` cannot decode the codes of ``path`` correctly: another sample or frame
    rate, or codes made with other codebooks (their fingerprints differ). Returns a warning where it cannot tell
    (a file without a fingerprint naming another model), else None."""
    if codes.sample_rate != model.sample_rate or codes.frame_size != model.frame_size:
        raise CodesFileError(
            f"{path}: codes at {codes.sample_rate} Hz / {codes.frame_rate} Hz frames do not fit this model "
            f"({model.sample_rate} Hz, {model.frame_rate} Hz)"
        )
    ours = (getattr(model, "source", None) or {}).get("model_id") or "this model"
    if codes.codebooks_fingerprint:
        if codes.codebooks_fingerprint != model.codebooks_fingerprint():
            made_by = f" ({codes.model})" if codes.model else ""
            raise CodesFileError(
                f"{path}: these codes were made with other codebooks{made_by} than {ours}'s: decode them with the "
                "model that encoded them (--model)"
            )
        return None
    if codes.model and codes.model != ours:
        return f"{path} was encoded with {codes.model}; decoding with {ours} (the file cannot tell if they match)"
    return None


def _meta_number(path: Path, meta: dict, key: str, kind: type, default):
    """A numeric metadata value, parsed strictly: a malformed or non-positive one is a CodesFileError."""
    if meta.get(key) in (None, ""):
        return default
    try:
        value = kind(meta[key])
    except ValueError:
        raise CodesFileError(f"{path}: metadata {key}={meta[key]!r} is not a number") from None
    if not np.isfinite(value) or value <= 0:
        raise CodesFileError(f"{path}: metadata {key}={meta[key]!r} must be positive")
    return value
