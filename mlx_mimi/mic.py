"""Live audio around the streaming encoder: microphone (sounddevice) or a file at real-time pace.

The PortAudio callback only copies samples into a queue (it never waits on the model); the main loop
resamples them incrementally to 24 kHz, runs the compiled encoder step, optionally decodes and plays the
reconstruction, prints a status line and flushes the codes file every few seconds.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import read_audio, write_wav
from .codec import Codec
from .codes import codes_file, save_codes
from .errors import DeviceError

FLUSH_SECONDS = 5.0


def input_device(device: str | int | None):
    import sounddevice as sd

    try:
        info = sd.query_devices(device, kind="input")
    except Exception as exc:
        raise DeviceError(f"no audio input device{f' {device!r}' if device is not None else ''}: {exc}") from exc
    if info["max_input_channels"] < 1:
        raise DeviceError(f"device {info['name']!r} has no input channels")
    return info


def mic_chunks(device, stop_after: float | None, status: LiveStatus) -> Iterator[np.ndarray]:
    """Open the input device now and return an iterator of 24 kHz mono float32 chunks from it, until
    ``stop_after`` seconds (or until the caller stops iterating; ``close()`` closes the device)."""
    import sounddevice as sd

    info = input_device(device)
    rate = int(info["default_samplerate"])
    q: queue.Queue = queue.Queue()

    def callback(indata, frames, time_info, flags):  # PortAudio thread: copy and return, never block
        if flags.input_overflow:
            status.overflows += 1
        q.put_nowait(indata[:, 0].copy())

    try:
        stream = sd.InputStream(device=device, channels=1, samplerate=rate, dtype="float32", callback=callback)
        stream.start()
    except Exception as exc:
        raise DeviceError(f"cannot open input device {info['name']!r}: {exc}") from exc
    return _read_mic(stream, q, rate, info["name"], stop_after, status)


def _read_mic(stream, q: queue.Queue, rate: int, name: str, stop_after: float | None, status: LiveStatus):
    import soxr

    resampler = soxr.ResampleStream(rate, 24_000, 1, dtype="float32", quality="HQ")
    try:
        got = 0
        while stop_after is None or got < stop_after * rate:
            try:
                block = q.get(timeout=5.0)
            except queue.Empty:
                raise DeviceError(f"input device {name!r} stopped delivering audio") from None
            if stop_after is not None:
                block = block[: max(0, int(stop_after * rate) - got)]
            got += len(block)
            status.backlog = q.qsize() * len(block) / rate
            yield resampler.resample_chunk(block)
        yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
    finally:
        stream.stop()
        stream.close()


def file_chunks(path: str | Path, realtime: bool, chunk: int = 960) -> Iterator[np.ndarray]:
    """The file as 24 kHz chunks (read and resampled exactly as ``mimi encode`` does), paced in real time."""
    pcm = read_audio(path)
    start = time.perf_counter()
    for i in range(0, len(pcm), chunk):
        if realtime:
            delay = start + i / 24_000 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        yield pcm[i : i + chunk]


@dataclass
class LiveStatus:
    started: float = field(default_factory=time.perf_counter)
    frames: int = 0
    latencies: list = field(default_factory=list)
    level_db: float = -120.0
    backlog: float = 0.0
    overflows: int = 0

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        lat = np.array(self.latencies[-500:] or [0.0]) * 1000
        audio_s = self.frames * 0.08
        rtf = audio_s / max(elapsed, 1e-9)
        behind = "  FALLING BEHIND" if self.backlog > 0.5 else ""
        return (
            f"{elapsed:7.1f}s  frames {self.frames:6d}  step {lat.mean():5.1f}/{lat.max():5.1f} ms (mean/max)  "
            f"RTF {rtf:5.2f}x  level {self.level_db:6.1f} dBFS{behind}"
        )


@dataclass
class LiveSource:
    """Where live audio comes from: the microphone (``input_file`` None) or a file paced in real time."""

    input_file: str | None = None
    device: str | int | None = None
    duration: float | None = None
    realtime: bool = True

    @property
    def name(self) -> str:
        return Path(self.input_file).name if self.input_file else "microphone"

    def describe(self) -> str:
        if self.input_file:
            return f"{self.input_file}" + (" at real-time pace" if self.realtime else "")
        return f"input device {input_device(self.device)['name']!r}"

    def chunks(self, status: LiveStatus) -> Iterator[np.ndarray]:
        if self.input_file is None:
            return mic_chunks(self.device, self.duration, status)
        chunks = file_chunks(self.input_file, realtime=self.realtime)
        return chunks if self.duration is None else _limit(chunks, self.duration)


def _limit(chunks: Iterator[np.ndarray], seconds: float) -> Iterator[np.ndarray]:
    left = int(seconds * 24_000)
    for chunk in chunks:
        if left <= 0:
            return
        yield chunk[:left]
        left -= len(chunk)


@dataclass
class LiveResult:
    codes: np.ndarray  # (K, F)
    samples: int  # 24 kHz samples encoded (the partial last frame included)
    warmup_seconds: float
    first_frame_ms: float | None  # from the first chunk's arrival to its first codes

    @property
    def frames(self) -> int:
        return int(self.codes.shape[-1])

    @property
    def seconds(self) -> float:
        return self.samples / 24_000


class _StopOnInterrupt:
    """Ctrl-C sets a flag that the loop reads between chunks (a step is never cut in half); a second Ctrl-C
    raises KeyboardInterrupt as usual. Only the main thread can own signal handlers; elsewhere a no-op."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run_live(
    model: Codec,
    source: LiveSource,
    output: Path | None,
    num_codebooks: int,
    playback: bool = False,
    quiet: bool = False,
    save_audio: Path | None = None,
) -> LiveResult:
    """Encode live audio as it comes until the source ends or Ctrl-C; write the codes file (and audio)."""
    enc = model.stream_encoder(num_codebooks=num_codebooks)
    dec = model.stream_decoder() if playback else None
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    say("preparing the model (the first run on a machine compiles the stream step)...")
    t0 = time.perf_counter()
    enc.warmup()  # before the microphone opens: the first live frame is then on time
    if dec is not None:
        dec.warmup(num_codebooks)
    warmup = time.perf_counter() - t0
    player = _player() if playback else None
    status = LiveStatus()
    frames: list[np.ndarray] = []
    heard: list[np.ndarray] = []
    first_frame_ms = None
    last_flush = last_status = time.perf_counter()
    tty = sys.stderr.isatty()

    fingerprint = model.codebooks_fingerprint()  # once: the file is rewritten every few seconds

    def save(codes: np.ndarray, samples: int) -> None:
        if output is not None and codes.shape[-1]:
            save_codes(output, codes_file(model, codes, samples, source.name, fingerprint))

    try:
        with _StopOnInterrupt() as stop:
            chunks = source.chunks(status)
            say(f"listening to {source.describe()} (ready in {warmup:.1f} s; Ctrl-C to stop)")
            status.started = time.perf_counter()
            for chunk in chunks:
                arrived = time.perf_counter()
                if save_audio is not None:
                    heard.append(chunk)
                if len(chunk):
                    status.level_db = float(20 * np.log10(max(np.sqrt(np.mean(chunk**2)), 1e-6)))
                codes = np.array(enc.step(chunk))
                n = codes.shape[-1]
                if n:
                    done = time.perf_counter()
                    status.latencies.append((done - arrived) / n)
                    if first_frame_ms is None:
                        first_frame_ms = (done - arrived) * 1000
                    status.frames += n
                    frames.append(codes[0])
                    if player is not None:
                        player.write(np.array(dec.step(codes)).reshape(-1, 1))
                now = time.perf_counter()
                if not quiet and now - last_status > (0.25 if tty else 2.0):  # a live line, not a flood
                    sys.stderr.write(("\r" if tty else "") + status.line() + ("" if tty else "\n"))
                    sys.stderr.flush()
                    last_status = now
                if now - last_flush > FLUSH_SECONDS and frames:
                    save(np.concatenate(frames, axis=-1), enc.frames * model.frame_size)  # whole frames only
                    last_flush = time.perf_counter()
                if stop.requested:
                    break
            if hasattr(chunks, "close"):
                chunks.close()  # closes the input device now
    finally:
        if player is not None:
            player.stop()
            player.close()
    samples = enc.samples  # what the encoder took in, so num_samples always matches the frames written
    tail = np.array(enc.flush())  # the partial last frame, with the offline rule: codes equal `mimi encode`
    if tail.shape[-1]:
        frames.append(tail[0])
    if not quiet:
        sys.stderr.write(("\r" if tty else "") + status.line() + "\n")
    if samples == 0:
        raise DeviceError(f"no audio came from {source.name}: nothing written")
    codes = np.concatenate(frames, axis=-1)
    save(codes, samples)
    if save_audio is not None:
        write_wav(save_audio, np.concatenate(heard)[:samples])
    return LiveResult(codes, samples, warmup, first_frame_ms)


def _player():
    import sounddevice as sd

    try:
        stream = sd.OutputStream(samplerate=24_000, channels=1, dtype="float32")
        stream.start()
        return stream
    except Exception as exc:
        raise DeviceError(f"cannot open an output device for playback: {exc}") from exc


def list_devices() -> str:
    import sounddevice as sd

    try:
        return str(sd.query_devices())
    except Exception as exc:
        raise DeviceError(f"cannot list audio devices: {exc}") from exc
