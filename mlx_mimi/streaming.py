"""Streaming encoder and decoder: fixed-size state, one compiled call per step, any thread, any row on its own.

Each stream owns its state (conv tails, transposed-conv overlaps, attention caches of exactly the window, and one
position per row). A step over n whole frames is one call of a function compiled for n frames (the frames are
unrolled inside it, so each has the shapes of a single-frame step and the result does not depend on how audio was
chunked); n is capped at ``MAX_FRAMES_PER_CALL`` per call so the set of compiled variants stays small. Memory is
the same after an hour as after a minute. The encoder buffers samples until a whole 1920-sample frame is there,
so callers may push any number of samples (even 0 or 1).

Rows (a batched stream serving several users, as Kyutai's servers do): ``step(..., active=mask)`` advances only
the rows the mask selects (the others keep their state; their outputs are meaningless), ``reset(rows=[i])``
starts row i anew, and ``snapshot(rows=...)`` / ``restore(snapshot, rows=...)`` hand a row's (or the whole
stream's) state to another stream object or process. None of these recompiles or touches the other rows: every
row's output equals a stream of its own (under the README's determinism contract).

Steps do not wait for the device: results are scheduled with ``mx.async_eval`` and returned lazily. NumPy input
is validated on the host at once. MLX-array input is validated inside the graph (non-finite samples, out-of-range
codes) so that no host synchronisation is needed; such an error is raised by ``check()``, ``flush()`` or
``reset()``, whichever comes first. Out-of-range codes are clamped in the graph before the lookup, so they can
never read outside a codebook.

Threads: a stream may be created in one thread and stepped in another (its state is always evaluated or
scheduled, never a pending graph of another thread); one stream's calls are serialized by its own lock. MLX keeps
compiled functions per thread, so the first step in a new thread traces its step again (the kernels themselves are
shared); ``warmup()`` in that thread does it ahead of time.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from . import checks
from .atomic import atomic_write
from .compiled import WeightsCompiled
from .errors import AudioError, CodesError, MimiError
from .schedule import Schedule

MAX_FRAMES_PER_CALL = 8
SNAPSHOT_FORMAT = "mlx-mimi-stream"


def state_nbytes(state: Any) -> int:
    """Bytes held by a state tree (for the constant-memory guarantee)."""
    return sum(v.nbytes for _, v in tree_flatten(state) if isinstance(v, mx.array))


# -- state trees: every array leaf has the batch (row) axis first -----------------------------------------------
def _leaves(tree: Any, prefix: str = "") -> list[tuple[str, mx.array]]:
    """(path, array) of every array leaf, in a fixed order (None leaves are stateless layers)."""
    if isinstance(tree, mx.array):
        return [(prefix, tree)]
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in _leaves(tree[k], f"{prefix}{k}.")]
    if isinstance(tree, (list, tuple)):
        return [leaf for i, v in enumerate(tree) for leaf in _leaves(v, f"{prefix}{i}.")]
    return []


def _replace(tree: Any, fn, prefix: str = "") -> Any:
    """The tree with every array leaf replaced by ``fn(path, leaf)``."""
    if isinstance(tree, mx.array):
        return fn(prefix, tree)
    if isinstance(tree, dict):
        return {k: _replace(v, fn, f"{prefix}{k}.") for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_replace(v, fn, f"{prefix}{i}.") for i, v in enumerate(tree))
    return tree


def _select_rows(new: Any, old: Any, rows: mx.array) -> Any:
    """``new`` where ``rows`` (B,) bool, else ``old``, leaf by leaf (rows on axis 0)."""
    flat_old = dict(_leaves(old))
    return _replace(new, lambda path, a: mx.where(rows.reshape((-1,) + (1,) * (a.ndim - 1)), a, flat_old[path]))


# -- the compiled steps ------------------------------------------------------------------------------------
def _encode_frames(codec, x, state, schedule: Schedule, frames: int, frame_len: int, num_codebooks: int | None):
    """``frames`` frames of audio through the encoder, one frame per unrolled step (single-frame shapes); codes,
    or the latent where ``num_codebooks`` is None."""
    outs = []
    for i in range(frames):
        pcm = x[:, i * frame_len : (i + 1) * frame_len]
        if num_codebooks is None:
            y, state = codec.latent_chunk(pcm, state, schedule)
            y = y.astype(mx.float32)
        else:
            y, state = codec.encode_chunk(pcm, state, num_codebooks, schedule)
        outs.append(y)
    return (mx.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]), state


def _decode_frames(codec, x, state, schedule: Schedule, frames: int, frame_len: int, num_codebooks: int | None):
    """``frames`` frames of codes (or latents, where ``num_codebooks`` is None) through the decoder."""
    outs = []
    for i in range(frames):
        if num_codebooks is None:
            y, state = codec.decode_latent_chunk(x[:, i : i + 1], state, schedule)
        else:
            y, state = codec.decode_chunk(x[:, i : i + 1], state, schedule)
        outs.append(y.astype(mx.float32))
    return (mx.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]), state


_STEP_FUNCTIONS = {"encode": _encode_frames, "decode": _decode_frames}
_steps_lock = threading.Lock()


def _shared_step(codec, key: tuple) -> WeightsCompiled:
    """The codec's compiled step for ``key`` = (direction, codebooks or None for latents, batch size, frames,
    frame length, schedule, masked): shared by every stream of that shape; it holds no stream, and reads the codec's
    weights at every call. ``masked`` steps take a (B,) row mask and keep the other rows' state."""
    with _steps_lock:
        cache = codec.__dict__.setdefault("_compiled_steps", {})
        if key not in cache:
            direction, codebooks, _, frames, frame_len, schedule, masked = key
            fn = _STEP_FUNCTIONS[direction]

            def step(c, x, state, *active):
                y, new = fn(c, x, state, schedule, frames, frame_len, codebooks)
                return y, (_select_rows(new, state, active[0]) if masked else new)

            cache[key] = WeightsCompiled(codec, step)
        return cache[key]


