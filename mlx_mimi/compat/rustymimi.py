"""rustymimi's Python API (0.4.1) on mlx-mimi: ``import mlx_mimi.compat.rustymimi as rustymimi``.

The same classes, methods, argument and return shapes and dtypes as rustymimi: ``Tokenizer`` (``encode``,
``decode``, ``encode_step``, ``decode_step``, ``reset``), ``StreamTokenizer`` (``encode``/``get_encoded``,
``decode``/``get_decoded``, worked in the background as rustymimi does) and ``write_wav``; NumPy in, NumPy out,
codes uint32. The weights file is Kyutai's (``tokenizer-e351c8d8-checkpoint125.safetensors``), or anything
``mlx_mimi.load`` reads. What differs, on purpose: the codes are the PyTorch reference's (rustymimi's drift after 10 s,
where its attention cache drops in-window keys), memory stays flat however long the stream (rustymimi's KV cache
grows), and ``max_seq_len`` is accepted and not needed.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..audio import write_wav as _write_wav
from ..errors import MimiError
from ..load import load_model

_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def _load(path, num_codebooks: int, dtype: str):
    if dtype not in _DTYPES:
        raise MimiError(f"unsupported dtype '{dtype}'")
    model = load_model(Path(path), dtype=_DTYPES[dtype])
    model.check_num_codebooks(num_codebooks)
    return model


def _pcm3(pcm_data) -> np.ndarray:
    arr = np.asarray(pcm_data)
    if arr.ndim != 3 or arr.dtype != np.float32:
        raise MimiError(f"pcm_data must be a (B, C, T) float32 array, got {arr.dtype} {arr.shape}")
    return arr


def _codes3(codes) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim != 3 or arr.dtype != np.uint32:
        raise MimiError(f"codes must be a (B, K, T) uint32 array, got {arr.dtype} {arr.shape}")
    return arr


class Tokenizer:
    """``rustymimi.Tokenizer(path, *, num_codebooks=8, dtype="f32", max_seq_len=None)``."""

    def __init__(self, path, *, num_codebooks: int = 8, dtype: str = "f32", max_seq_len: int | None = None):
        self._model = _load(path, num_codebooks, dtype)
        self._k = num_codebooks
        self._encoder = self._decoder = None

    def encode(self, pcm_data) -> np.ndarray:
        """(B, 1, T) float32 -> codes (B, K, ceil(T / 1920)) uint32."""
        pcm = _pcm3(pcm_data)
        return np.array(self._model.encode(pcm, num_codebooks=self._k)).astype(np.uint32)

    def decode(self, codes) -> np.ndarray:
        """(B, K, F) uint32 -> (B, 1, F * 1920) float32."""
        return np.array(self._model.decode(_codes3(codes).astype(np.int64)))

    def encode_step(self, pcm_data):
        """(1, 1, n) float32 -> codes (1, K, frames) uint32 for the frames completed, or None if none was."""
        pcm = _pcm3(pcm_data)
        if self._encoder is None or self._encoder.batch_size != pcm.shape[0]:
            self._encoder = self._model.stream_encoder(pcm.shape[0], self._k)
        codes = np.array(self._encoder.step(pcm)).astype(np.uint32)
        return codes if codes.shape[-1] else None

    def decode_step(self, codes):
        """(1, K, n) uint32 -> (1, 1, n * 1920) float32, or None for no frame."""
        arr = _codes3(codes)
        if self._decoder is None or self._decoder.batch_size != arr.shape[0]:
            self._decoder = self._model.stream_decoder(arr.shape[0])
        pcm = np.array(self._decoder.step(arr.astype(np.int64)))
        return pcm if pcm.shape[-1] else None

    def reset(self) -> None:
        for stream in (self._encoder, self._decoder):
            if stream is not None:
                stream.reset()


class StreamTokenizer:
    """``rustymimi.StreamTokenizer(path, *, num_codebooks=8, dtype="f32", max_seq_len=None)``: ``encode`` and
    ``decode`` return at once and the work runs on a worker thread per direction; ``get_encoded`` /
    ``get_decoded`` return the next result in order, or None while there is none yet."""

    def __init__(self, path, *, num_codebooks: int = 8, dtype: str = "f32", max_seq_len: int | None = None):
        model = _load(path, num_codebooks, dtype)
        self._encoder = model.stream_encoder(1, num_codebooks)
        self._decoder = model.stream_decoder(1)
        self._k = num_codebooks
        self._workers = {"encode": ThreadPoolExecutor(1), "decode": ThreadPoolExecutor(1)}
        self._results = {"encode": queue.Queue(), "decode": queue.Queue()}

    def _submit(self, direction: str, work) -> None:
        self._results[direction].put(self._workers[direction].submit(work))

    def _next(self, direction: str):
        pending = self._results[direction]
        while True:
            try:
                future = pending.queue[0]
            except IndexError:
                return None
            if not future.done():
                return None
            pending.get()
            result = future.result()  # an exception in the work is raised here
            if result is not None:
                return result

    def encode(self, pcm_data) -> None:
        """(n,) float32 samples at 24 kHz; their codes come out of ``get_encoded`` as frames complete."""
        arr = np.asarray(pcm_data)
        if arr.ndim != 1 or arr.dtype != np.float32:
            raise MimiError(f"pcm_data must be a (T,) float32 array, got {arr.dtype} {arr.shape}")
        arr = arr.copy()

        def work():
            codes = np.array(self._encoder.step(arr)).astype(np.uint32)[0]
            return codes if codes.shape[-1] else None

        self._submit("encode", work)

    def get_encoded(self):
        """The next codes (K, frames) uint32, or None."""
        return self._next("encode")

    def decode(self, codes) -> None:
        """One frame of codes, (1, K) uint32 as rustymimi takes it (or (K, 1), as ``get_encoded`` gives it)."""
        arr = np.asarray(codes)
        if arr.ndim != 2 or arr.dtype != np.uint32 or 1 not in arr.shape:
            raise MimiError(f"codes must be one frame, a (1, K) or (K, 1) uint32 array, got {arr.dtype} {arr.shape}")
        frame = arr.reshape(1, -1, 1).astype(np.int64)

        def work():
            return np.array(self._decoder.step(frame))[0, 0]

        self._submit("decode", work)

    def get_decoded(self):
        """The next audio (1920,) float32, or None."""
        return self._next("decode")


def write_wav(filename, data, sample_rate) -> None:
    """A (T,) float32 array as a mono WAV file (written atomically)."""
    arr = np.asarray(data)
    if arr.ndim != 1:
        raise MimiError(f"data must be a (T,) array, got {arr.shape}")
    _write_wav(filename, arr, int(sample_rate), subtype="PCM_16")


__all__ = ["StreamTokenizer", "Tokenizer", "write_wav"]
