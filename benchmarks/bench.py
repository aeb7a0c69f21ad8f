"""mlx-mimi against the other Mimi implementations: each in its own process, one after another, in one run.

    python benchmarks/bench.py                      # offline RTF (10 s / 60 s, 8 / 32 codebooks), streaming steps
                                                    # (B = 1, 8), load time, peak RSS, OpenBLAS vs bundled BLAS
    python benchmarks/bench.py --quick              # 10 s clip, 2 repeats, 50 streaming frames
    python benchmarks/bench.py --only mlx-mimi,moshi
    python benchmarks/bench.py --anchor-python .venv-anchors/bin/python   # + moshi_mlx and rustymimi
    python benchmarks/bench.py --stream-minutes 60  # + RSS after 1 min vs 60 min of streaming
    python benchmarks/bench.py --rounds 3           # every implementation 3 times, interleaved (noisy machines)
    python benchmarks/bench.py --also-checkout ../base  # + mlx-mimi from another checkout (before/after a change)

The driver builds random non-degenerate weights once (tests/reference.py: the Hugging Face layout, Kyutai's
original file, and mlx-mimi's converted layout) and an espeak-ng speech clip, then runs one worker process per
implementation (worker.py; anchors_venv.py in the anchors' venv, since moshi_mlx pins an older mlx), each with
the same thread count (--threads, default all cores: OMP/OPENBLAS/MKL/RAYON_NUM_THREADS in its environment,
torch.set_num_threads in the torch workers). Nothing is timed in the driver itself. Figures are medians over
--repeats runs after a warm-up; RTF = audio seconds per wall second (higher is faster). With --rounds N the
implementations' workers run N times in turn (A B C A B C ...), so that a slow spell of a shared machine falls
on all of them alike; each figure is then the median over the rounds, shown with its range. The tables go to stdout
as Markdown (progress to stderr). On a Mac the same command measures Metal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from timing import SR, THREAD_VARS  # noqa: E402

IMPLS = ("mlx-mimi", "moshi", "transformers")
ANCHORS = ("moshi_mlx", "rustymimi")
# moshi_mlx decodes at ~0.2x real time on CPU: a 60 s clip would take minutes per timed run.
ANCHOR_MAX_SECONDS = {"moshi_mlx": 10}
ANCHOR_MAX_REPEATS = {"moshi_mlx": 2}
BLAS_CLIP = 10  # seconds, 8 codebooks: the OpenBLAS vs bundled-BLAS comparison


# -- assets (built in a child process: the driver imports neither torch nor mlx) ----------------------------
def build_assets(folder: Path, seconds: int) -> None:
    sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]
    import mlx_mimi  # noqa: F401  (first: OpenBLAS before mlx.core)

    import numpy as np  # isort: skip
    import reference

    from mlx_mimi.convert import convert

    folder.mkdir(parents=True, exist_ok=True)
    speech = reference.speech(max(30, seconds), seed=7)
    np.save(folder / "speech.npy", speech)
    hf = reference.random_hf_model(speech[10 * SR : 30 * SR], seed=0)
    hf.save_pretrained(folder / "hf")
    reference.save_original(hf, folder / "original")
    convert(folder / "hf", folder / "converted")
    (folder / "manifest.json").write_text(json.dumps({"speech_seconds": len(speech) / SR}))


def ensure_assets(folder: Path, seconds: int, env: dict) -> None:
    manifest = folder / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text())["speech_seconds"] >= seconds:
        print(f"# reusing weights and speech in {folder}", file=sys.stderr)
        return
    print(f"# building random weights (HF, Kyutai original, converted) and speech in {folder}", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--build-assets", str(folder), "--seconds", str(seconds)]
    subprocess.run(cmd, env=env, check=True, stdout=sys.stderr)


# -- running workers ---------------------------------------------------------------------------------------
class Worker:
    def __init__(self, python: str, script: str, impl: str, title: str, extra: list[str], env: dict):
        self.python, self.script, self.impl, self.title, self.extra, self.env = python, script, impl, title, extra, env

    def run(self, common: list[str]) -> dict | None:
        """Run to completion (stderr relayed live); the parsed JSON, or None with a note on failure."""
        out = Path(tempfile.mkstemp(suffix=".json")[1])
        cmd = [self.python, str(HERE / self.script), "--impl", self.impl, *common, *self.extra, "--json", str(out)]
        print(f"# {self.title}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        tail: deque[str] = deque(maxlen=5)
        busy0, own0, start = busy_cpu_seconds(), children_cpu_seconds(), time.perf_counter()
        with tempfile.TemporaryFile("w+") as stdout:
            proc = subprocess.Popen(cmd, env=self.env, stdout=stdout, stderr=subprocess.PIPE, text=True)
            for line in proc.stderr:
                sys.stderr.write(line)
                tail.append(line.rstrip())
            proc.wait()
        wall = time.perf_counter() - start
        busy1, own1 = busy_cpu_seconds(), children_cpu_seconds()
        try:
            if proc.returncode == 0 and out.stat().st_size:
                result = json.loads(out.read_text())
                result["title"], result["wall_s"] = self.title, wall
                # CPU time the rest of the machine used while this worker ran, in cores: other processes
                # (another benchmark, a test run) make every figure of this worker slower than it is.
                other = None if busy0 is None else max(0.0, (busy1 - busy0) - (own1 - own0)) / wall
                result["other_cores"] = other
                if other is not None and other > OTHER_LOAD_WARN:
                    NOTES.append(
                        f"{self.title}: other processes kept {other:.2f} cores busy on average while it ran: "
                        "its figures are slower than on an idle machine"
                    )
                return result
        finally:
            out.unlink(missing_ok=True)
        NOTES.append(f"{self.title}: worker failed (exit {proc.returncode}): {' / '.join(tail)[-300:]}")
        return None


NOTES: list[str] = []
OTHER_LOAD_WARN = 0.1  # cores


def merge_rounds(runs: list[dict]) -> dict:
    """One worker's results from several rounds -> one result: each figure the median over the rounds, with
    ``<field>_range`` (min, max) beside it. Figures missing from a round (a failed cell) use the rounds that
    have them."""
    merged = dict(runs[0])
    merged["rounds"] = len(runs)
    merged["wall_s"] = sum(r["wall_s"] for r in runs)
    loads = [r["other_cores"] for r in runs if r.get("other_cores") is not None]
    merged["other_cores"] = max(loads) if loads else None
    for part, key, fields in (
        ("offline", ("seconds", "codebooks"), ("encode_rtf", "decode_rtf", "encode_s", "decode_s")),
        ("stream", ("batch", "step"), ("mean_ms", "p99_ms", "frames_per_s")),
    ):
        groups: dict[tuple, list[dict]] = {}
        for r in runs:
            for row in r.get(part, []):
                groups.setdefault(tuple(row[k] for k in key), []).append(row)
        rows = []
        for same in groups.values():
            row = dict(same[0])
            for field in fields:
                values = [x[field] for x in same]
                row[field] = statistics.median(values)
                row[f"{field}_range"] = (min(values), max(values))
            rows.append(row)
        merged[part] = rows
    return merged


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have used since boot (Linux /proc/stat: all but idle and iowait), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_env(threads: int, **extra: str) -> dict:
    env = dict(os.environ, **{var: str(threads) for var in THREAD_VARS}, **extra)
    env.pop("PYTHONPATH", None)  # the anchors venv must not see this interpreter's packages
    return env


# -- tables ------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def ratio_cell(ours: float, theirs: float, who: str = "") -> str:
    r = ours / theirs
    where = f" ({who})" if who else ""
    return f"{r:.2f}x ahead{where}" if r >= 1 else f"**{r:.2f}x behind**{where}"


def command_line() -> str:
    """The command this run was started with; the interpreter as ``python`` where that is what PATH finds."""
    argv = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    on_path = shutil.which("python")
    if on_path and os.path.realpath(on_path) == os.path.realpath(sys.executable):
        argv[0] = "python"
    return shlex.join(argv)


def _rtf_cell(row: dict, field: str) -> str:
    """``12.34x``, or with rounds ``12.34x (11.9-12.8)``: the median and the range over the rounds."""
    cell = f"{row[field]:.2f}x"
    if f"{field}_range" in row:
        low, high = row[f"{field}_range"]
        cell += f" ({low:.1f}-{high:.1f})"
    return cell


def print_offline(results: list[dict]) -> None:
    rows = {(r["label"], o["seconds"], o["codebooks"]): o for r in results for o in r["offline"]}
    if not rows:
        return
    print("\n### Offline RTF (audio seconds per wall second, median; higher is faster)\n")
    print("| implementation | clip | codebooks | encode RTF | decode RTF |")
    print("|---|---|---|---|---|")
    labels = [r["label"] for r in results if r["offline"]]
    cells = sorted({key[1:] for key in rows})
    for seconds, k in cells:
        for label in labels:
            o = rows.get((label, seconds, k))
            if o:
                name = f"**{label}**" if label.startswith("mlx-mimi") else label
                enc, dec = _rtf_cell(o, "encode_rtf"), _rtf_cell(o, "decode_rtf")
                print(f"| {name} | {seconds} s | {k} | {enc} | {dec} |")
    ours = next((r["label"] for r in results if r["impl"] == "mlx-mimi" and r["offline"]), None)
    others = [label for label in labels if label != ours]
    if ours is None or not others:
        return
    print(f"\n### {ours} relative to the others (ratio of RTF: > 1 = {ours} faster, < 1 = behind)\n")
    print("| clip | codebooks | encode vs moshi | decode vs moshi | encode vs best other | decode vs best other |")
    print("|---|---|---|---|---|---|")
    moshi = next((r["label"] for r in results if r["impl"] == "moshi"), None)
    for seconds, k in cells:
        me = rows.get((ours, seconds, k))
        if me is None:
            continue
        line = [f"{seconds} s", str(k)]
        for field in ("encode_rtf", "decode_rtf"):
            ref = rows.get((moshi, seconds, k))
            line.append(ratio_cell(me[field], ref[field]) if ref else "n/a")
        for field in ("encode_rtf", "decode_rtf"):
            cands = [(rows[(label, seconds, k)][field], label) for label in others if (label, seconds, k) in rows]
            if cands:
                best, who = max(cands)
                line.append(ratio_cell(me[field], best, who))
            else:
                line.append("n/a")
        print("| " + " | ".join(line) + " |")


def print_stream(results: list[dict], frames: int) -> None:
    rows = [(r["label"], s) for r in results for s in r["stream"]]
    if not rows:
        return
    print(
        f"\n### Streaming step latency (one 80 ms frame, 8 codebooks; {frames} timed steps after 3 warm-up; "
        "lower is faster)\n"
    )
    print("| implementation | B | step | mean ms | p99 ms | frames/s (all streams) |")
    print("|---|---|---|---|---|---|")
    for label, s in rows:
        name = f"**{label}**" if label.startswith("mlx-mimi") else label
        mean = f"{s['mean_ms']:.2f}"
        if "mean_ms_range" in s:
            mean += " ({:.1f}-{:.1f})".format(*s["mean_ms_range"])
        print(f"| {name} | {s['batch']} | {s['step']} | {mean} | {s['p99_ms']:.2f} | {s['frames_per_s']:.0f} |")
    ours = next((r for r in results if r["impl"] == "mlx-mimi" and r["stream"]), None)
    moshi = next((r for r in results if r["impl"] == "moshi" and r["stream"]), None)
    if ours and moshi:
        theirs = {(s["batch"], s["step"]): s for s in moshi["stream"]}
        print(f"\n### {ours['label']} step speed relative to moshi (moshi ms / {ours['label']} ms: > 1 = faster)\n")
        print("| B | step | mean | p99 |")
        print("|---|---|---|---|")
        for s in ours["stream"]:
            t = theirs.get((s["batch"], s["step"]))
            if t:
                mean = ratio_cell(t["mean_ms"], s["mean_ms"])
                p99 = ratio_cell(t["p99_ms"], s["p99_ms"])
                print(f"| {s['batch']} | {s['step']} | {mean} | {p99} |")


def print_load(result: dict | None) -> None:
    if not result or not result["load"]:
        return
    print(f"\n### {result['label']} load time (median)\n")
    print("| layout | seconds | speed vs HF layout |")
    print("|---|---|---|")
    hf = next(r["seconds"] for r in result["load"] if r["layout"] == "HF layout")
    for r in result["load"]:
        print(f"| {r['layout']} | {r['seconds']:.3f} | {hf / r['seconds']:.1f}x |")


def describe_work(r: dict) -> str:
    parts = []
    if r["offline"]:
        secs = sorted({o["seconds"] for o in r["offline"]})
        cbs = sorted({o["codebooks"] for o in r["offline"]})
        parts.append(f"offline {', '.join(f'{s} s' for s in secs)} x {', '.join(map(str, cbs))} codebooks")
    if r["stream"]:
        parts.append("streaming B = " + ", ".join(str(b) for b in sorted({s["batch"] for s in r["stream"]})))
    if r["load"]:
        parts.append("3 layouts loaded repeatedly")
    if r["memory"]:
        parts.append(f"streamed {max(m['minutes'] for m in r['memory']):g} min")
    return "; ".join(parts) or "load only"


def print_processes(results: list[dict]) -> None:
    print("\n### Worker processes (one per implementation and task)\n")
    print("| worker | load once (s) | peak RSS (MB) | wall (s) | other processes' CPU (cores) | work |")
    print("|---|---|---|---|---|---|")
    for r in results:
        load = f"{r['load_once_s']:.2f}" if r["load_once_s"] is not None else "-"
        other = f"{r['other_cores']:.2f}" if r["other_cores"] is not None else "n/a"
        print(f"| {r['title']} | {load} | {r['peak_rss_mb']:.0f} | {r['wall_s']:.0f} | {other} | {describe_work(r)} |")


def print_blas(fast: dict | None, slow: dict | None) -> None:
    if not fast or not slow or not slow["offline"]:
        return
    a = next((o for o in fast["offline"] if (o["seconds"], o["codebooks"]) == (BLAS_CLIP, 8)), None)
    b = slow["offline"][0]
    if a is None:
        return
    print(f"\n### mlx-mimi with OpenBLAS vs the mlx wheel's bundled BLAS ({BLAS_CLIP} s clip, 8 codebooks)\n")
    print("| BLAS | encode RTF | decode RTF |")
    print("|---|---|---|")
    print(f"| {fast['blas']} | {a['encode_rtf']:.2f}x | {a['decode_rtf']:.2f}x |")
    print(f"| {slow['blas']} | {b['encode_rtf']:.2f}x | {b['decode_rtf']:.2f}x |")
    print(f"| speed-up | {a['encode_rtf'] / b['encode_rtf']:.1f}x | {a['decode_rtf'] / b['decode_rtf']:.1f}x |")


def print_memory(result: dict | None) -> None:
    if not result or not result["memory"]:
        return
    print("\n### mlx-mimi memory while streaming (encode + decode, B = 1, 8 codebooks, 2 s chunks)\n")
    print("| streamed | process RSS (MB) | stream state (bytes) |")
    print("|---|---|---|")
    for m in result["memory"]:
        print(f"| {m['minutes']:g} min | {m['rss_mb']:.0f} | {m['state_bytes']} |")


def machine_parts(threads: int, mlx: str, mlx_result: dict | None, torch_result: dict | None) -> list[str]:
    """The machine and package versions every benchmark table starts with (BLAS as the workers reported it)."""
    return [
        f"{cpu_model()} ({platform.machine()}, {platform.system()} {platform.release()})",
        f"{os.cpu_count()} cores",
        f"{threads} threads per worker",
        f"Python {platform.python_version()}",
        f"mlx {mlx}" + (f", BLAS: {mlx_result['blas']}" if mlx_result else ""),
        f"torch {pkg('torch')}" + (f" ({torch_result['blas']})" if torch_result else ""),
        f"moshi {pkg('moshi')}",
        f"transformers {pkg('transformers')}",
    ]


def print_notes(notes: list[str]) -> None:
    if notes:
        print("\nNotes:\n")
        for note in notes:
            print(f"- {note}")


def header(args, results: list[dict], repeats: int) -> None:
    ours = next((r for r in results if r["impl"] == "mlx-mimi"), None)
    mlx = ours["versions"]["mlx"] if ours else pkg("mlx")  # the anchors' venv has its own mlx, named below
    torch_r = next((r for r in results if r["impl"] in ("moshi", "transformers")), None)
    parts = machine_parts(args.threads, mlx, ours, torch_r)
    for r in results:
        if r["impl"] in ANCHORS:
            extra = f", mlx {r['versions']['mlx']}" if "mlx" in r["versions"] else ""
            parts.append(f"{r['label']} (own venv{extra})")
    print("**Machine:** " + "; ".join(parts) + ".")
    print(
        f"\nEach implementation ran in its own process, one after another, with {args.threads} threads "
        f"({', '.join(THREAD_VARS)}; torch.set_num_threads), on the same random weights and the same espeak-ng "
        f"speech clip; offline figures are medians of {repeats} runs after a warm-up, float32 unless labelled."
    )
    if args.rounds > 1:
        print(
            f"The implementations ran {args.rounds} times in turn (A B C A B C ...); each figure is the median of "
            "the rounds' figures, with their range (min-max) in brackets."
        )


# -- main --------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 s clip, 8 and 32 codebooks, 2 repeats, 50 frames")
    ap.add_argument("--only", default=None, help=f"comma list of: {','.join(IMPLS + ANCHORS)}")
    ap.add_argument("--seconds", default=None, help="clip lengths, comma list (default 10,60; --quick 10)")
    ap.add_argument("--codebooks", default="8,32", help="comma list")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per figure (default 5; --quick 2)")
    ap.add_argument("--frames", type=int, default=None, help="streaming steps timed (default 200; --quick 50)")
    ap.add_argument(
        "--rounds", type=int, default=1, help="run the implementations' workers this many times in turn (median)"
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every worker")
    ap.add_argument(
        "--variants",
        default="float32",
        help="mlx-mimi variants, each in its own process: float32, bfloat16, float16, q8, q4 (quantized on load,"
        " SEANets float), q8-all, q4-all; the torch references stay float32",
    )
    ap.add_argument("--anchor-python", default=None, help="python of a venv with moshi_mlx and rustymimi")
    ap.add_argument(
        "--also-checkout",
        default=None,
        help="another mlx-mimi checkout (a folder holding mlx_mimi/), measured in the same rounds as 'mlx-mimi @ it'",
    )
    ap.add_argument("--stream-minutes", type=float, default=0, help="also: mlx-mimi RSS after N minutes streamed")
    ap.add_argument("--memory-only", action="store_true", help="only the --stream-minutes measurement")
    ap.add_argument("--no-blas-compare", action="store_true", help="skip mlx-mimi with the bundled BLAS")
    ap.add_argument("--assets", default=None, help="folder for the weights and speech (reused when present)")
    ap.add_argument("--build-assets", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    seconds = args.seconds or ("10" if args.quick else "10,60")
    repeats = args.repeats or (2 if args.quick else 5)
    frames = args.frames if args.frames is not None else (50 if args.quick else 200)
    max_seconds = max(int(s) for s in seconds.split(","))
    if args.build_assets:
        build_assets(Path(args.build_assets), max_seconds)
        return

    print(f"Command: `{command_line()}`\n", flush=True)
    only = args.only.split(",") if args.only else list(IMPLS + ANCHORS)
    unknown = set(only) - set(IMPLS + ANCHORS)
    if unknown:
        ap.error(f"--only: unknown {', '.join(sorted(unknown))}")
    env = child_env(args.threads)
    folder = Path(args.assets) if args.assets else Path(tempfile.mkdtemp(prefix="mimi-bench-"))
    common = ["--weights", str(folder), "--audio", str(folder / "speech.npy"), "--threads", str(args.threads)]
    common += ["--codebooks", args.codebooks, "--repeats", str(repeats), "--frames", str(frames)]

    def py_worker(impl, title, parts, extra=(), python=sys.executable, script="worker.py", worker_env=env):
        return Worker(python, script, impl, title, ["--parts", parts, *extra], worker_env)

    plan: list[tuple[str, Worker]] = []  # (role, worker)
    if not args.memory_only:
        for impl in IMPLS:
            if impl not in only:
                continue
            for variant in args.variants.split(",") if impl == "mlx-mimi" else ["float32"]:
                title = impl if variant == "float32" else f"{impl} {variant}"
                extra = ["--seconds", seconds] + (["--dtype", variant] if impl == "mlx-mimi" else [])
                plan.append(("main", py_worker(impl, title, "offline,stream", extra)))
        if args.also_checkout and "mlx-mimi" in only:
            other = Path(args.also_checkout).resolve()
            other_env = {**env, "PYTHONPATH": str(other)}
            extra = ["--seconds", seconds, "--dtype", "float32", "--label-suffix", f"@ {other.name}"]
            title = f"mlx-mimi @ {other.name}"
            plan.append(("main", py_worker("mlx-mimi", title, "offline,stream", extra, worker_env=other_env)))
        for impl in ANCHORS:
            if impl not in only:
                continue
            if not args.anchor_python:
                NOTES.append(f"{impl}: skipped (needs its own venv: pass --anchor-python VENV/bin/python)")
                continue
            cap = ANCHOR_MAX_SECONDS.get(impl)
            secs = ",".join(s for s in seconds.split(",") if cap is None or int(s) <= cap) or str(cap)
            if secs != seconds:
                NOTES.append(f"{impl}: clips of {secs} s only (it decodes far slower than real time on CPU)")
            reps = min(repeats, ANCHOR_MAX_REPEATS.get(impl, repeats))
            if reps != repeats:
                NOTES.append(f"{impl}: medians of {reps} runs, not {repeats}")
            extra = ["--seconds", secs, "--repeats", str(reps), "--batches", "1"]  # the anchors stream at B = 1
            plan.append(("main", py_worker(impl, impl, "offline,stream", extra, args.anchor_python, "anchors_venv.py")))
        if "mlx-mimi" in only:
            plan.append(("load", py_worker("mlx-mimi", "mlx-mimi (load time)", "load", ["--dtype", "float32"])))
            if not args.quick and not args.no_blas_compare and platform.system() == "Linux":
                extra = ["--seconds", str(BLAS_CLIP), "--codebooks", "8", "--repeats", str(min(repeats, 2))]
                off = child_env(args.threads, MLX_MIMI_BLAS="off")
                plan.append(
                    ("blas", py_worker("mlx-mimi", "mlx-mimi (bundled BLAS)", "offline", extra, worker_env=off))
                )
    if args.stream_minutes or args.memory_only:
        extra = ["--stream-minutes", str(args.stream_minutes or 60), "--dtype", "float32"]
        plan.append(("memory", py_worker("mlx-mimi", "mlx-mimi (memory while streaming)", "memory", extra)))

    done: dict[str, list[dict]] = {}
    try:
        ensure_assets(folder, max_seconds, env)
        main_workers = [w for role, w in plan if role == "main"]
        per_worker: dict[int, list[dict]] = {}
        for round_no in range(args.rounds):  # A B C, A B C, ...: a slow spell hits every implementation
            if args.rounds > 1:
                print(f"# round {round_no + 1} of {args.rounds}", file=sys.stderr, flush=True)
            for i, worker in enumerate(main_workers):
                result = worker.run(common)
                if result is not None:
                    per_worker.setdefault(i, []).append(result)
        for i in range(len(main_workers)):
            if i in per_worker:
                runs = per_worker[i]
                done.setdefault("main", []).append(merge_rounds(runs) if args.rounds > 1 else runs[0])
        for role, worker in plan:
            if role == "main":
                continue
            result = worker.run(common)
            if result is not None:
                done.setdefault(role, []).append(result)
    finally:
        if not args.assets:
            shutil.rmtree(folder, ignore_errors=True)
    everything = [r for rs in done.values() for r in rs]
    main_results = done.get("main", [])
    ours = next((r for r in main_results if r["impl"] == "mlx-mimi"), None)

    header(args, everything, repeats)
    print_offline(main_results)
    print_stream(main_results, frames)
    print_load(next(iter(done.get("load", [])), None))
    print_blas(ours, next(iter(done.get("blas", [])), None))
    print_memory(next(iter(done.get("memory", [])), None))
    if everything:
        print_processes(everything)
    print_notes(NOTES + [n for r in everything for n in r["notes"]])


if __name__ == "__main__":
    main()
