"""mlx-mimi against the other Mimi implementations, measured in the same run on the same random weights.

    python benchmarks/bench.py                 # offline RTF, streaming step latency, load time, memory
    python benchmarks/bench.py --quick         # 10 s clips only, fewer repeats
    python benchmarks/bench.py --stream-minutes 60   # RSS after 1 min vs N min of streaming

Figures are medians over --repeats runs after one warm-up. RTF = audio seconds per wall second (higher is
better). Anchors run when importable: Kyutai's moshi (PyTorch) and transformers' MimiModel (torch==2.13.0),
plus rustymimi and moshi_mlx if installed (moshi_mlx pins its own mlx: run it from its own venv with
--only moshi_mlx and compare the tables). On a Mac the same command measures Metal.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


import mlx_mimi  # noqa: E402  (loads OpenBLAS before mlx.core)

sys.path.insert(0, str(Path(__file__).parent))
from timing import median_time, step_latencies  # noqa: E402

SR, FRAME = 24_000, 1920


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc; elsewhere the peak, which also shows growth)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return peak_rss_mb()


BLAS_PROBE = """
import sys, time, numpy as np, mlx_mimi
m = mlx_mimi.load(sys.argv[1])
pcm = (np.random.default_rng(0).standard_normal(24000 * 5) * 0.1).astype(np.float32)
m.encode(pcm, num_codebooks=8)
t = time.perf_counter(); m.encode(pcm, num_codebooks=8); print(5 / (time.perf_counter() - t))
"""


def blas_speedup(folder: Path) -> None:
    """Encode RTF with the OpenBLAS preload and with MLX's bundled reference BLAS, each in a fresh process."""
    import subprocess

    rtf = {}
    for mode in ("auto", "off"):
        env = dict(os.environ, MLX_MIMI_BLAS=mode)
        out = subprocess.run([sys.executable, "-c", BLAS_PROBE, str(folder)], env=env, capture_output=True, text=True)
        rtf[mode] = float(out.stdout.strip()) if out.returncode == 0 else float("nan")
    print("\n## Linux CPU BLAS: encode RTF, 5 s clip, 8 codebooks")
    print(
        f"| OpenBLAS preload | {rtf['auto']:.2f}x | bundled reference BLAS (MLX_MIMI_BLAS=off) | {rtf['off']:.2f}x |"
        f" speed-up {rtf['auto'] / rtf['off']:.1f}x |"
    )


# -- implementations ------------------------------------------------------------------------------------
class MlxMimi:
    name = "mlx-mimi"

    def __init__(self, folder: Path, dtype: str = "float32"):
        self.model = mlx_mimi.load(folder, dtype=dtype)
        self.name = "mlx-mimi" if dtype == "float32" else f"mlx-mimi {dtype}"

    def encode(self, pcm, k):
        return np.array(self.model.encode(pcm, num_codebooks=k))

    def decode(self, codes):
        return np.array(self.model.decode(codes))

    def stream_steps(self, batch, k, frames):
        enc = self.model.stream_encoder(batch_size=batch, num_codebooks=k)
        dec = self.model.stream_decoder(batch_size=batch)
        rng = np.random.default_rng(0)
        pcm = [rng.standard_normal((batch, FRAME)).astype(np.float32) * 0.1 for _ in range(frames)]
        codes = [rng.integers(0, 2048, (batch, k, 1)) for _ in range(frames)]
        return {
            "encode step": lambda i: enc.step(pcm[i]),
            "decode step": lambda i: dec.step(codes[i]),
            "round trip": lambda i: dec.step(enc.step(pcm[i])),
        }


