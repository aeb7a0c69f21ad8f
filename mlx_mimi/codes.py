"""The codes file: a .safetensors holding (K, F) codes in the smallest integer dtype, plus metadata.

Layout (readable by any safetensors reader): tensor ``codes`` of shape (K, F), dtype uint16 (2048 < 2^16);
string metadata ``format`` = "mimi-codes", ``format_version`` = "1", ``sample_rate``, ``frame_rate``,
``num_codebooks``, ``num_samples`` (original length at sample_rate; decode trims to it), ``model``,
``revision``, ``source``. Raw ``.npy`` arrays of (K, F) codes are accepted too (length given separately).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write

FORMAT = "mimi-codes"
VERSION = "1"


class CodesFileError(ValueError):
    """A codes file that is unreadable, from another format, or holds invalid codes."""


@dataclass
class CodesFile:
    codes: np.ndarray  # (K, F)
    num_samples: int | None = None
    sample_rate: int = 24_000
    frame_rate: float = 12.5
    model: str = ""
    revision: str = ""
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def num_codebooks(self) -> int:
        return int(self.codes.shape[0])

    def metadata(self) -> dict[str, str]:
        meta = {
            "format": FORMAT,
            "format_version": VERSION,
            "sample_rate": str(self.sample_rate),
            "frame_rate": str(self.frame_rate),
            "num_codebooks": str(self.num_codebooks),
            "num_frames": str(int(self.codes.shape[1])),
            "model": self.model,
            "revision": self.revision or "",
            "source": self.source,
        }
        if self.num_samples is not None:
            meta["num_samples"] = str(self.num_samples)
        meta.update(self.extra)
        return meta


def smallest_dtype(codebook_size: int) -> np.dtype:
    return np.dtype(np.uint8 if codebook_size <= 256 else np.uint16 if codebook_size <= 65536 else np.uint32)


def save_codes(path: str | Path, codes: CodesFile, codebook_size: int = 2048) -> Path:
    from safetensors.numpy import save_file

    arr = np.ascontiguousarray(codes.codes.astype(smallest_dtype(codebook_size)))
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
        samples = num_samples if num_samples is not None else meta.get("num_samples")
        out = CodesFile(
            arr,
            num_samples=int(samples) if samples not in (None, "") else None,
            sample_rate=int(meta.get("sample_rate", 24000)),
            frame_rate=float(meta.get("frame_rate", 12.5)),
            model=meta.get("model", ""),
            revision=meta.get("revision", ""),
            source=meta.get("source", ""),
        )
    arr = out.codes
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise CodesFileError(f"{path}: codes must be a (K, F) integer array, got {arr.dtype} {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= codebook_size):
        raise CodesFileError(f"{path}: codes out of range [0, {codebook_size}): found {arr.min()}..{arr.max()}")
    return out
