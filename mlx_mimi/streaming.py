"""Streaming encoder and decoder: fixed-size state, one compiled call per step, any thread.

Each stream owns its state (conv tails, transposed-conv overlaps, attention caches of exactly the window,
positions). A step over n whole frames is one call of a function compiled for n frames (the frames are
unrolled inside it, so each has the shapes of a single-frame step and the result does not depend on how
audio was chunked); n is capped at ``MAX_FRAMES_PER_CALL`` per call so the set of compiled variants stays
small. Memory is the same after an hour as after a minute. The encoder buffers samples until a whole
1920-sample frame is there, so callers may push any number of samples (even 0 or 1).

Steps do not wait for the device: results are scheduled with ``mx.async_eval`` and returned lazily.
NumPy input is validated on the host at once. MLX-array input is validated inside the graph (non-finite
samples, out-of-range codes) so that no host synchronisation is needed; such an error is raised by
``check()``, ``flush()`` or ``reset()``, whichever comes first. Out-of-range codes are clamped in the graph
before the lookup, so they can never read outside a codebook.

Threads: a stream may be created in one thread and stepped in another (its state is always evaluated or
scheduled, never a pending graph of another thread); one stream's calls are serialized by its own lock.
MLX keeps compiled functions per thread, so the first step in a new thread traces its step again (the
kernels themselves are shared); ``warmup()`` in that thread does it ahead of time.
"""

from __future__ import annotations

import threading
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from . import checks
from .compiled import WeightsCompiled
from .errors import AudioError, CodesError, MimiError
from .schedule import Schedule

MAX_FRAMES_PER_CALL = 8


def state_nbytes(state: Any) -> int:
    """Bytes held by a state tree (for the constant-memory guarantee)."""
    return sum(v.nbytes for _, v in tree_flatten(state))


def _encode_frames(codec, x: mx.array, state, schedule: Schedule, frames: int, frame_len: int, num_codebooks: int):
    """``frames`` frames of audio through the encoder, one frame per unrolled step (single-frame shapes)."""
    outs = []
    for i in range(frames):
        y, state = codec.encode_chunk(x[:, i * frame_len : (i + 1) * frame_len], state, num_codebooks, schedule)
        outs.append(y)
    return (mx.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]), state


def _decode_frames(codec, codes: mx.array, state, schedule: Schedule, frames: int, frame_len: int, num_codebooks: int):
    """``frames`` frames of codes through the decoder, one frame per unrolled step."""
    outs = []
    for i in range(frames):
        y, state = codec.decode_chunk(codes[:, i : i + 1], state, schedule)
        outs.append(y.astype(mx.float32))
    return (mx.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]), state


_STEP_FUNCTIONS = {"encode": _encode_frames, "decode": _decode_frames}
_steps_lock = threading.Lock()


def _shared_step(codec, key: tuple) -> WeightsCompiled:
    """The codec's compiled step for ``key`` = (direction, codebooks, batch size, frames, frame length, schedule):
    shared by every stream of that shape; it holds no stream, and reads the codec's weights at every call."""
    with _steps_lock:
        cache = codec.__dict__.setdefault("_compiled_steps", {})
        if key not in cache:
            direction, codebooks, _, frames, frame_len, schedule = key
            fn = _STEP_FUNCTIONS[direction]
            cache[key] = WeightsCompiled(
                codec, lambda c, x, state: fn(c, x, state, schedule, frames, frame_len, codebooks)
            )
        return cache[key]


