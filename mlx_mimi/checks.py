"""Input checks of the Python API: audio, clips, codes, codebook counts and sizes -> arrays or one precise error.

Pure functions of the input and the few numbers they are checked against (a codec's codebook count and size), so
the offline codec (codec.py) and the streams (streaming.py) share them without knowing each other.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from .errors import AudioError, CodesError, MimiError

# A 2-D input whose second axis is at most this long, and shorter than the first, is (samples, channels).
MAX_CHANNELS_GUESS = 16


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise MimiError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def sample_rate(value: Any, default: int) -> int:
    """A sample rate in Hz (None: ``default``, the model's)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or not 1_000 <= value <= 768_000:
        raise AudioError(f"sample_rate must be a rate in Hz between 1000 and 768000, got {value!r}")
    if int(value) != value:
        raise AudioError(f"sample_rate must be a whole number of Hz, got {value!r}")
    return int(value)


def num_codebooks(value: Any, low: int, high: int) -> int:
    """A codebook count in [low, high] (None: high)."""
    if value is None:
        return high
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise MimiError(f"num_codebooks must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise MimiError(f"num_codebooks must be in [{low}, {high}], got {value}")
    return int(value)


def sample_dtype(dtype) -> None:
    """Raise AudioError unless ``dtype`` (NumPy or MLX) is floating point."""
    floating = mx.issubdtype(dtype, mx.floating) if isinstance(dtype, mx.Dtype) else np.issubdtype(dtype, np.floating)
    if not floating:
        raise AudioError(
            f"audio must be floating point, got dtype {dtype} (integer PCM: pcm.astype(np.float32) / 32768)"
        )


def samples(arr: np.ndarray | mx.array) -> None:
    """Raise AudioError unless the audio is floating point with only finite samples (shape not checked).

    Any finite value is accepted: samples beyond [-1, 1] are encoded as given, not clipped, as the references
    (transformers, moshi) encode them."""
    sample_dtype(arr.dtype)
    finite = mx.all(mx.isfinite(arr)).item() if isinstance(arr, mx.array) else np.isfinite(arr).all()
    if not finite:
        raise AudioError("audio contains NaN or infinite samples")


def audio_batch(pcm: Any) -> mx.array:
    """(T,), (B, T) or (B, 1, T) float audio -> (B, T, 1); AudioError on wrong rank, dtype, emptiness, NaN."""
    arr = pcm if isinstance(pcm, mx.array) else np.asarray(pcm)
    samples(arr)
    shape = tuple(arr.shape)
    if len(shape) == 1:
        shape = (1, shape[0])
    elif len(shape) == 3:
        if shape[1] != 1:
            raise AudioError(f"audio of shape {tuple(arr.shape)} is not mono: expected (B, 1, T)")
        shape = (shape[0], shape[2])
    elif len(shape) != 2:
        raise AudioError(f"audio must have shape (T,), (B, T) or (B, 1, T), got {tuple(arr.shape)}")
    elif shape[1] <= MAX_CHANNELS_GUESS and shape[0] > shape[1]:
        raise AudioError(
            f"audio of shape {shape} looks like (samples, channels), as soundfile returns it; mlx-mimi takes "
            "(T,) mono samples or (B, T) clips: pass pcm[:, 0] or pcm.mean(axis=1)"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise AudioError(f"audio is empty (shape {tuple(arr.shape)})")
    if isinstance(arr, np.ndarray):
        arr = mx.array(np.ascontiguousarray(arr, dtype=np.float32))  # any strides (a reversed view, say)
    return arr.reshape(shape[0], shape[1], 1)


def clip_list(clips: Any) -> list[np.ndarray]:
    """A sequence of (T,) float clips -> float32 numpy arrays; AudioError naming the first bad clip."""
    if isinstance(clips, (np.ndarray, mx.array)) or not hasattr(clips, "__len__"):
        raise AudioError("clips must be a list of (T,) arrays (for one (B, T) array of equal lengths, use encode)")
    if len(clips) == 0:
        raise AudioError("no clips given")
    out = []
    for i, clip in enumerate(clips):
        arr = np.array(clip.astype(mx.float32)) if isinstance(clip, mx.array) else np.asarray(clip)
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        try:
            if arr.ndim != 1:
                raise AudioError(f"audio must have shape (T,), got {arr.shape}")
            samples(arr)
            if arr.size == 0:
                raise AudioError("audio is empty")
        except MimiError as exc:
            raise type(exc)(f"clip {i}: {exc}") from None
        out.append(arr.astype(np.float32, copy=False))
    return out


def codes_array(
    codes: Any,
    low: int,
    high: int,
    codebook_size: int,
    allow_empty: bool = False,
    validate_values: bool = True,
) -> mx.array:
    """(B, K, F) integer codes with ``low`` <= K <= ``high`` -> (B, F, K) uint32; CodesError on anything else.

    ``validate_values=False`` skips the range check of MLX arrays (a host sync); the caller must then check in
    the graph (the stream decoder does).
    """
    arr = codes if isinstance(codes, mx.array) else np.asarray(codes)
    is_int = mx.issubdtype(arr.dtype, mx.integer) if isinstance(arr, mx.array) else np.issubdtype(arr.dtype, np.integer)
    if not is_int:
        raise CodesError(f"codes must be integers, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise CodesError(f"codes must have shape (B, K, F), got {tuple(arr.shape)}")
    b, k, f = arr.shape
    if not low <= k <= high:
        raise CodesError(f"codes have {k} codebooks; this model decodes {low} to {high}")
    if b == 0 or (f == 0 and not allow_empty):
        raise CodesError(f"codes are empty (shape {tuple(arr.shape)})")
    if isinstance(arr, np.ndarray):
        if f and (arr.min() < 0 or arr.max() >= codebook_size):
            raise CodesError(
                f"codes out of range: values must be in [0, {codebook_size}), got [{arr.min()}, {arr.max()}]"
            )
        arr = mx.array(np.ascontiguousarray(arr, dtype=np.int64))
    elif f and validate_values:
        lowest, highest = mx.min(arr).item(), mx.max(arr).item()
        if lowest < 0 or highest >= codebook_size:
            raise CodesError(f"codes out of range: values must be in [0, {codebook_size}), got [{lowest}, {highest}]")
    return arr.transpose(0, 2, 1).astype(mx.uint32)


def clip_codes(codes: Any, low: int, high: int, codebook_size: int) -> list[np.ndarray]:
    """A sequence of (K, F_i) integer codes with the same K -> numpy arrays; CodesError naming the bad one."""
    if isinstance(codes, (np.ndarray, mx.array)) or not hasattr(codes, "__len__") or len(codes) == 0:
        raise CodesError("codes must be a non-empty list of (K, F) arrays")
    out = []
    for i, c in enumerate(codes):
        arr = np.array(c) if isinstance(c, mx.array) else np.asarray(c)
        try:
            if arr.ndim != 2:
                raise CodesError(f"codes must have shape (K, F), got {arr.shape}")
            codes_array(arr[None], low, high, codebook_size)
            if out and arr.shape[0] != out[0].shape[0]:
                raise CodesError(f"{arr.shape[0]} codebooks where clip 0 has {out[0].shape[0]}")
        except MimiError as exc:
            raise type(exc)(f"clip {i}: {exc}") from None
        out.append(arr)
    return out


def latent(value: Any, dim: int) -> mx.array:
    """A (B, F, dim) finite float latent -> float32 MLX array; MimiError otherwise."""
    arr = value if isinstance(value, mx.array) else np.asarray(value)
    if arr.ndim != 3 or arr.shape[2] != dim or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise MimiError(f"a latent must have shape (B, F, {dim}) with B, F >= 1, got {tuple(arr.shape)}")
    is_float = (
        mx.issubdtype(arr.dtype, mx.floating) if isinstance(arr, mx.array) else np.issubdtype(arr.dtype, np.floating)
    )
    if not is_float:
        raise MimiError(f"a latent must be floating point, got dtype {arr.dtype}")
    finite = mx.all(mx.isfinite(arr)).item() if isinstance(arr, mx.array) else np.isfinite(arr).all()
    if not finite:
        raise MimiError("the latent holds NaN or infinite values")
    return arr.astype(mx.float32) if isinstance(arr, mx.array) else mx.array(arr.astype(np.float32))


def padding_lengths(mask: Any, shape: tuple[int, int]) -> list[int]:
    """A (B, T) padding mask (transformers': 1 for a clip's samples, then 0 for its right padding) -> each clip's
    length; AudioError where it has another shape than the audio's or is not right padding."""
    arr = np.array(mask.astype(mx.int32)) if isinstance(mask, mx.array) else np.asarray(mask)
    if arr.ndim != 2 or (shape[1] != -1 and tuple(arr.shape) != tuple(shape)) or arr.shape[0] != shape[0]:
        raise AudioError(f"padding_mask must be (B, T) = {tuple(shape)}, as the audio, got {tuple(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_) or not np.isin(arr, (0, 1)).all():
        raise AudioError("padding_mask must hold 0 and 1 (or booleans)")
    lengths = arr.astype(np.int64).sum(axis=1)
    prefix = np.arange(arr.shape[1])[None, :] < lengths[:, None]
    if not np.array_equal(prefix, arr.astype(bool)):
        raise AudioError(
            "padding_mask must mark each clip's samples then its padding (right padding), as transformers does"
        )
    if (lengths == 0).any():
        raise AudioError(f"padding_mask leaves clip {int(np.argmin(lengths))} without samples")
    return [int(n) for n in lengths]