class TorchMimi:
    def __init__(self, kind: str, hf_model=None, original_path=None):
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        self.torch = torch
        self.kind = kind
        if kind == "transformers":
            self.name, self.model = "transformers (torch CPU)", hf_model
        else:
            import reference

            self.name, self.model = "moshi (torch CPU)", reference.moshi_model(original_path)

    def encode(self, pcm, k):
        with self.torch.no_grad():
            x = self.torch.from_numpy(pcm)[None, None]
            if self.kind == "transformers":
                return self.model.encode(x, num_quantizers=k).audio_codes.numpy()
            self.model.set_num_codebooks(k)
            return self.model.encode(x).numpy()

    def decode(self, codes):
        with self.torch.no_grad():
            c = self.torch.from_numpy(codes.astype(np.int64))
            if self.kind == "transformers":
                return self.model.decode(c).audio_values.numpy()
            self.model.set_num_codebooks(codes.shape[1])
            return self.model.decode(c).numpy()

    def stream_steps(self, batch, k, frames):
        if self.kind != "moshi":
            return None
        torch, m = self.torch, self.model
        m.set_num_codebooks(k)
        rng = np.random.default_rng(0)
        pcm = [torch.from_numpy(rng.standard_normal((batch, 1, FRAME)).astype(np.float32) * 0.1) for _ in range(frames)]
        codes = [torch.from_numpy(rng.integers(0, 2048, (batch, k, 1))) for _ in range(frames)]
        if getattr(self, "_streaming", None) is not None:  # leave the previous batch size's streaming mode
            self._streaming.__exit__(None, None, None)
        self._streaming = m.streaming(batch)
        self._streaming.__enter__()

        def enc(i):
            with torch.no_grad():
                return m.encode(pcm[i])

        def dec(i):
            with torch.no_grad():
                return m.decode(codes[i])

        def rt(i):
            with torch.no_grad():
                return m.decode(m.encode(pcm[i]))

        return {"encode step": enc, "decode step": dec, "round trip": rt}


def build_weights(folder: Path):
    """Random non-degenerate weights in the HF and original layouts, plus the converted layout."""
    import reference

    from mlx_mimi.convert import convert

    speech = reference.speech(30.0, seed=7)
    hf = reference.random_hf_model(speech[-20 * SR :], seed=0)
    hf.save_pretrained(folder / "hf")
    original = reference.save_original(hf, folder / "original")
    convert(folder / "hf", folder / "converted")
    return hf, original, speech


