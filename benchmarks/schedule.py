"""A schedule's chunk and pass sizes, measured: wall time and MLX's peak memory of offline encode and decode.

    python benchmarks/schedule.py                          # this device's schedule, chunks 32..512, passes
    python benchmarks/schedule.py --schedule gpu           # the GPU schedule (on any device: on a CPU, its memory)
    python benchmarks/schedule.py --model kyutai/mimi --clips 8 --seconds 20

For each chunk size (frames per transformer call) it encodes and decodes one clip, and for each pass size
(clip-frames in flight per chunk) a batch of ``--clips`` clips; it prints a Markdown table of seconds, real-time
factor and peak memory (``mx.get_peak_memory``, reset before each row). Run it on a Mac to choose the GPU schedule's
``chunk_frames`` and ``frames_per_pass`` (mlx_mimi/schedule.py); on a CPU device it still measures what the GPU
schedule would hold in memory, since the graphs are the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import mlx_mimi  # noqa: E402, I001  (before mlx.core: OpenBLAS)
import mlx.core as mx  # noqa: E402  # isort: skip

SR = 24_000


def row(model, schedule, label: str, pcm: np.ndarray) -> str:
    model.schedule = schedule
    model.encode(pcm[..., : 2 * SR])  # warm-up: compiled searches, buffers
    mx.clear_cache()
    mx.reset_peak_memory()
    start = time.perf_counter()
    codes = model.encode(pcm)
    encode_s = time.perf_counter() - start
    encode_peak = mx.get_peak_memory() / 2**20
    mx.clear_cache()
    mx.reset_peak_memory()
    start = time.perf_counter()
    model.decode(codes)
    decode_s = time.perf_counter() - start
    decode_peak = mx.get_peak_memory() / 2**20
    seconds = pcm.size / SR
    return (
        f"| {label} | {encode_s:.2f} ({seconds / encode_s:.1f}x) | {encode_peak:.0f} | "
        f"{decode_s:.2f} ({seconds / decode_s:.1f}x) | {decode_peak:.0f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model reference (default: random weights, as the tests build)")
    ap.add_argument("--schedule", choices=["device", "cpu", "gpu"], default="device")
    ap.add_argument("--seconds", type=float, default=20.0, help="clip length")
    ap.add_argument("--clips", type=int, default=8, help="clips in the batch of the pass-size rows")
    ap.add_argument("--chunks", default="32,64,128,256,512", help="chunk sizes (frames), comma list")
    ap.add_argument("--passes", default="128,256,512,1024,2048", help="pass sizes (clip-frames), comma list")
    args = ap.parse_args()

    import reference

    speech = reference.speech(max(args.seconds, 20.0) + 2, seed=3)
    if args.model:
        model = mlx_mimi.load(args.model)
    else:
        import tempfile

        from random_model import random_model

        model = mlx_mimi.load(random_model(speech, Path(tempfile.mkdtemp(prefix="mimi-schedule-"))))
    base = {"device": model.current_schedule(), "cpu": mlx_mimi.cpu_schedule(), "gpu": mlx_mimi.gpu_schedule()}
    base = base[args.schedule]
    n = int(args.seconds * SR)
    one = speech[:n]
    batch = np.stack([np.roll(speech, -i * 31_337)[:n] for i in range(args.clips)])
    print(f"# {mlx_mimi.schedule.device_report()}; schedule {base.name}; {args.seconds:g} s clips\n")
    print("| rows | encode s (RTF) | encode peak MB | decode s (RTF) | decode peak MB |")
    print("|---|---|---|---|---|")
    for chunk in (int(c) for c in args.chunks.split(",")):
        schedule = dataclasses.replace(base, chunk_frames=chunk)
        print(row(model, schedule, f"1 clip, chunk {chunk}", one), flush=True)
    for per_pass in (int(p) for p in args.passes.split(",")):
        schedule = dataclasses.replace(base, frames_per_pass=per_pass)
        label = f"{args.clips} clips, chunk {base.chunk_frames}, pass {per_pass}"
        print(row(model, schedule, label, batch), flush=True)


if __name__ == "__main__":
    main()