@dataclass
class StreamSnapshot:
    """A stream's state (or some of its rows'), to continue in another stream object or process: ``save(path)``
    writes one .safetensors file, ``StreamSnapshot.load(path)`` reads it back."""

    arrays: dict[str, np.ndarray]  # state leaves by path, rows on axis 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.meta["rows"])

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        arrays = {k: np.ascontiguousarray(v) for k, v in self.arrays.items()}
        meta = {"format": SNAPSHOT_FORMAT, "meta": json.dumps(self.meta, sort_keys=True)}
        return atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata=meta))

    @classmethod
    def load(cls, path: str | Path) -> StreamSnapshot:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                if meta.get("format") != SNAPSHOT_FORMAT:
                    raise MimiError(f"{path}: not an mlx-mimi stream snapshot")
                arrays = {k: f.get_tensor(k) for k in f.keys()}
        except MimiError:
            raise
        except Exception as exc:
            raise MimiError(f"{path}: not a readable stream snapshot ({str(exc).splitlines()[0]})") from exc
        return cls(arrays, json.loads(meta["meta"]))


class _Stream:
    _direction = ""
    _invalid_error: type[MimiError] = MimiError
    _invalid_message = ""

    def __init__(self, model, batch_size: int, num_codebooks: int | None):
        self.model = model
        self.batch_size = checks.positive_int(batch_size, "batch_size")
        # fixed for the stream's life: the schedule of the device at its creation, without evaluation points
        self.schedule = model.current_schedule().streaming()
        self._codebooks = num_codebooks  # None: a latent stream
        self.frames = 0
        self._lock = threading.RLock()
        self._used: set[tuple] = set()
        self._valid: mx.array | None = None  # in-graph validity of MLX-array input since the last check

    # subclasses: _initial_state(), and the extra fields a snapshot carries (_extra_meta / _restore_extra)
    def _run(self, x: mx.array, frames: int, frame_len: int, active: mx.array | None = None) -> mx.array:
        """``frames`` frames of ``x`` (frame_len steps each) through the compiled step(s); one call per group."""
        outs, done = [], 0
        while done < frames:
            n = min(MAX_FRAMES_PER_CALL, frames - done)
            masked = active is not None
            key = (self._direction, self._codebooks, self.batch_size, n, frame_len, self.schedule, masked)
            self._used.add(key)
            step = _shared_step(self.model, key)
            args = (x[:, done * frame_len : (done + n) * frame_len], self.state) + ((active,) if masked else ())
            y, self.state = step(*args)
            outs.append(y)
            done += n
        self.frames += frames
        return mx.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]

    def _active(self, active: Any) -> mx.array | None:
        """The row mask of a step: None (every row) or (B,) booleans."""
        if active is None:
            return None
        mask = np.asarray(active.astype(mx.bool_) if isinstance(active, mx.array) else active)
        if mask.shape != (self.batch_size,) or mask.dtype != np.bool_:
            raise MimiError(f"active must be {self.batch_size} booleans (one per row), got {mask.dtype} {mask.shape}")
        return None if mask.all() else mx.array(mask)

    def _rows(self, rows: Any) -> list[int]:
        single = isinstance(rows, (int, np.integer)) and not isinstance(rows, (bool, np.bool_))
        try:
            rows = [rows] if single else list(rows)
        except TypeError:
            raise MimiError(f"rows must be a row index or a list of them, got {rows!r}") from None
        if not rows or any(isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, np.integer)) for r in rows):
            raise MimiError(f"rows must be a row index or a list of them, got {rows!r}")
        bad = [r for r in rows if not 0 <= r < self.batch_size]
        if bad or len(set(rows)) != len(rows):
            raise MimiError(f"rows must be distinct indices in [0, {self.batch_size}), got {rows!r}")
        return [int(r) for r in rows]

    def _reset_rows(self, rows: list[int]) -> None:
        """Rows ``rows`` back to a fresh stream's state, the others untouched."""
        mask = np.zeros(self.batch_size, np.bool_)
        mask[rows] = True
        self.state = _select_rows(self._initial_state(), self.state, mx.array(mask))
        mx.eval(self.state)

    def _note_validity(self, ok: mx.array) -> None:
        self._valid = ok if self._valid is None else mx.logical_and(self._valid, ok)

    def _schedule(self, *arrays) -> None:
        extra = [] if self._valid is None else [self._valid]
        mx.async_eval(*arrays, self.state, *extra)

    def check(self) -> None:
        """Raise an error if MLX-array input pushed since the last check was invalid (one host sync)."""
        with self._lock:
            valid, self._valid = self._valid, None
            if valid is not None and not bool(valid.item()):
                raise self._invalid_error(self._invalid_message)

    # -- snapshots --------------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        return {
            "direction": self._direction,
            "num_codebooks": self._codebooks,
            "codebooks_fingerprint": self.model.codebooks_fingerprint(),
            "dtype": str(self.model.dtype),
        }

    def snapshot(self, rows: Any = None) -> StreamSnapshot:
        """The state of the whole stream (``rows`` None) or of some rows, to ``restore`` elsewhere."""
        with self._lock:
            self.check()
            picked = None if rows is None else self._rows(rows)
            mx.eval(self.state)
            arrays = {}
            for path, leaf in _leaves(self.state):
                value = np.array(leaf.astype(mx.float32) if leaf.dtype == mx.bfloat16 else leaf)
                arrays[path] = value if picked is None else value[picked]
            meta = {
                **self._identity(),
                "rows": self.batch_size if picked is None else len(picked),
                "whole": picked is None,
                "frames": self.frames,
                **self._extra_meta(picked),
            }
            return StreamSnapshot(arrays, meta)

    def restore(self, snapshot: StreamSnapshot, rows: Any = None) -> None:
        """Continue from ``snapshot``: the whole stream (``rows`` None: a snapshot of the whole stream, same batch
        size) or the given rows (a snapshot of as many rows). The next outputs are those the snapshotted stream
        would have given, bit for bit."""
        with self._lock:
            if not isinstance(snapshot, StreamSnapshot):
                raise MimiError(f"restore takes a StreamSnapshot, got {type(snapshot).__name__}")
            ours, theirs = self._identity(), {k: snapshot.meta.get(k) for k in self._identity()}
            for key in ours:
                if ours[key] != theirs[key]:
                    raise MimiError(
                        f"the snapshot is of another stream: {key} {theirs[key]!r}, this stream {ours[key]!r}"
                    )
            picked = list(range(self.batch_size)) if rows is None else self._rows(rows)
            if len(picked) != snapshot.rows:
                raise MimiError(f"the snapshot holds {snapshot.rows} row(s); {len(picked)} asked for")
            if rows is None and not snapshot.meta.get("whole"):
                raise MimiError("this snapshot holds some rows of a stream: restore it with rows=[...]")
            leaves = dict(_leaves(self.state))
            if set(leaves) != set(snapshot.arrays):
                raise MimiError("the snapshot's state does not fit this stream (another codec or configuration)")
            for path, leaf in leaves.items():
                value = snapshot.arrays[path]
                if value.shape[1:] != tuple(leaf.shape[1:]) or value.shape[0] != len(picked):
                    raise MimiError(f"the snapshot's {path} is {value.shape}, this stream's is {tuple(leaf.shape)}")
            self._check_extra(snapshot.meta, rows is None)  # everything is checked before anything changes

            def put(path: str, leaf: mx.array) -> mx.array:
                full = np.array(leaf.astype(mx.float32) if leaf.dtype == mx.bfloat16 else leaf)
                full[picked] = snapshot.arrays[path]
                return mx.array(full).astype(leaf.dtype)

            state = _replace(self.state, put)
            self._restore_extra(snapshot.meta, rows is None)
            self.state = state
            if rows is None:
                self.frames = int(snapshot.meta["frames"])
            mx.eval(self.state)

    def _extra_meta(self, rows: list[int] | None) -> dict:
        return {}

    def _check_extra(self, meta: dict, whole: bool) -> None:
        """Raise where this stream cannot take the snapshot's other fields (nothing is changed yet)."""

    def _restore_extra(self, meta: dict, whole: bool) -> None:
        pass

    @property
    def traces(self) -> int:
        """Times the compiled steps this stream used were traced (shared by equal streams of the model)."""
        cache = self.model.__dict__.get("_compiled_steps", {})
        return sum(cache[key].traces for key in self._used if key in cache)

    @property
    def state_bytes(self) -> int:
        return state_nbytes(self.state)


