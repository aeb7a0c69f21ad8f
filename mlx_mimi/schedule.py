"""Every per-device choice in one object: chunk, pass and tile sizes, evaluation points, attention blocks, the RoPE
path, the ELU split and fast math. The only module that asks which device MLX runs on.

A ``Schedule`` decides how work is cut and which of two equivalent formulas runs; it never decides what is
computed, so two schedules give the same codes up to float near-ties (the README's determinism contract). Layers
and models take the schedule as an argument; ``for_device()`` picks the one for a device, and a test can hand the
GPU schedule to the CPU device, so every branch a Mac takes runs in CI.

Why each CPU value (measured on a 2-core AMD EPYC with OpenBLAS, MLX 0.32.4; README, "Where the time goes"):

- ``chunk_frames`` 128 (256 transformer steps per call): OpenBLAS packs each weight again in every call, so larger
  calls read it less often. Encoder transformer over 512 steps, in-process A/B: chunks of 32 frames 460 ms, 64:
  400, 128: 382, 256: 375; the same bits.
- ``frames_per_pass`` 32: a clip's matmuls gain nothing from company on a CPU and bigger passes leave the cache:
  16 clips of 1-20 s encoded at 9.5x real time with 32 clip-frames per pass, 8.1x with 64, 6.3x with 256, 9.3x one
  clip at a time.
- ``seanet_tile_frames`` 8: a 32-frame chunk's 24 kHz activations (8-16 MB each) spill out of the caches; in 8-frame
  tiles, one chunk's SEANet decoder 320 -> 207 ms, encoder 251 -> 205 ms (16: 207/218, 4: 330/267).
- ``low_rate_stages`` 2 in ``low_rate_tile_frames`` 32: the stages next to the transformer have small activations and
  large weights (32 MB for the 512 <-> 1024 strided convs), read once per tile: +10% encode, +6% decode.
- ``evaluation_points``: offline passes evaluate each encoder tile and the decoder's transformer output as they are
  built: encode 1.11-1.15x, decode 1.04-1.14x against one evaluation per chunk (the same bits). Never inside
  compiled stream steps (``streaming()`` turns them off).
- ``attention_block`` 64: a 256-step call attends in blocks of 64 queries, each over the keys its window reaches (no
  extra score work; bit-identical to 64-step calls here).
- ``shared_rope``: ``mx.fast.rope`` on the CPU is a composed fallback that recomputes cos/sin in every call; one
  table per transformer call, the same ops in the same order, is bit-identical and 0.41 -> 0.10-0.16 ms per layer.
- ``split_elementwise``: MLX's CPU elementwise kernels run on one thread; large ELUs run in two halves on two
  streams: ELU + concat of a 15360 x 64 tile 3.05 -> 2.07 ms, +5% encode, +6% decode end to end.
- ``min_steps_own_softmax`` 16: offline chunks attend with the fast exp; a stream step's 2 queries keep MLX's
  attention, whose fewer kernels cost what the exp saves (33 vs 32.6 ms per encode step, within noise).
- ``fast_math`` (x86 CPUs only): MLX's x86 CPU exp/expm1/erf are scalar libm; arithmetic ELU/GELU/softmax-exp that
  MLX can fuse and vectorise (layers/activations.py) are 2-5x faster. ``MLX_MIMI_FASTMATH=on|off`` forces it.

The GPU schedule keeps MLX's own fused ops and one graph per chunk: no tiles, no blocks, no evaluation points, no
second stream. Its chunk and pass sizes are bounded by memory (one decoder activation of a chunk is
``frames x 1920 x 64 x 4`` bytes): ``benchmarks/schedule.py`` measures the peak memory and speed of any schedule on
the device at hand; the GPU values below are from its peak-memory run of the GPU schedule on the CPU backend (no Mac
or GPU was available to time them). Peak memory, 20 s clips: one clip in chunks of 256 frames 2.0 GB encode, 2.2 GB
decode (128: 1.5 / 1.6 GB); eight clips in passes of 512 clip-frames 3.7 / 4.1 GB, of 1024 6.9 / 7.8 GB, of 2048
12.9 / 15.2 GB. ``frames_per_pass`` 512 keeps a batch to about half of an 8 GB Mac's memory; a 256-frame chunk alone
already gives every conv 31 M activations (one clip), work enough to fill a GPU, so more clips per pass would buy
little speed for the memory.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from dataclasses import dataclass

import mlx.core as mx

FASTMATH_ENV = "MLX_MIMI_FASTMATH"
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@dataclass(frozen=True)
class Schedule:
    """How offline and streaming work is cut and which equivalent formulas run (see the module docstring)."""

    name: str
    chunk_frames: int  # offline: frames per transformer call
    frames_per_pass: int  # offline: at most this many clip-frames of a batch in flight per chunk
    seanet_tile_frames: int | None  # high-rate SEANet stages in tiles of this many frames (None: the whole chunk)
    low_rate_tile_frames: int | None  # the low-rate stages next to the transformer in tiles of this many frames
    low_rate_stages: int  # how many SEANet stages next to the transformer count as low-rate
    evaluation_points: bool  # offline chunks evaluate their graph at a few points inside
    attention_block: int | None  # queries per attention block (None: all of a call's queries at once)
    shared_rope: bool  # one RoPE table per transformer call (else mx.fast.rope at each layer)
    split_elementwise: bool  # large ELUs in two halves on two streams
    fast_math: bool  # arithmetic ELU, GELU and softmax exp instead of MLX's transcendental ops
    min_steps_own_softmax: int = 16  # calls of fewer queries keep MLX's attention (a stream step: 2 queries)

    def streaming(self) -> Schedule:
        """The same schedule for compiled stream steps: no evaluation inside a compiled graph."""
        return dataclasses.replace(self, evaluation_points=False) if self.evaluation_points else self


def _fast_math_default(on_cpu: bool) -> bool:
    forced = os.environ.get(FASTMATH_ENV, "auto").lower()
    if forced in ("on", "1", "true"):
        return True
    if forced in ("off", "0", "false"):
        return False
    return _X86 and on_cpu


def cpu_schedule() -> Schedule:
    return Schedule(
        name="cpu",
        chunk_frames=128,
        frames_per_pass=32,
        seanet_tile_frames=8,
        low_rate_tile_frames=32,
        low_rate_stages=2,
        evaluation_points=True,
        attention_block=64,
        shared_rope=True,
        split_elementwise=True,
        fast_math=_fast_math_default(on_cpu=True),
    )


def gpu_schedule() -> Schedule:
    return Schedule(
        name="gpu",
        chunk_frames=256,
        frames_per_pass=512,
        seanet_tile_frames=None,
        low_rate_tile_frames=None,
        low_rate_stages=0,
        evaluation_points=False,
        attention_block=None,
        shared_rope=False,
        split_elementwise=False,
        fast_math=_fast_math_default(on_cpu=False),
    )


def on_cpu(device: mx.Device | None = None) -> bool:
    """Whether ``device`` (default: MLX's default device now) is the CPU."""
    return (device or mx.default_device()) == mx.cpu


def for_device(device: mx.Device | None = None) -> Schedule:
    """The schedule for ``device`` (default: MLX's default device now)."""
    return cpu_schedule() if on_cpu(device) else gpu_schedule()


def device_report() -> str:
    return f"mlx {mx.__version__}, default device {mx.default_device()}"