class _Stream:
    _direction = ""
    _invalid_error: type[MimiError] = MimiError

    def __init__(self, model, batch_size: int):
        self.model = model
        self.batch_size = checks.positive_int(batch_size, "batch_size")
        # fixed for the stream's life: the schedule of the device at its creation, without evaluation points
        self.schedule = model.current_schedule().streaming()
        self.frames = 0
        self._lock = threading.RLock()
        self._used: set[tuple] = set()
        self._valid: mx.array | None = None  # in-graph validity of MLX-array input since the last check

    def _run(self, x: mx.array, frames: int, frame_len: int, codebooks: int) -> mx.array:
        """``frames`` frames of ``x`` (frame_len steps each) through the compiled step(s); one call per group."""
        outs, done = [], 0
        while done < frames:
            n = min(MAX_FRAMES_PER_CALL, frames - done)
            key = (self._direction, codebooks, self.batch_size, n, frame_len, self.schedule)
            self._used.add(key)
            step = _shared_step(self.model, key)
            y, self.state = step(x[:, done * frame_len : (done + n) * frame_len], self.state)
            outs.append(y)
            done += n
        self.frames += frames
        return mx.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]

    def _note_validity(self, ok: mx.array) -> None:
        self._valid = ok if self._valid is None else mx.logical_and(self._valid, ok)

    def _schedule(self, *arrays) -> None:
        extra = [] if self._valid is None else [self._valid]
        mx.async_eval(*arrays, self.state, *extra)

    def check(self) -> None:
        """Raise MimiError if MLX-array input pushed since the last check was invalid (one host sync)."""
        with self._lock:
            valid, self._valid = self._valid, None
            if valid is not None and not bool(valid.item()):
                raise self._invalid_error(self._invalid_message)

    @property
    def traces(self) -> int:
        """Times the compiled steps this stream used were traced (shared by equal streams of the model)."""
        cache = self.model.__dict__.get("_compiled_steps", {})
        return sum(cache[key].traces for key in self._used if key in cache)

    @property
    def state_bytes(self) -> int:
        return state_nbytes(self.state)


class StreamEncoder(_Stream):
    """Push 24 kHz audio in any chunk size; get codes (B, K, n) for each whole frame completed."""

    _direction = "encode"
    _invalid_message = "audio pushed into the stream contained NaN or infinite samples"
    _invalid_error = AudioError

    def __init__(self, model, batch_size: int = 1, num_codebooks: int | None = None):
        model._need("encoder")
        self.num_codebooks = model.check_num_codebooks(num_codebooks)
        super().__init__(model, batch_size)
        self.reset()

    def reset(self) -> None:
        """Back to a fresh stream (compiled steps are kept). Raises first if invalid MLX input is pending."""
        with self._lock:
            self._valid, pending_check = None, self._valid
            self.state = self.model.encoder_state(self.batch_size)
            self._pending = mx.zeros((self.batch_size, 0), dtype=mx.float32)
            self.frames = 0
            self._samples = 0
            self.flushed = False
            mx.eval(self.state, self._pending)  # portable: no lazy graph tied to this thread
            if pending_check is not None and not bool(pending_check.item()):
                raise self._invalid_error(self._invalid_message)

    def warmup(self) -> None:
        """Trace and compile the one-frame step in this thread, on a throwaway state (this stream is untouched)."""
        with self._lock:
            saved = (self.state, self.frames, set(self._used))
            self.state = self.model.encoder_state(self.batch_size)
            frame = mx.zeros((self.batch_size, self.model.frame_size, 1))
            mx.eval(self._run(frame, 1, self.model.frame_size, self.num_codebooks))
            self.state, self.frames, self._used = saved[0], saved[1], saved[2] | self._used

    @property
    def pending_samples(self) -> int:
        """Samples buffered towards the next frame (< 1920)."""
        return self._pending.shape[1]

    @property
    def samples(self) -> int:
        """Samples pushed so far (those coded, flushed partial frame included, plus those buffered)."""
        return self._samples

    def _as_batch(self, pcm: Any) -> mx.array:
        """(n,), (B, n) or (B, 1, n) float -> (B, n) float32 MLX array; NumPy is validated here."""
        is_mx = isinstance(pcm, mx.array)
        arr = pcm if is_mx else np.asarray(pcm)
        shape = tuple(arr.shape)
        if len(shape) == 1 and self.batch_size == 1:
            shape = (1, shape[0])
        elif len(shape) == 3 and shape[1] == 1:
            shape = (shape[0], shape[2])
        if len(shape) != 2 or shape[0] != self.batch_size:
            raise AudioError(
                f"chunk of shape {tuple(arr.shape)} does not fit this stream: expected (B, n) or (B, 1, n) with "
                f"B={self.batch_size}" + (" or (n,)" if self.batch_size == 1 else "")
            )
        if not is_mx:
            checks.samples(arr)
            return mx.array(arr.reshape(shape).astype(np.float32, copy=False))
        checks.sample_dtype(arr.dtype)
        arr = arr.reshape(shape).astype(mx.float32)
        self._note_validity(mx.all(mx.isfinite(arr)))
        return arr

    def step(self, pcm: Any) -> mx.array:
        """pcm: (n,), (B, n) or (B, 1, n) float at 24 kHz, n >= 0 -> codes (B, K, frames) int32 (lazy)."""
        with self._lock:
            if self.flushed:
                raise MimiError("this stream was flushed (ended): call reset() to start a new one")
            chunk = self._as_batch(pcm)
            self._samples += chunk.shape[1]
            pending = mx.concatenate([self._pending, chunk], axis=1) if self.pending_samples else chunk
            size = self.model.frame_size
            whole = pending.shape[1] // size
            self._pending = pending[:, whole * size :]
            if whole == 0:
                mx.async_eval(self._pending)
                return mx.zeros((self.batch_size, self.num_codebooks, 0), dtype=mx.int32)
            codes = self._run(pending[:, : whole * size, None], whole, size, self.num_codebooks)
            codes = codes.transpose(0, 2, 1).astype(mx.int32)
            self._schedule(codes, self._pending)
            return codes

    def flush(self) -> mx.array:
        """End the stream: codes (B, K, 0 or 1) for the buffered partial frame, padded as offline ``encode``
        pads a partial last frame. Further ``step()`` calls raise until ``reset()``. Evaluated."""
        with self._lock:
            if self.flushed:
                raise MimiError("this stream was already flushed: call reset() to start a new one")
            self.flushed = True
            self.check()
            if self.pending_samples == 0:
                return mx.zeros((self.batch_size, self.num_codebooks, 0), dtype=mx.int32)
            pcm = self._pending[:, :, None]
            codes, self.state = self.model.encode_chunk(pcm, self.state, self.num_codebooks, self.schedule, final=True)
            self._pending = self._pending[:, :0]
            self.frames += 1
            codes = codes.transpose(0, 2, 1).astype(mx.int32)
            mx.eval(codes, self.state, self._pending)
            return codes


