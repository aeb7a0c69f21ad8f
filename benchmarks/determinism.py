"""The determinism contract, measured: identical-code rates and frames touched for every comparison it covers.

    python benchmarks/determinism.py                      # random weights built like the tests (needs torch)
    python benchmarks/determinism.py --model kyutai/mimi  # any model: a Mac user can check the real one
    python benchmarks/determinism.py --quick              # 10 s only, no 60 s rows

Rows: batched vs single (equal lengths, B = 2, 4, 8, 10 s and 60 s of espeak speech), stream vs offline,
stream of batch 2 vs alone, offline chunk sizes, and (Linux) MLX's bundled reference BLAS vs OpenBLAS in a
separate process. Each row: identical share, frames touched, first differences, worst relative gap, whether
only near-ties differ, and whether the codes are bit-identical.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import mlx_mimi  # noqa: E402  (before mlx.core: OpenBLAS)
from mlx_mimi.compare import agreement, chains_of  # noqa: E402

SR = 24_000


def clips(speech: np.ndarray, count: int, seconds: float) -> np.ndarray:
    n = int(seconds * SR) + 777
    return np.stack([np.roll(speech, -i * 52_391)[:n] for i in range(count)])


def row(model, label: str, clip: str, a, b, latent) -> None:
    r = agreement(a, b, latent, chains_of(model))
    same = "yes" if np.array_equal(a, b) else "no"
    print(
        f"| {label} | {clip} | {r.identical:.5f} | {r.frames_touched:.5f} | {r.first_differences} | "
        f"{r.worst_gap:.1e} | {'yes' if r.near_ties_only() else 'NO'} | {same} |",
        flush=True,
    )


def stream(model, pcm: np.ndarray, chunk: int = 4000, batch: int = 1) -> np.ndarray:
    enc = model.stream_encoder(batch_size=batch)
    parts = [np.array(enc.step(pcm[..., i : i + chunk])) for i in range(0, pcm.shape[-1], chunk)]
    return np.concatenate([*parts, np.array(enc.flush())], axis=-1)


REFERENCE_BLAS = """
import sys, numpy as np, mlx_mimi
np.save(sys.argv[3], np.array(mlx_mimi.load(sys.argv[1]).encode(np.load(sys.argv[2]))))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model to measure (default: random weights as in the tests)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    import reference

    tmp = Path(tempfile.mkdtemp(prefix="mimi-determinism-"))
    speech = reference.speech(60.0, seed=5)
    folder = args.model
    if folder is None:
        hf = reference.random_hf_model(reference.speech(44.0, seed=1)[-20 * SR :], seed=0)
        hf.save_pretrained(tmp / "hf")
        folder = str(tmp / "hf")
    model = mlx_mimi.load(folder)
    print(f"# {' '.join(sys.argv)}")
    print(f"# model {folder}; {mlx_mimi.schedule.device_report()}; BLAS: {mlx_mimi.backend.blas_report()}")
    print(
        "| comparison | clip | identical | frames touched | first diffs | worst gap | near-ties only | bit-identical |"
    )
    print("|---|---|---|---|---|---|---|---|")
    lengths = [10] if args.quick else [10, 60]
    for seconds in lengths:
        pcm = clips(speech, 8, seconds)
        single = np.concatenate([np.array(model.encode(p)) for p in pcm])
        latent = np.array(model.encode_latent(pcm))
        for batch in (2, 4, 8):
            batched = np.array(model.encode(pcm[:batch]))
            row(model, f"batched B={batch} vs single", f"{seconds} s", batched, single[:batch], latent[:batch])
        row(model, "stream vs offline", f"{seconds} s", stream(model, pcm[0]), single[:1], latent[:1])
        row(model, "stream B=2 vs offline", f"{seconds} s", stream(model, pcm[:2], batch=2), single[:2], latent[:2])
        for chunk in (7, 1000):
            other = np.array(model.encode(pcm[0], chunk_frames=chunk))
            row(model, f"chunk_frames={chunk} vs 32", f"{seconds} s", other, single[:1], latent[:1])
        if sys.platform == "linux":
            np.save(tmp / "pcm.npy", pcm[0])
            env = dict(os.environ, MLX_MIMI_BLAS="off")
            cmd = [sys.executable, "-c", REFERENCE_BLAS, folder, str(tmp / "pcm.npy"), str(tmp / "ref.npy")]
            if subprocess.run(cmd, env=env).returncode == 0:
                row(
                    model,
                    "reference BLAS vs OpenBLAS",
                    f"{seconds} s",
                    np.load(tmp / "ref.npy"),
                    single[:1],
                    latent[:1],
                )


if __name__ == "__main__":
    main()
