"""Corpus tokenization throughput: how fast a folder of clips of many lengths becomes codes, per configuration.

    python benchmarks/corpus.py                                   # 100 espeak clips of 1-20 s, 8 codebooks
    python benchmarks/corpus.py --clips 12 --max-seconds 6 --batch-seconds 20,60   # smoke test, a few minutes
    python benchmarks/corpus.py --only mlx-single,mlx-batched,cli --assets /tmp/corpus-assets

The driver builds random non-degenerate weights once (tests/reference.py, as bench.py does) and a corpus of
--clips espeak-ng clips (one seed per clip, lengths uniform in [--min-seconds, --max-seconds] from a seeded
RNG) saved as 24 kHz float wav files, then runs each configuration in its own worker process (this script with
--impl), one after another, with the same thread settings (timing.THREAD_VARS; torch.set_num_threads):

    mlx-single           mlx-mimi, model.encode one clip at a time
    mlx-batched          mlx-mimi, corpus.plan_batches + model.encode_batch, one worker per --batch-seconds cap
    cli                  `mimi encode DIR --dataset OUT -n K` as a subprocess (imports, load, Parquet included)
    cli-launch           the same under `mlx.launch -n --ranks --` (the ranks share this machine's cores)
    transformers-single  transformers' MimiModel, one clip at a time
    transformers-padded  MimiModel on zero-padded batches of the same planner (--hf-batch-seconds), padding_mask
                         passed, codes cut to each clip's ceil(T / 1920) frames
    moshi                Kyutai's PyTorch Mimi, one clip at a time

In-process figures time reading the wav files and encoding (planning too, for batches) after one untimed
warm-up encode of the first clip; the model load is not timed. The CLI rows time the whole command (wall).
Identical-code rates compare each configuration's codes with the same implementation's one-clip-at-a-time
codes: all codes, and the codes of each clip's last (usually partial) frame. Nothing is timed in the driver.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import NOTES, Worker, child_env, command_line, machine_parts, pkg, print_notes  # noqa: E402  (stdlib only at import)
from timing import FRAME, SR, THREAD_VARS, peak_rss_mb, pin_threads  # noqa: E402

CONFIGS = ("mlx-single", "mlx-batched", "cli", "cli-launch", "transformers-single", "transformers-padded", "moshi")
TORCH = ("transformers-single", "transformers-padded", "moshi")


# -- assets (a child process: the driver imports neither torch nor mlx) -------------------------------------
def build_assets(folder: Path, clips: int, min_s: float, max_s: float, seed: int, caps: list[float]) -> None:
    """Weights (bench.py's), the corpus (rebuilt when its settings change) and the planner's batches per cap."""
    import bench

    if not (folder / "manifest.json").exists():
        print(f"# building random weights (HF, Kyutai original, converted) in {folder}", file=sys.stderr)
        bench.build_assets(folder, 30)  # imports mlx_mimi first, puts tests/ on sys.path
    sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]
    import numpy as np
    import reference
    import soundfile as sf

    from mlx_mimi.corpus import Item, plan_batches, probe

    corpus, spec = folder / "corpus", {"clips": clips, "min_seconds": min_s, "max_seconds": max_s, "seed": seed}
    manifest = folder / "corpus.json"
    if not manifest.exists() or json.loads(manifest.read_text()) != spec:
        print(f"# writing {clips} espeak-ng clips of {min_s:g}-{max_s:g} s to {corpus}", file=sys.stderr)
        shutil.rmtree(corpus, ignore_errors=True)
        corpus.mkdir(parents=True)
        lengths = np.random.default_rng(seed).uniform(min_s, max_s, clips)
        for i, seconds in enumerate(lengths):
            sf.write(corpus / f"clip-{i:03d}.wav", reference.speech(float(seconds), seed=seed + i), SR, "FLOAT")
        manifest.write_text(json.dumps(spec))
    items = [Item(p, p.name) for p in sorted(corpus.glob("*.wav"))]
    found, problems = probe(items, SR)
    if problems:
        raise SystemExit(f"unreadable clips: {problems}")
    plans = {f"{cap:g}": [[c.item.id for c in b] for b in plan_batches(found, int(cap * SR))] for cap in caps}
    (folder / "plans.json").write_text(json.dumps(plans))


# -- workers ------------------------------------------------------------------------------------------------
def clip_paths(folder: Path) -> list[Path]:
    return sorted((folder / "corpus").glob("*.wav"))


def compare(codes: dict, ref: dict) -> dict:
    """Identical-code rates of ``codes`` vs ``ref`` ({id: (K, F)}): all codes, last frames, and how far from a
    clip's end its first difference lies (1 = only the last frame differs)."""
    import numpy as np

    same = total = last_same = last_total = differ = mismatched = tail = 0
    for key, r in ref.items():
        c = codes[key]
        if c.shape != r.shape:
            mismatched += 1
        f = min(c.shape[1], r.shape[1])
        eq = c[: r.shape[0], :f] == r[:, :f]
        same, total = same + int(eq.sum()), total + r.size
        last_same, last_total = last_same + int(eq[:, -1].sum()), last_total + r.shape[0]
        bad = np.flatnonzero(~eq.all(0))
        if len(bad) or c.shape != r.shape:
            differ += 1
            tail = max(tail, r.shape[1] - int(bad[0]) if len(bad) else 0)
    return {"all": same / total, "last": last_same / last_total, "clips_differ": differ, "clips": len(ref),
            "shape_mismatch": mismatched, "max_tail_frames": tail}  # fmt: skip


def save_codes(path: Path, codes: dict) -> None:
    import numpy as np

    path.parent.mkdir(exist_ok=True)
    np.savez(path, **codes)


def load_codes(path: Path) -> dict | None:
    import numpy as np

    if not path.exists():
        return None
    with np.load(path) as z:
        return {key: z[key] for key in z.files}


def new_result(impl: str, label: str, versions: dict) -> dict:
    import numpy as np

    return {"impl": impl, "label": label, "versions": {"numpy": np.__version__, **versions}, "blas": None,
            "audio_s": 0.0, "timed_s": None, "load_s": None, "batches": None, "identical": None,
            "vs_mlx_single": None, "peak_rss_mb": None, "child_rss_mb": None, "child_cpu_s": None,
            "launcher_cpu_s": None, "notes": []}  # fmt: skip


def timed_loop(result: dict, clips: list[Path], encode_one, read) -> dict:
    """One clip at a time: read + encode, after an untimed warm-up on the first clip."""
    encode_one(read(clips[0]))
    codes, start = {}, time.perf_counter()
    for path in clips:
        pcm = read(path)
        codes[path.name] = encode_one(pcm)
        result["audio_s"] += len(pcm) / SR
    result["timed_s"] = time.perf_counter() - start
    return codes


def run_mlx(args, folder: Path) -> dict:
    import mlx_mimi  # first: gives MLX OpenBLAS before mlx.core is loaded

    import mlx.core as mx  # isort: skip
    import numpy as np

    from mlx_mimi.audio import read_audio
    from mlx_mimi.corpus import Item, plan_batches, probe

    label = "mlx-mimi, one clip at a time"
    if args.impl == "mlx-batched":
        label = f"mlx-mimi encode_batch, cap {args.cap:g} s"
    result = new_result(args.impl, label, {"mlx": mx.__version__, "mlx-mimi": mlx_mimi.__version__})
    result["blas"] = mlx_mimi.backend.blas_report()
    start = time.perf_counter()
    model = mlx_mimi.load(folder / "converted")
    result["load_s"] = time.perf_counter() - start
    k, clips = args.codebooks, clip_paths(folder)

    def encode_one(pcm):
        codes = np.array(model.encode(pcm, num_codebooks=k))
        return codes[0] if codes.ndim == 3 else codes

    single_file = folder / "codes" / "mlx-single.npz"
    if args.impl == "mlx-single":
        codes = timed_loop(result, clips, encode_one, read_audio)
        save_codes(single_file, codes)
        return result

    np.array(model.encode_batch([read_audio(clips[0])], num_codebooks=k)[0])  # warm-up
    codes, start = {}, time.perf_counter()
    found, _ = probe([Item(p, p.name) for p in clips], model.sample_rate)  # as `mimi encode` does
    batches = plan_batches(found, int(args.cap * model.sample_rate))
    for batch in batches:
        pcms = [read_audio(clip.item.path) for clip in batch]
        for clip, pcm, row in zip(batch, pcms, model.encode_batch(pcms, num_codebooks=k), strict=True):
            codes[clip.item.id] = np.array(row)
            result["audio_s"] += len(pcm) / SR
    result["timed_s"] = time.perf_counter() - start
    result["batches"] = len(batches)
    ref = load_codes(single_file)
    if ref is None:  # no mlx-single worker ran first: the same codes, computed here, untimed
        ref = {p.name: encode_one(read_audio(p)) for p in clips}
        result["notes"].append(f"{label}: one-clip-at-a-time codes computed in the same worker")
    result["identical"] = compare(codes, ref)
    return result


def free_port() -> int:
    """A port with the next one free too (mlx.launch's ring backend listens on port + rank)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise SystemExit("no two consecutive free ports")


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of one live process (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_dataset(out: Path) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    rows = {}
    for shard in sorted(out.glob("shard-*.parquet")):
        for row in pq.read_table(shard, columns=["id", "codes"]).to_pylist():
            rows[row["id"]] = np.array(row["codes"], dtype=np.int64)
    return rows


def run_cli(args, folder: Path) -> dict:
    """`mimi encode --dataset` as a subprocess, wall-timed; peak RSS of the largest process below this one."""
    import numpy as np
    import soundfile as sf

    mimi = shutil.which("mimi") or sys.exit("the `mimi` console script is not installed")
    out = Path(tempfile.mkdtemp(prefix="dataset-", dir=folder))
    shutil.rmtree(out)  # a fresh dataset: an existing one would be resumed (nothing left to do)
    cmd = [mimi, "encode", str(folder / "corpus"), "--dataset", str(out), "-n", str(args.codebooks)]
    cmd += ["--model", str(folder / "converted"), "--batch-seconds", f"{args.cap:g}"]
    label = f"`mimi encode --dataset`, 1 process, cap {args.cap:g} s"
    if args.impl == "cli-launch":
        launcher = shutil.which("mlx.launch") or sys.exit("mlx.launch is not installed")
        cmd = [launcher, "-n", str(args.ranks), "-p", str(free_port()), "--", *cmd]
        label = f"`mlx.launch -n {args.ranks} -- mimi encode --dataset`, cap {args.cap:g} s"
    result = new_result(args.impl, label, {"mlx-mimi": pkg("mlx-mimi"), "mlx": pkg("mlx")})
    clips = clip_paths(folder)
    result["audio_s"] = sum(sf.info(str(p)).frames for p in clips) / SR
    print(f"  {label}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, text=True)
        own_cpu = 0.0  # CPU seconds of the launched process itself (all its threads, not its children)
        while proc.poll() is None:
            own_cpu = process_cpu_seconds(proc.pid) or own_cpu
            time.sleep(0.2)
        result["timed_s"] = time.perf_counter() - start
        log.seek(0)
        stderr = log.read()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # this worker's only child: no delta needed
    # Linux: the largest ru_maxrss of any reaped descendant (mlx.launch reaps its ranks), KiB
    result["child_rss_mb"] = usage.ru_maxrss / 1024
    result["child_cpu_s"] = usage.ru_utime + usage.ru_stime
    result["launcher_cpu_s"] = own_cpu if args.impl == "cli-launch" else None
    try:
        index = json.loads((out / "index.json").read_text())
        codes = read_dataset(out)
    except (OSError, ValueError) as exc:  # mlx.launch exits 0 whatever its ranks do: the index is the proof
        sys.stderr.write(stderr[-2000:])
        raise SystemExit(f"{label}: no dataset ({exc}); exit {proc.returncode}") from exc
    finally:
        shutil.rmtree(out, ignore_errors=True)
    failed = proc.returncode or "exited with code" in stderr or "was killed" in stderr
    if failed or index["errors"] or index["clips"] != len(clips):
        sys.stderr.write(stderr[-2000:])
        raise SystemExit(f"{label}: exit {proc.returncode}, {index['clips']} clips, {index['errors']} errors")
    ref = load_codes(folder / "codes" / "mlx-single.npz")
    if ref is not None:
        result["identical"] = compare({key: c.astype(np.int64) for key, c in codes.items()}, ref)
    else:
        result["notes"].append(f"{label}: no identical-code rate (needs the mlx-single worker first)")
    return result


def run_torch(args, folder: Path) -> dict:
    # transformers imports mlx.core to test for MLX arrays where mlx is installed: hidden during the imports and
    # the load, as worker.py does (einops would import it later where "mlx" is in sys.modules).
    sys.modules["mlx"] = None
    import numpy as np
    import soundfile as sf
    import torch

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    k, clips = args.codebooks, clip_paths(folder)
    start = time.perf_counter()
    if args.impl == "moshi":
        sys.path.insert(0, str(HERE.parent / "tests"))
        import reference

        model = reference.moshi_model(next((folder / "original").glob("*.safetensors")))
        model.set_num_codebooks(k)
        label, versions = "moshi (PyTorch), one clip at a time", {"torch": torch.__version__, "moshi": pkg("moshi")}
    else:
        from transformers import MimiModel

        model = MimiModel.from_pretrained(folder / "hf").eval()
        label = "transformers, one clip at a time"
        if args.impl == "transformers-padded":
            label = f"transformers, zero-padded batches + padding_mask, cap {args.cap:g} s"
        versions = {"torch": torch.__version__, "transformers": pkg("transformers")}
    load_s = time.perf_counter() - start
    del sys.modules["mlx"]
    result = new_result(args.impl, label, versions)
    result["load_s"] = load_s
    result["blas"] = f"torch {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"

    def read(path):
        return sf.read(str(path), dtype="float32")[0]  # 24 kHz mono float files: what read_audio returns

    def encode_one(pcm):
        x = torch.from_numpy(pcm)[None, None]
        if args.impl == "moshi":
            return model.encode(x)[0].numpy()
        return model.encode(x, num_quantizers=k).audio_codes[0].numpy()

    name = "moshi" if args.impl == "moshi" else "transformers-single"
    if args.impl != "transformers-padded":
        codes = timed_loop(result, clips, encode_one, read)
        save_codes(folder / "codes" / f"{name}.npz", codes)
    else:
        by_id = {p.name: p for p in clips}
        plan = json.loads((folder / "plans.json").read_text())[f"{args.cap:g}"]
        encode_one(read(clips[0]))  # warm-up
        codes, start = {}, time.perf_counter()
        for batch in plan:
            pcms = [read(by_id[i]) for i in batch]
            x = np.zeros((len(pcms), 1, max(map(len, pcms))), np.float32)
            mask = np.zeros(x.shape, np.int64)
            for row, pcm in enumerate(pcms):
                x[row, 0, : len(pcm)], mask[row, 0, : len(pcm)] = pcm, 1
            out = model.encode(torch.from_numpy(x), padding_mask=torch.from_numpy(mask), num_quantizers=k)
            for row, (clip_id, pcm) in enumerate(zip(batch, pcms, strict=True)):
                codes[clip_id] = out.audio_codes[row, :, : -(-len(pcm) // FRAME)].numpy()
                result["audio_s"] += len(pcm) / SR
        result["timed_s"] = time.perf_counter() - start
        result["batches"] = len(plan)
        ref = {p.name: encode_one(read(p)) for p in clips}  # one clip at a time, this worker, untimed
        result["identical"] = compare(codes, ref)
        other = load_codes(folder / "codes" / "transformers-single.npz")
        if other is not None and compare(ref, other)["all"] != 1.0:
            result["notes"].append(f"{label}: transformers' one-at-a-time codes differ between the two workers")
    mlx_single = load_codes(folder / "codes" / "mlx-single.npz")
    if mlx_single is not None and args.impl != "transformers-padded":
        result["vs_mlx_single"] = compare({key: c.astype(np.int64) for key, c in codes.items()}, mlx_single)
    return result


def worker_main(args) -> None:
    pin_threads(args.threads)  # before any BLAS / OpenMP library loads
    folder = Path(args.assets)
    if args.impl in ("mlx-single", "mlx-batched"):
        result = run_mlx(args, folder)
    elif args.impl in ("cli", "cli-launch"):
        result = run_cli(args, folder)
    else:
        result = run_torch(args, folder)
        if "mlx" in sys.modules:
            raise SystemExit(f"{args.impl}: mlx was imported in this torch worker; its figures are not clean")
    result["threads"] = args.threads
    result["thread_env"] = {var: os.environ.get(var) for var in THREAD_VARS}
    result["peak_rss_mb"] = peak_rss_mb()
    with open(args.json, "w") as f:
        json.dump(result, f)


# -- tables ---------------------------------------------------------------------------------------------------
def rate(ident: dict | None) -> str:
    if not ident:
        return "-"
    return f"{ident['all']:.4f} / {ident['last']:.4f}"


def print_table(results: list[dict], args) -> None:
    print("\n### Corpus tokenization throughput (higher is faster)\n")
    print(
        "| configuration | audio (h) | wall (s) | audio h per wall h | peak RSS (MB) | identical codes vs one at a "
        "time (all / last frames) | other processes' CPU (cores) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        label = f"**{r['label']}**" if r["impl"].startswith(("mlx", "cli")) else r["label"]
        if r["impl"] in ("mlx-batched", "transformers-padded"):
            label += f" ({r['batches']} batch{'es' if r['batches'] != 1 else ''})"
        rss = f"{r['peak_rss_mb']:.0f}"
        if r["child_rss_mb"] is not None:
            rss = f"{r['child_rss_mb']:.0f}" + (" (largest rank)" if r["impl"] == "cli-launch" else " (mimi)")
        other = f"{r['other_cores']:.2f}" if r["other_cores"] is not None else "n/a"
        print(
            f"| {label} | {r['audio_s'] / 3600:.4f} | {r['timed_s']:.1f} | {r['audio_s'] / r['timed_s']:.1f} | "
            f"{rss} | {rate(r['identical'])} | {other} |"
        )


def notes_for(results: list[dict], args) -> list[str]:
    notes = []
    for r in results:
        ident = r["identical"]
        if ident and ident["clips_differ"]:
            notes.append(
                f"{r['label']}: {ident['clips_differ']} of {ident['clips']} clips' codes differ from one-at-a-time; "
                f"differences start at most {ident['max_tail_frames']} frame(s) before a clip's end"
                + (f"; {ident['shape_mismatch']} clips have another frame count" if ident["shape_mismatch"] else "")
            )
        if r["vs_mlx_single"]:
            v = r["vs_mlx_single"]
            notes.append(
                f"{r['label']} vs mlx-mimi, both one clip at a time (same weights): {v['all']:.4f} of codes "
                f"identical, {v['last']:.4f} on last frames (other implementations: near-ties may flip)"
            )
        if r["load_s"] is not None and r["impl"] in ("mlx-single", "transformers-single", "moshi"):
            notes.append(f"{r['label']}: model load {r['load_s']:.2f} s (not timed above)")
        if r["child_cpu_s"] is not None:
            launcher = r["launcher_cpu_s"]
            own = f", {launcher:.1f} of them in mlx.launch's own process" if launcher is not None else ""
            notes.append(
                f"{r['label']}: {r['child_cpu_s']:.1f} CPU s in all over {r['timed_s']:.1f} s wall{own}; "
                "wall includes interpreter start, imports, model load, probing and writing Parquet"
            )
    if any(r["impl"] == "cli-launch" for r in results):
        notes.append(
            f"mlx.launch: {args.ranks} ranks with {args.threads} threads each on {os.cpu_count()} cores, stdin "
            "/dev/null; the RSS is the largest single process's (the ranks together hold about that times the ranks)"
        )
    if any(r["impl"] == "moshi" and r["vs_mlx_single"] for r in results):
        notes.append(
            "moshi pads a clip's partial last frame differently from transformers (known: tests/test_parity.py), "
            "so its last-frame codes differ from transformers' and mlx-mimi's"
        )
    return notes


def header(args, results: list[dict], audio_s: float | None) -> None:
    mlx_r = next((r for r in results if r["impl"].startswith("mlx")), None)
    torch_r = next((r for r in results if r["impl"] in TORCH), None)
    print("**Machine:** " + "; ".join(machine_parts(args.threads, pkg("mlx"), mlx_r, torch_r)) + ".")
    total = f", {audio_s / 60:.1f} min in all" if audio_s else ""
    print(
        f"\n**Corpus:** {args.clips} espeak-ng clips of {args.min_seconds:g}-{args.max_seconds:g} s (seed "
        f"{args.seed}{total}), 24 kHz float wav; {args.codebooks} codebooks; random weights. Each configuration ran "
        f"in its own process, one after another, with {args.threads} threads ({', '.join(THREAD_VARS)}; "
        "torch.set_num_threads). In-process rows time reading + encoding after one warm-up clip (model load "
        "excluded); CLI rows time the whole command. Audio h per wall h is the real-time factor."
    )


# -- main -----------------------------------------------------------------------------------------------------
def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0, help="clip i is espeak speech of seed SEED + i")
    ap.add_argument("--codebooks", type=int, default=8)
    ap.add_argument("--batch-seconds", default="30,120,480", help="mlx-batched caps (padded audio per batch)")
    ap.add_argument("--cli-batch-seconds", type=float, default=120, help="--batch-seconds of the CLI rows")
    ap.add_argument("--hf-batch-seconds", type=float, default=120, help="cap of transformers-padded")
    ap.add_argument("--ranks", type=int, default=2, help="mlx.launch -n for cli-launch")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every worker")
    ap.add_argument("--only", default=None, help=f"comma list of: {','.join(CONFIGS)}")
    ap.add_argument("--assets", default=None, help="folder for weights and corpus (reused when present)")
    ap.add_argument("--build-assets", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--impl", choices=CONFIGS, default=None, help=argparse.SUPPRESS)  # worker mode
    ap.add_argument("--cap", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    caps = floats(args.batch_seconds)
    if args.impl:
        worker_main(args)
        return
    if args.build_assets:
        plan_caps = sorted(set(caps) | {args.hf_batch_seconds})
        build_assets(Path(args.build_assets), args.clips, args.min_seconds, args.max_seconds, args.seed, plan_caps)
        return
    if not 0 < args.min_seconds <= args.max_seconds:
        ap.error("need 0 < --min-seconds <= --max-seconds")
    only = args.only.split(",") if args.only else list(CONFIGS)
    if set(only) - set(CONFIGS):
        ap.error(f"--only: unknown {', '.join(sorted(set(only) - set(CONFIGS)))}")

    print(f"Command: `{command_line()}`\n", flush=True)
    env = child_env(args.threads)
    folder = Path(args.assets) if args.assets else Path(tempfile.mkdtemp(prefix="mimi-corpus-"))
    common = ["--assets", str(folder), "--codebooks", str(args.codebooks), "--threads", str(args.threads)]
    plan: list[Worker] = []
    for impl in CONFIGS:
        if impl not in only:
            continue
        if impl == "mlx-batched":
            cap_list = caps
        elif impl.startswith("cli"):
            cap_list = [args.cli_batch_seconds]
        elif impl == "transformers-padded":
            cap_list = [args.hf_batch_seconds]
        else:
            cap_list = [0.0]
        for cap in cap_list:
            title = impl + (f" cap {cap:g} s" if cap else "")
            extra = ["--cap", f"{cap:g}", "--ranks", str(args.ranks)]
            plan.append(Worker(sys.executable, "corpus.py", impl, title, extra, env))

    results: list[dict] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder / "codes", ignore_errors=True)  # codes of an earlier run are no reference
        build = [sys.executable, __file__, "--build-assets", str(folder), "--clips", str(args.clips)]
        build += ["--min-seconds", str(args.min_seconds), "--max-seconds", str(args.max_seconds)]
        build += ["--seed", str(args.seed), "--batch-seconds", args.batch_seconds]
        build += ["--hf-batch-seconds", str(args.hf_batch_seconds)]
        subprocess.run(build, env=env, check=True, stdout=sys.stderr)
        for worker in plan:
            result = worker.run(common)
            if result is not None:
                results.append(result)
    finally:
        if not args.assets:
            shutil.rmtree(folder, ignore_errors=True)

    header(args, results, next((r["audio_s"] for r in results), None))
    if results:
        print_table(results, args)
    print_notes(NOTES + [n for r in results for n in r["notes"]] + notes_for(results, args))


if __name__ == "__main__":
    main()