class StreamDecoder(_Stream):
    """Push codes (B, K, n) frame by frame; get audio (B, 1, 1920 n) float32."""

    _direction = "decode"
    _invalid_message = "codes pushed into the stream were out of range"
    _invalid_error = CodesError

    def __init__(self, model, batch_size: int = 1):
        model._need("decoder")
        super().__init__(model, batch_size)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._valid, pending_check = None, self._valid
            self.state = self.model.decoder_state(self.batch_size)
            self.frames = 0
            mx.eval(self.state)
            if pending_check is not None and not bool(pending_check.item()):
                raise self._invalid_error(self._invalid_message)

    def warmup(self, num_codebooks: int = 8) -> None:
        """Trace and compile the one-frame step for ``num_codebooks`` in this thread (state untouched)."""
        with self._lock:
            k = self.model.check_num_codebooks(num_codebooks)
            saved = (self.state, self.frames, set(self._used))
            self.state = self.model.decoder_state(self.batch_size)
            mx.eval(self._run(mx.zeros((self.batch_size, 1, k), dtype=mx.uint32), 1, 1, k))
            self.state, self.frames, self._used = saved[0], saved[1], saved[2] | self._used

    def step(self, codes: Any) -> mx.array:
        """codes: (B, K, n) int, n >= 0 -> audio (B, 1, 1920 n) float32 (lazy)."""
        with self._lock:
            if isinstance(codes, mx.array):
                arr = self.model.check_codes(codes, allow_empty=True, validate_values=False)
                size = self.model.config.codebook_size
                self._note_validity(mx.all(arr < size))  # uint32: negative values wrapped to >= size
                arr = mx.minimum(arr, size - 1)
            else:
                arr = self.model.check_codes(codes, allow_empty=True)  # (B, F, K)
            if arr.shape[0] != self.batch_size:
                raise CodesError(f"codes for batch {arr.shape[0]} pushed into a stream of batch {self.batch_size}")
            if arr.shape[1] == 0:
                return mx.zeros((self.batch_size, 1, 0), dtype=mx.float32)
            pcm = self._run(arr, arr.shape[1], 1, arr.shape[2]).reshape(self.batch_size, 1, -1)
            self._schedule(pcm)
            return pcm
