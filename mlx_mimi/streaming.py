"""Streaming encoder and decoder: fixed-size state, one compiled function per frame, streaming == offline.

Each stream owns its state (conv tails, transposed-conv overlaps, attention caches of exactly the window,
positions) and a compiled step over one frame at fixed shapes: steady-state frames never retrace, and
memory is the same after an hour as after a minute. The encoder buffers samples until a whole 1920-sample
frame is there, so callers may push any number of samples (even 0 or 1).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from .model import Mimi, MimiError, check_samples


def state_nbytes(state: Any) -> int:
    """Bytes held by a state tree (for the constant-memory guarantee)."""
    return sum(v.nbytes for _, v in tree_flatten(state))


class _CompiledStep:
    """One direction's per-frame step, compiled once and shared by every stream of that shape.

    Compiling the whole step takes seconds (on the CPU backend MLX JIT-builds its fused kernels), so a
    new stream, or ``reset()``, must not pay it again. ``traces`` counts how often it was traced.
    """

    def __init__(self, frame_fn):
        self.traces = 0
        self._frame_fn = frame_fn
        self.fn = mx.compile(self._traced)

    def _traced(self, x, state):
        self.traces += 1  # Python runs here only while mx.compile traces
        return self._frame_fn(x, state)


def _shared_step(model: Mimi, key: tuple, frame_fn) -> _CompiledStep:
    cache = model.__dict__.setdefault("_compiled_steps", {})
    if key not in cache:
        cache[key] = _CompiledStep(frame_fn)
    return cache[key]


class _Stream:
    def __init__(self, model: Mimi, batch_size: int, key: tuple | None, frame_fn):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise MimiError(f"batch_size must be a positive int, got {batch_size!r}")
        self.model = model
        self.batch_size = batch_size
        self.frames = 0
        self._frame_fn = frame_fn
        self._compiled = self._use((*key, batch_size)) if key is not None else None

    def _use(self, key: tuple) -> _CompiledStep:
        self._compiled = _shared_step(self.model, key, self._frame_fn)
        return self._compiled

    @property
    def traces(self) -> int:
        """Times this stream's step was traced (compiled); 1 in steady state, shared by equal streams."""
        return self._compiled.traces if self._compiled is not None else 0

    @property
    def state_bytes(self) -> int:
        return state_nbytes(self.state)


class StreamEncoder(_Stream):
    """Push 24 kHz audio in any chunk size; get codes (B, K, n) for each whole frame completed."""

    def __init__(self, model: Mimi, batch_size: int = 1, num_codebooks: int | None = None):
        k = model.check_num_codebooks(num_codebooks)
        self.num_codebooks = k
        super().__init__(model, batch_size, ("encode", k), lambda x, s: model.encode_chunk(x, s, k))
        self.reset()

    def reset(self) -> None:
        """Back to a fresh stream (the compiled step is kept)."""
        self.state = self.model.encoder_state(self.batch_size)
        self._pending = np.zeros((self.batch_size, 0), np.float32)
        self.frames = 0

    @property
    def pending_samples(self) -> int:
        """Samples buffered towards the next frame (< 1920)."""
        return self._pending.shape[1]

    def _as_batch(self, pcm: Any) -> np.ndarray:
        arr = np.array(pcm) if isinstance(pcm, mx.array) else np.asarray(pcm)
        if arr.ndim == 1 and self.batch_size == 1:
            arr = arr[None]
        elif arr.ndim == 3 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 2 or arr.shape[0] != self.batch_size:
            raise MimiError(
                f"chunk of shape {arr.shape} does not fit this stream: expected (B, n) or (B, 1, n) with "
                f"B={self.batch_size}" + (" or (n,)" if self.batch_size == 1 else "")
            )
        check_samples(arr)
        return arr.astype(np.float32, copy=False)

    def step(self, pcm: Any) -> mx.array:
        """pcm: (n,), (B, n) or (B, 1, n) float at 24 kHz, n >= 0 -> codes (B, K, frames) int32."""
        pending = np.concatenate([self._pending, self._as_batch(pcm)], axis=1)
        size = self.model.frame_size
        whole = pending.shape[1] // size
        out = []
        for i in range(whole):
            frame = mx.array(pending[:, i * size : (i + 1) * size, None])
            codes, self.state = self._compiled.fn(frame, self.state)
            out.append(codes)
        self._pending = pending[:, whole * size :]
        self.frames += whole
        if not out:
            return mx.zeros((self.batch_size, self.num_codebooks, 0), dtype=mx.int32)
        codes = mx.concatenate(out, axis=1) if len(out) > 1 else out[0]
        codes = codes.transpose(0, 2, 1).astype(mx.int32)
        mx.eval(codes, self.state)
        return codes

    def flush(self) -> mx.array:
        """End the stream: codes (B, K, 0 or 1) for the buffered partial frame, padded as offline ``encode``
        pads a partial last frame, so a flushed stream's codes equal ``encode`` of the same audio.
        Call ``reset()`` before pushing more audio."""
        if self.pending_samples == 0:
            return mx.zeros((self.batch_size, self.num_codebooks, 0), dtype=mx.int32)
        pcm = mx.array(self._pending[:, :, None])
        codes, self.state = self.model.encode_chunk(pcm, self.state, self.num_codebooks, final=True)
        self._pending = self._pending[:, :0]
        self.frames += 1
        codes = codes.transpose(0, 2, 1).astype(mx.int32)
        mx.eval(codes)
        return codes


class StreamDecoder(_Stream):
    """Push codes (B, K, n) frame by frame; get audio (B, 1, 1920 n) float32."""

    def __init__(self, model: Mimi, batch_size: int = 1):
        super().__init__(model, batch_size, None, self._frame(model))  # keyed by codebooks at the first step
        self.reset()

    def reset(self) -> None:
        self.state = self.model.decoder_state(self.batch_size)
        self.frames = 0

    @staticmethod
    def _frame(model: Mimi):
        def frame(codes, state):
            pcm, state = model.decode_chunk(codes, state)
            return pcm.astype(mx.float32), state

        return frame

    def step(self, codes: Any) -> mx.array:
        """codes: (B, K, n) int, n >= 0 -> audio (B, 1, 1920 n) float32."""
        arr = self.model.check_codes(codes, allow_empty=True)  # (B, F, K)
        if arr.shape[0] != self.batch_size:
            raise MimiError(f"codes for batch {arr.shape[0]} pushed into a stream of batch {self.batch_size}")
        out = []
        step = self._use(("decode", arr.shape[2], self.batch_size)).fn  # compiled per number of codebooks
        for i in range(arr.shape[1]):
            pcm, self.state = step(arr[:, i : i + 1], self.state)
            out.append(pcm)
        self.frames += arr.shape[1]
        if not out:
            return mx.zeros((self.batch_size, 1, 0), dtype=mx.float32)
        pcm = mx.concatenate(out, axis=1) if len(out) > 1 else out[0]
        pcm = pcm.reshape(self.batch_size, 1, -1)
        mx.eval(pcm, self.state)
        return pcm
