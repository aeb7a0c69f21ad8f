"""Timing and result helpers shared by the benchmark workers. Nothing heavy at import: no MLX or torch (the
anchors venv runs another mlx, the torch workers must not load mlx at all), and NumPy only inside functions,
so a worker pins its thread counts before any BLAS is loaded."""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SR, FRAME = 24_000, 1920
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")


def median_time(fn, repeats: int, warmups: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmups`` warm-up runs (compilation, caches).

    ``warmups=0`` where the caller has just run ``fn``'s work once itself (e.g. the encode whose codes it keeps).
    """
    for _ in range(warmups):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_latencies(step, n: int) -> tuple[float, float, float]:
    """``step(i)`` for i in range(n) after 3 warm-up calls -> (mean ms, p99 ms, steps per second)."""
    import numpy as np

    for i in range(3):
        step(i)
    lat = []
    for i in range(n):
        start = time.perf_counter()
        step(i)
        lat.append(time.perf_counter() - start)
    ms = np.array(lat) * 1000
    return float(ms.mean()), float(np.percentile(ms, 99)), float(1000 / ms.mean())


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc; elsewhere the peak, which also shows growth)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def worker_parser(impls: tuple[str, ...]):
    """The command line every worker takes (worker.py, anchors_venv.py), so the driver calls them alike."""
    import argparse

    ap = argparse.ArgumentParser(description="Time one Mimi implementation in this process; prints JSON.")
    ap.add_argument("--impl", required=True, choices=impls)
    ap.add_argument("--weights", required=True, help="folder made by bench.py (hf/, original/, converted/)")
    ap.add_argument("--audio", required=True, help="speech clip, float32 .npy at 24 kHz")
    ap.add_argument("--seconds", default="10,60", help="clip lengths, comma list")
    ap.add_argument("--codebooks", default="8,32", help="comma list")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--frames", type=int, default=200, help="streaming steps timed per configuration")
    ap.add_argument("--batches", default="1,8", help="streaming batch sizes, comma list")
    ap.add_argument("--label-suffix", default="", help="appended to the row label (another checkout, say)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--parts", default="offline,stream", help="comma list of: offline, stream, load, memory")
    ap.add_argument("--stream-minutes", type=float, default=60, help="for --parts memory")
    ap.add_argument("--json", default=None, help="also write the result here")
    return ap


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def pin_threads(threads: int) -> None:
    """The driver sets these in the child's environment; a worker run by hand gets the same here, before any
    BLAS or OpenMP library is loaded (they read them once, at load)."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)


def load_audio(path: str, seconds: int) -> np.ndarray:
    """The first ``seconds`` of the shared speech clip (repeated if the saved clip is shorter)."""
    import numpy as np

    audio = np.load(path).astype(np.float32)
    return np.resize(audio, seconds * SR) if len(audio) < seconds * SR else audio[: seconds * SR]


def new_result(impl: str, label: str, args, versions: dict) -> dict:
    """The JSON schema every worker (worker.py, anchors_venv.py) fills and prints."""
    import numpy as np

    return {
        "impl": impl,
        "label": label,
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, **versions},
        "threads": args.threads,
        "thread_env": {var: os.environ.get(var) for var in THREAD_VARS},
        "parts": sorted(args.parts.split(",")),
        "blas": None,
        "load_once_s": None,  # wall time of this worker's own first load of its weights
        "offline": [],  # {seconds, codebooks, encode_rtf, decode_rtf, encode_s, decode_s}
        "stream": [],  # {batch, codebooks, step, mean_ms, p99_ms, frames_per_s}
        "load": [],  # {layout, seconds} (mlx-mimi, median)
        "memory": [],  # {minutes, rss_mb, state_bytes} (mlx-mimi)
        "notes": [],
        "peak_rss_mb": None,
    }


def offline_rows(result: dict, encode, decode, audio_path: str, seconds_list, codebooks_list, repeats: int) -> None:
    """Median encode and decode wall time per (clip length, codebooks); the first encode is the warm-up and
    gives the codes the decode is timed on."""
    for seconds in seconds_list:
        pcm = load_audio(audio_path, seconds)
        for k in codebooks_list:
            print(f"  {result['label']}: offline {seconds} s, {k} codebooks", file=sys.stderr, flush=True)
            codes = encode(pcm, k)
            te = median_time(lambda pcm=pcm, k=k: encode(pcm, k), repeats, warmups=0)
            td = median_time(lambda codes=codes: decode(codes), repeats)
            result["offline"].append(
                {
                    "seconds": seconds,
                    "codebooks": k,
                    "encode_rtf": seconds / te,
                    "decode_rtf": seconds / td,
                    "encode_s": te,
                    "decode_s": td,
                }
            )


def stream_inputs(batch: int, k: int, frames: int):
    """The streaming inputs every worker times on: ``frames`` 80 ms PCM frames (B, 1920) and codes (B, k, 1)."""
    import numpy as np

    rng = np.random.default_rng(0)
    pcm = [(rng.standard_normal((batch, FRAME)) * 0.1).astype(np.float32) for _ in range(frames)]
    codes = [rng.integers(0, 2048, (batch, k, 1)) for _ in range(frames)]
    return pcm, codes


def stream_row(result: dict, batch: int, k: int, name: str, step, frames: int) -> None:
    mean, p99, sps = step_latencies(step, frames)
    result["stream"].append(
        {"batch": batch, "codebooks": k, "step": name, "mean_ms": mean, "p99_ms": p99, "frames_per_s": sps * batch}
    )


def emit(result: dict, json_path: str | None) -> None:
    """Write the result to ``json_path`` (when given) and as the last line of stdout."""
    result["peak_rss_mb"] = peak_rss_mb()
    text = json.dumps(result)
    if json_path:
        with open(json_path, "w") as f:
            f.write(text)
    print(text, flush=True)