class StreamEncoder(_Stream):
    """Push audio in any chunk size; get codes (B, K, n) (or latents (B, n, dim): ``latent=True``) for each whole
    frame completed. ``sample_rate``: the pushed audio's rate, resampled to 24 kHz as it comes (soxr)."""

    _direction = "encode"
    _invalid_message = "audio pushed into the stream contained NaN or infinite samples"
    _invalid_error = AudioError

    def __init__(
        self,
        model,
        batch_size: int = 1,
        num_codebooks: int | None = None,
        latent: bool = False,
        sample_rate: int | None = None,
    ):
        model._need("encoder")
        self.num_codebooks = model.check_num_codebooks(num_codebooks)
        self.latent = bool(latent)
        super().__init__(model, batch_size, None if self.latent else self.num_codebooks)
        self.sample_rate = checks.sample_rate(sample_rate, model.sample_rate)
        self._resampler = None
        self.reset()

    def _initial_state(self):
        return self.model.encoder_state(self.batch_size)

    def _new_resampler(self):
        if self.sample_rate == self.model.sample_rate:
            return None
        import soxr

        return soxr.ResampleStream(self.sample_rate, self.model.sample_rate, self.batch_size, "float32", "HQ")

    def reset(self, rows: Any = None) -> None:
        """Back to a fresh stream (compiled steps are kept); ``rows``: only those rows (a user leaves, another
        joins), which needs the pushes so far to have been whole frames (nothing pending). Raises (after the reset)
        if invalid MLX input was pending."""
        with self._lock:
            picked = None if rows is None else self._rows(rows)
            self._valid, pending_check = None, self._valid
            if picked is not None:
                if self.pending_samples or self._resampler is not None:
                    raise MimiError(
                        "resetting some rows needs a stream at a frame boundary without resampling: push whole frames "
                        f"of {self.model.frame_size} samples at {self.model.sample_rate} Hz "
                        f"({self.pending_samples} pending)"
                    )
                self._reset_rows(picked)
            else:
                self.state = self._initial_state()
                self._pending = mx.zeros((self.batch_size, 0), dtype=mx.float32)
                self._resampler = self._new_resampler()
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
            self.state = self._initial_state()
            frame = mx.zeros((self.batch_size, self.model.frame_size, 1))
            mx.eval(self._run(frame, 1, self.model.frame_size))
            self.state, self.frames, self._used = saved[0], saved[1], saved[2] | self._used

    @property
    def pending_samples(self) -> int:
        """Samples (at 24 kHz) buffered towards the next frame (< 1920)."""
        return self._pending.shape[1]

    @property
    def samples(self) -> int:
        """Samples pushed so far, at 24 kHz (those coded, flushed partial frame included, plus those buffered)."""
        return self._samples

    def _as_batch(self, pcm: Any) -> mx.array:
        """(n,), (B, n) or (B, 1, n) float -> (B, n) float32 MLX array at 24 kHz; NumPy is validated here."""
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
        if self._resampler is not None:  # soxr works on the host: MLX input is read back
            checks.sample_dtype(arr.dtype)
            arr = np.array(arr.astype(mx.float32)) if is_mx else arr
            checks.samples(arr)
            out = self._resampler.resample_chunk(arr.reshape(shape).T.astype(np.float32, copy=False))
            return mx.array(np.ascontiguousarray(out.T))
        if not is_mx:
            checks.samples(arr)
            return mx.array(np.ascontiguousarray(arr.reshape(shape), dtype=np.float32))  # any strides (pcm[::-1])
        checks.sample_dtype(arr.dtype)
        arr = arr.reshape(shape).astype(mx.float32)
        self._note_validity(mx.all(mx.isfinite(arr)))
        return arr

    def _empty(self) -> mx.array:
        if self.latent:
            return mx.zeros((self.batch_size, 0, self.model.latent_dim), dtype=mx.float32)
        return mx.zeros((self.batch_size, self.num_codebooks, 0), dtype=mx.int32)

    def _out(self, y: mx.array) -> mx.array:
        return y if self.latent else y.transpose(0, 2, 1).astype(mx.int32)

    def step(self, pcm: Any, active: Any = None) -> mx.array:
        """pcm: (n,), (B, n) or (B, 1, n) float, n >= 0 -> codes (B, K, frames) int32, or latents (B, frames, dim)
        float32 (lazy). ``active`` (B,) bool: only those rows advance (the others' outputs are meaningless)."""
        with self._lock:
            if self.flushed:
                raise MimiError("this stream was flushed (ended): call reset() to start a new one")
            mask = self._active(active)
            chunk = self._as_batch(pcm)
            if mask is not None and (
                self._resampler is not None or self.pending_samples or chunk.shape[1] % self.model.frame_size
            ):
                raise MimiError(
                    "a step with an active mask takes whole frames at the model's rate, with nothing pending: an "
                    "idle row's samples must not wait in the buffer for its next frame"
                )
            self._samples += chunk.shape[1]
            pending = mx.concatenate([self._pending, chunk], axis=1) if self.pending_samples else chunk
            size = self.model.frame_size
            whole = pending.shape[1] // size
            self._pending = pending[:, whole * size :]
            if whole == 0:
                mx.async_eval(self._pending)
                return self._empty()
            out = self._out(self._run(pending[:, : whole * size, None], whole, size, mask))
            self._schedule(out, self._pending)
            return out

    def flush(self) -> mx.array:
        """End the stream: codes (B, K, 0 or 1) (or latents) for the buffered partial frame, padded as offline
        ``encode`` pads a partial last frame (a resampling stream first drains its resampler). Further ``step()``
        calls raise until ``reset()``. Evaluated."""
        with self._lock:
            if self.flushed:
                raise MimiError("this stream was already flushed: call reset() to start a new one")
            self.check()
            drained = None
            if self._resampler is not None:  # the resampler's delayed samples first: they may complete frames
                tail = self._resampler.resample_chunk(np.zeros((0, self.batch_size), np.float32), last=True)
                self._resampler = None
                drained = self.step(np.ascontiguousarray(tail.T))
            last = self._flush_partial()
            if drained is None:
                return last
            out = mx.concatenate([drained, last], axis=1 if self.latent else -1)
            mx.eval(out)
            return out

    def _flush_partial(self) -> mx.array:
        self.flushed = True
        if self.pending_samples == 0:
            return self._empty()
        pcm = self._pending[:, :, None]
        if self.latent:
            y, self.state = self.model.latent_chunk(pcm, self.state, self.schedule, final=True)
            y = y.astype(mx.float32)
        else:
            y, self.state = self.model.encode_chunk(pcm, self.state, self.num_codebooks, self.schedule, final=True)
        self._pending = self._pending[:, :0]
        self.frames += 1
        out = self._out(y)
        mx.eval(out, self.state, self._pending)
        return out

    def _identity(self) -> dict[str, Any]:
        return {**super()._identity(), "latent": self.latent}

    def _extra_meta(self, rows: list[int] | None) -> dict:
        if self._resampler is not None:
            raise MimiError("a resampling stream cannot be snapshotted (soxr keeps its filter state to itself)")
        if self.pending_samples and rows is not None:
            raise MimiError(f"some rows of a stream with {self.pending_samples} samples pending cannot be snapshotted")
        pending = np.array(self._pending).tolist() if rows is None else []
        return {"samples": self._samples, "pending": pending, "flushed": self.flushed}

    def _check_extra(self, meta: dict, whole: bool) -> None:
        if self._resampler is not None:
            raise MimiError("a resampling stream cannot restore a snapshot")
        if whole:
            return
        if self.pending_samples:
            raise MimiError(
                f"restoring some rows needs this stream at a frame boundary ({self.pending_samples} pending)"
            )
        if np.asarray(meta.get("pending", [])).size:
            raise MimiError("the snapshot has samples pending mid-frame: restore it whole (rows=None)")

    def _restore_extra(self, meta: dict, whole: bool) -> None:
        if whole:
            self._pending = mx.array(np.array(meta["pending"], np.float32).reshape(self.batch_size, -1))
            self._samples, self.flushed = int(meta["samples"]), bool(meta["flushed"])


