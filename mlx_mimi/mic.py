"""Live audio around the streaming encoder: microphone (sounddevice) or a file at real-time pace.

The PortAudio callback only copies samples into a queue (it never waits on the model); the main loop
resamples them incrementally to 24 kHz, runs the compiled encoder step, optionally decodes and plays the
reconstruction, prints a status line and flushes the codes file every few seconds.
"""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import read_audio, write_wav
from .codes import CodesFile, save_codes
from .model import Mimi

FLUSH_SECONDS = 5.0


class DeviceError(RuntimeError):
    """No usable audio device, or the device failed mid-stream."""


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
    """Yield 24 kHz mono float32 chunks from the input device until ``stop_after`` seconds or Ctrl-C."""
    import sounddevice as sd
    import soxr

    info = input_device(device)
    rate = int(info["default_samplerate"])
    q: queue.Queue = queue.Queue()
    errors: list[str] = []

    def callback(indata, frames, time_info, flags):  # PortAudio thread: copy and return, never block
        if flags.input_overflow:
            status.overflows += 1
        q.put_nowait(indata[:, 0].copy())

    resampler = soxr.ResampleStream(rate, 24_000, 1, dtype="float32", quality="HQ")
    try:
        stream = sd.InputStream(
            device=device,
            channels=1,
            samplerate=rate,
            dtype="float32",
            callback=callback,
            finished_callback=lambda: errors.append("input stream stopped"),
        )
    except Exception as exc:
        raise DeviceError(f"cannot open input device {info['name']!r}: {exc}") from exc
    with stream:
        got = 0
        while stop_after is None or got < stop_after * rate:
            try:
                block = q.get(timeout=5.0)
            except queue.Empty:
                raise DeviceError(f"input device {info['name']!r} stopped delivering audio") from None
            got += len(block)
            status.backlog = q.qsize() * len(block) / rate
            yield resampler.resample_chunk(block)
    yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


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


def run_live(
    model: Mimi,
    chunks: Iterator[np.ndarray],
    status: LiveStatus,
    output: Path | None,
    num_codebooks: int,
    playback: bool = False,
    source: str = "microphone",
    quiet: bool = False,
    save_audio: Path | None = None,
) -> np.ndarray:
    """Encode chunks as they come; returns the (K, F) codes. Ctrl-C ends the stream cleanly."""
    enc = model.stream_encoder(num_codebooks=num_codebooks)
    dec = model.stream_decoder() if playback else None
    player = _player() if playback else None
    frames: list[np.ndarray] = []
    heard: list[np.ndarray] = []
    samples = 0
    last_flush = last_status = time.perf_counter()
    tty = sys.stderr.isatty()

    def flush() -> None:
        if output is not None and frames:
            codes = np.concatenate(frames, axis=-1)
            save_codes(output, CodesFile(codes, num_samples=samples, model=_model_id(model), source=source))

    try:
        for chunk in chunks:
            samples += len(chunk)
            if save_audio is not None:
                heard.append(chunk)
            if len(chunk):
                status.level_db = float(20 * np.log10(max(np.sqrt(np.mean(chunk**2)), 1e-6)))
            t0 = time.perf_counter()
            codes = enc.step(chunk)
            n = codes.shape[-1]
            if n:
                status.latencies.append((time.perf_counter() - t0) / n)
                status.frames += n
                frames.append(np.array(codes[0]))
                if player is not None:
                    player.write(np.array(dec.step(codes)).reshape(-1, 1))
            now = time.perf_counter()
            if not quiet and now - last_status > (0.25 if tty else 2.0):  # a live line, not a flood
                sys.stderr.write(("\r" if tty else "") + status.line() + ("" if tty else "\n"))
                sys.stderr.flush()
                last_status = now
            if time.perf_counter() - last_flush > FLUSH_SECONDS:
                flush()
                last_flush = time.perf_counter()
    except KeyboardInterrupt:
        pass
    finally:
        if player is not None:
            player.stop()
            player.close()
    tail = enc.flush()  # the partial last frame, with the offline rule: codes equal `mimi encode`
    if tail.shape[-1]:
        frames.append(np.array(tail[0]))
    if not quiet:
        sys.stderr.write("\r" + status.line() + "\n")
    flush()
    if save_audio is not None:
        write_wav(save_audio, np.concatenate(heard) if heard else np.zeros(0, np.float32))
    return np.concatenate(frames, axis=-1) if frames else np.zeros((num_codebooks, 0), np.int32)


def _player():
    import sounddevice as sd

    try:
        stream = sd.OutputStream(samplerate=24_000, channels=1, dtype="float32")
        stream.start()
        return stream
    except Exception as exc:
        raise DeviceError(f"cannot open an output device for playback: {exc}") from exc


def _model_id(model: Mimi) -> str:
    return str(getattr(model, "source", {}).get("model_id", ""))


def list_devices() -> str:
    import sounddevice as sd

    try:
        return str(sd.query_devices())
    except Exception as exc:
        raise DeviceError(f"cannot list audio devices: {exc}") from exc