def run_venv_anchors(args, original: Path, repeats) -> dict[str, list[str]]:
    """moshi_mlx and rustymimi from their own venv (anchors_venv.py); rows keyed OFFLINE / STREAM."""
    import subprocess

    if not args.anchor_python:
        print("# moshi_mlx, rustymimi: pass --anchor-python VENV/bin/python (see anchors_venv.py)")
        return {}
    script = Path(__file__).with_name("anchors_venv.py")
    # 10 s clips only: moshi_mlx decodes at ~0.2x real time, so a 60 s clip would take minutes per run
    cmd = [
        args.anchor_python,
        str(script),
        "--weights",
        str(original),
        "--seconds",
        "10",
        "--repeats",
        str(min(repeats, 2)),
        "--frames",
        str(args.frames),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    rows: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind in ("OFFLINE", "STREAM"):
            rows.setdefault(kind, []).append(rest)
        elif line.startswith("#"):
            print(line)
    if out.returncode:
        print(f"# anchors venv failed: {out.stderr.strip().splitlines()[-1:]}")
    return rows


def stream_memory(folder: Path, minutes: float) -> None:
    """Process RSS and stream state after 1 minute and after ``minutes`` of streamed audio (encode + decode)."""
    print(f"\n## memory while streaming (encode + decode, B=1, 8 codebooks), up to {minutes:g} min")
    model = mlx_mimi.load(folder)
    enc, dec = model.stream_encoder(num_codebooks=8), model.stream_decoder()
    chunk = (np.random.default_rng(1).standard_normal(FRAME * 25) * 0.1).astype(np.float32)  # 2 s
    marks = sorted({1.0, minutes})
    done = 0.0
    while marks:
        dec.step(enc.step(chunk))
        done += 2 / 60
        if done >= marks[0] - 1e-9:
            print(
                f"| streamed {marks.pop(0):g} min | RSS {current_rss_mb():.0f} MB | "
                f"state {enc.state_bytes + dec.state_bytes} bytes |",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 s clips only, 3 repeats")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--frames", type=int, default=200, help="streaming frames timed per configuration")
    ap.add_argument("--only", default=None, help="comma list: mlx-mimi,moshi,transformers")
    ap.add_argument("--stream-minutes", type=float, default=0, help="also measure RSS after N minutes of streaming")
    ap.add_argument("--memory-only", action="store_true", help="only the streaming-memory measurement")
    ap.add_argument("--anchor-python", default=None, help="python of a venv with moshi_mlx and rustymimi installed")
    args = ap.parse_args()
    repeats = 3 if args.quick else args.repeats
    lengths = [10] if args.quick else [10, 60]
    only = set(args.only.split(",")) if args.only else None

    print(
        f"# backend: {mlx_mimi.backend.device_report()}; BLAS: {mlx_mimi.backend.blas_report()}; {os.cpu_count()} cores"
    )
    tmp = Path(tempfile.mkdtemp(prefix="mimi-bench-"))
    hf, original, speech = build_weights(tmp)
    if args.memory_only:
        stream_memory(tmp / "converted", args.stream_minutes or 60)
        return
    speech = np.tile(speech, 3)

    # -- load time: raw layouts vs converted
    print("\n## load time (median, s)")
    loads = {
        name: median_time(lambda p=p: mlx_mimi.load(p), repeats)
        for name, p in (("HF layout", tmp / "hf"), ("Kyutai original", original), ("converted", tmp / "converted"))
    }
    for name, t in loads.items():
        print(f"| {name:16s} | {t:.3f} | {loads['HF layout'] / t:.1f}x vs HF |")

    impls = []
    if only is None or "mlx-mimi" in only:
        impls.append(MlxMimi(tmp / "converted"))
    for kind in ("moshi", "transformers"):
        if only is None or kind in only:
            try:
                impls.append(TorchMimi(kind, hf, original))
            except Exception as exc:  # not installed
                print(f"# {kind}: skipped ({exc.__class__.__name__}: {exc})")
    anchor_rows = run_venv_anchors(args, original, repeats)

    print("\n## offline RTF (audio s / wall s, median)")
    print("| implementation | clip | codebooks | encode RTF | decode RTF |")
    print("|---|---|---|---|---|")
    results = {}
    for seconds in lengths:
        pcm = speech[: seconds * SR]
        for k in (8, 32):
            for impl in impls:
                codes = impl.encode(pcm, k)
                te = median_time(lambda impl=impl, k=k, pcm=pcm: impl.encode(pcm, k), repeats)
                td = median_time(lambda impl=impl, codes=codes: impl.decode(codes), repeats)
                results[(impl.name, seconds, k)] = (seconds / te, seconds / td)
                print(f"| {impl.name} | {seconds} s | {k} | {seconds / te:.1f}x | {seconds / td:.1f}x |")
    for row in anchor_rows.get("OFFLINE", []):
        print(row)
        cells = [c.strip() for c in row.strip("|").split("|")]
        results[(cells[0], int(cells[1].split()[0]), int(cells[2]))] = (float(cells[3][:-1]), float(cells[4][:-1]))
    ours = [r for key, r in results.items() if key[0] == "mlx-mimi"]
    if ours and len(impls) > 1:
        print("\n## mlx-mimi / best anchor (same clip and codebooks)")
        for (name, seconds, k), (e, d) in results.items():
            if name != "mlx-mimi":
                continue
            anchors = [v for key, v in results.items() if key[0] != "mlx-mimi" and key[1:] == (seconds, k)]
            be, bd = max(a[0] for a in anchors), max(a[1] for a in anchors)
            print(f"| {seconds} s, {k} codebooks | encode {e / be:.2f}x | decode {d / bd:.2f}x |")

    print("\n## streaming step latency (80 ms frame; ms mean / p99; frames per second)")
    print("| implementation | B | step | mean ms | p99 ms | frames/s |")
    print("|---|---|---|---|---|---|")
    for impl in impls:
        for batch in (1, 8):
            steps = impl.stream_steps(batch, 8, args.frames)
            if steps is None:
                continue
            for name, fn in steps.items():
                mean, p99, fps = step_latencies(fn, args.frames)
                print(f"| {impl.name} | {batch} | {name} | {mean:.2f} | {p99:.2f} | {fps * batch:.0f} |")
    for row in anchor_rows.get("STREAM", []):
        print(row)

    print(f"\n## peak RSS of this process: {peak_rss_mb():.0f} MB")
    if mlx_mimi.backend.blas_report().startswith("OpenBLAS"):
        blas_speedup(tmp / "converted")
    if args.stream_minutes:
        stream_memory(tmp / "converted", args.stream_minutes)


if __name__ == "__main__":
    main()