class StreamDecoder(_Stream):
    """Push codes (B, K, n) (or latents (B, n, dim): ``latent=True``) frame by frame; get audio (B, 1, 1920 n)
    float32."""

    _direction = "decode"
    _invalid_message = "codes pushed into the stream were out of range"
    _invalid_error = CodesError

    def __init__(self, model, batch_size: int = 1, latent: bool = False):
        model._need("decoder")
        self.latent = bool(latent)
        if self.latent:
            self._invalid_message = "latents pushed into the stream held NaN or infinite values"
            self._invalid_error = MimiError
        super().__init__(model, batch_size, None)
        self.reset()

    def _initial_state(self):
        return self.model.decoder_state(self.batch_size)

    def reset(self, rows: Any = None) -> None:
        """Back to a fresh stream; ``rows``: only those rows. Raises (after the reset) if invalid MLX input was
        pending."""
        with self._lock:
            picked = None if rows is None else self._rows(rows)
            self._valid, pending_check = None, self._valid
            if picked is not None:
                self._reset_rows(picked)
            else:
                self.state = self._initial_state()
                self.frames = 0
                mx.eval(self.state)
            if pending_check is not None and not bool(pending_check.item()):
                raise self._invalid_error(self._invalid_message)

    def warmup(self, num_codebooks: int = 8) -> None:
        """Trace and compile the one-frame step for ``num_codebooks`` (or latents) in this thread (state untouched)."""
        with self._lock:
            saved = (self.state, self.frames, set(self._used))
            self.state = self._initial_state()
            if self.latent:
                x = mx.zeros((self.batch_size, 1, self.model.latent_dim))
            else:
                self._codebooks = self.model.check_num_codebooks(num_codebooks)
                x = mx.zeros((self.batch_size, 1, self._codebooks), dtype=mx.uint32)
            mx.eval(self._run(x, 1, 1))
            self.state, self.frames, self._used = saved[0], saved[1], saved[2] | self._used

    def _latents(self, latent: Any) -> mx.array:
        """(B, n, dim) floats; NumPy checked here, MLX arrays in the graph (no host sync: an error at check())."""
        arr = latent if isinstance(latent, mx.array) else np.asarray(latent)
        dim = self.model.latent_dim
        if arr.ndim != 3 or arr.shape[0] != self.batch_size or arr.shape[2] != dim:
            raise MimiError(f"latents must be (B={self.batch_size}, n, {dim}), got {tuple(arr.shape)}")
        if not isinstance(arr, mx.array):
            return checks.latent(arr, dim) if arr.shape[1] else mx.array(arr.astype(np.float32))
        if not mx.issubdtype(arr.dtype, mx.floating):
            raise MimiError(f"latents must be floating point, got dtype {arr.dtype}")
        arr = arr.astype(mx.float32)
        self._note_validity(mx.all(mx.isfinite(arr)))
        return arr

    def step(self, codes: Any, active: Any = None) -> mx.array:
        """codes: (B, K, n) int (or latents (B, n, dim)), n >= 0 -> audio (B, 1, 1920 n) float32 (lazy).
        ``active`` (B,) bool: only those rows advance."""
        with self._lock:
            mask = self._active(active)
            if self.latent:
                arr = self._latents(codes)
            elif isinstance(codes, mx.array):
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
            if not self.latent:
                self._codebooks = arr.shape[2]
            pcm = self._run(arr, arr.shape[1], 1, mask).reshape(self.batch_size, 1, -1)
            self._schedule(pcm)
            return pcm

    def _identity(self) -> dict[str, Any]:
        return {**super()._identity(), "latent": self.latent, "num_codebooks": None}
