"""Audio I/O: read any libsndfile format (soundfile), downmix to mono, resample to 24 kHz (soxr), write wav."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import AudioError


def resample(pcm: np.ndarray, rate: int, target: int) -> np.ndarray:
    """(T,) float32 at ``rate`` -> (T',) float32 at ``target`` with soxr's high-quality filter."""
    if rate == target:
        return pcm.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(pcm, rate, target, quality="HQ").astype(np.float32)


def read_audio(path: str | Path, sample_rate: int = 24_000) -> np.ndarray:
    """Any file libsndfile reads (wav, flac, ogg, mp3, ...) -> mono float32 at ``sample_rate``."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        pcm, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError for non-audio
        raise AudioError(f"{path}: not a readable audio file ({str(exc).splitlines()[0]})") from exc
    if pcm.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no audio (0 samples)")
    mono = pcm.mean(axis=1) if pcm.shape[1] > 1 else pcm[:, 0]
    if not np.isfinite(mono).all():
        raise AudioError(f"{path}: the audio contains NaN or infinite samples")
    return resample(mono, int(rate), sample_rate)


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int = 24_000, subtype: str = "FLOAT") -> Path:
    """Write mono wav atomically; ``subtype`` "FLOAT" (32-bit float) or "PCM_16"."""
    import soundfile as sf

    pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
    if subtype == "PCM_16":
        pcm = np.clip(pcm, -1.0, 1.0)
    return atomic_write(path, lambda tmp: sf.write(tmp, pcm, sample_rate, subtype=subtype, format="WAV"))
