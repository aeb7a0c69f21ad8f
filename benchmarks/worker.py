"""One Mimi implementation, timed alone in this process. bench.py runs one worker per implementation, one
after another, with the same thread settings; each prints one JSON object (the last line of stdout).

    python benchmarks/worker.py --impl mlx-mimi --weights DIR --audio DIR/speech.npy --seconds 10,60 \\
        --codebooks 8,32 --repeats 5 --frames 200 --threads 2 [--dtype float32] [--parts offline,stream]

DIR is the folder bench.py builds (hf/, original/, converted/, speech.npy). The mlx-mimi worker imports
mlx_mimi before anything imports mlx.core (that is how MLX gets OpenBLAS); the torch workers never import mlx.
"""

from __future__ import annotations

import sys
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # reference.py: moshi's own loader
sys.path.insert(0, str(HERE.parent))  # this checkout's mlx_mimi, installed or not

from timing import (  # noqa: E402  (NumPy-free at import)
    FRAME,
    current_rss_mb,
    emit,
    ints,
    median_time,
    new_result,
    offline_rows,
    pin_threads,
    stream_inputs,
    stream_row,
    worker_parser,
)

IMPLS = ("mlx-mimi", "moshi", "transformers")
STEPS = ("encode step", "decode step", "round trip")
STREAM_CODEBOOKS = 8


def original_file(weights: Path) -> Path:
    return next((weights / "original").glob("*.safetensors"))


# -- mlx-mimi -----------------------------------------------------------------------------------------------
def run_mlx_mimi(args, weights: Path) -> dict:
    import mlx_mimi  # first: gives MLX OpenBLAS before mlx.core is loaded

    import mlx.core as mx  # isort: skip
    import numpy as np

    parts = set(args.parts.split(","))
    label = "mlx-mimi" if args.dtype == "float32" else f"mlx-mimi {args.dtype}"
    label = f"{label} {args.label_suffix}".strip()
    result = new_result("mlx-mimi", label, args, {"mlx": mx.__version__, "mlx-mimi": mlx_mimi.__version__})
    layouts = {
        "HF layout": weights / "hf",
        "Kyutai original": original_file(weights),
        "converted": weights / "converted",
    }
    if "load" in parts:
        for name, path in layouts.items():
            print(f"  {label}: load {name}", file=sys.stderr, flush=True)
            t = median_time(lambda p=path: mlx_mimi.load(p, dtype=args.dtype), args.repeats)
            result["load"].append({"layout": name, "seconds": t})
    result["blas"] = mlx_mimi.backend.blas_report()
    if not parts & {"offline", "stream", "memory"}:
        return result

    start = time.perf_counter()
    model = load_variant(mlx_mimi, layouts["converted"], args.dtype)
    result["load_once_s"] = time.perf_counter() - start
    if "offline" in parts:
        offline_rows(
            result,
            lambda pcm, k: np.array(model.encode(pcm, num_codebooks=k)),
            lambda codes: np.array(model.decode(codes)),
            args.audio,
            ints(args.seconds),
            ints(args.codebooks),
            args.repeats,
        )
    if "stream" in parts and args.frames > 0:
        k = STREAM_CODEBOOKS
        for batch in ints(args.batches):
            pcm, codes = stream_inputs(batch, k, args.frames)
            for name in STEPS:
                print(f"  {label}: streaming B={batch} {name}", file=sys.stderr, flush=True)
                enc = model.stream_encoder(batch_size=batch, num_codebooks=k)
                dec = model.stream_decoder(batch_size=batch)
                enc.warmup()
                dec.warmup(k)
                step = {  # steps return lazy arrays: np.array forces the work into the timing
                    "encode step": lambda i, enc=enc, pcm=pcm: np.array(enc.step(pcm[i])),
                    "decode step": lambda i, dec=dec, codes=codes: np.array(dec.step(codes[i])),
                    "round trip": lambda i, enc=enc, dec=dec, pcm=pcm: np.array(dec.step(enc.step(pcm[i]))),
                }[name]
                stream_row(result, batch, k, name, step, args.frames)
    if "memory" in parts:
        stream_memory(model, args.stream_minutes, result)
    return result


def load_variant(mlx_mimi, path: Path, variant: str):
    """float32 / bfloat16 / float16, or q8, q4 (quantized on load, SEANets float), q8-all, q4-all."""
    if variant.startswith("q"):
        bits, _, scope = variant[1:].partition("-")
        keep = () if scope == "all" else mlx_mimi.quantize.DEFAULT_KEEP_FLOAT
        return mlx_mimi.load(path, quantize=int(bits), keep_float=keep)
    return mlx_mimi.load(path, dtype=variant)


def stream_memory(model, minutes: float, result: dict) -> None:
    """Process RSS and stream state after 1 minute and after ``minutes`` of streamed audio (encode + decode,
    B = 1, 8 codebooks, 2 s chunks)."""
    import numpy as np

    enc, dec = model.stream_encoder(num_codebooks=STREAM_CODEBOOKS), model.stream_decoder()
    chunk = (np.random.default_rng(1).standard_normal(FRAME * 25) * 0.1).astype(np.float32)  # 2 s
    marks = sorted({1.0, minutes})
    done = 0.0
    while marks:
        np.array(dec.step(enc.step(chunk)))
        done += 2 / 60
        if done >= marks[0] - 1e-9:
            row = {
                "minutes": marks.pop(0),
                "rss_mb": current_rss_mb(),
                "state_bytes": enc.state_bytes + dec.state_bytes,
            }
            print(f"  mlx-mimi: streamed {row['minutes']:g} min, RSS {row['rss_mb']:.0f} MB", file=sys.stderr)
            result["memory"].append(row)


# -- PyTorch: Kyutai's moshi and transformers' MimiModel ----------------------------------------------------
def torch_blas(torch) -> str:
    """The BLAS torch was built with, its thread count and the CPU kernels it picked."""
    import re

    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return (
        f"torch BLAS {blas.group(1) if blas else '?'}, {torch.get_num_threads()} threads, "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )


def run_torch(args, weights: Path) -> dict:
    # transformers imports mlx.core to test for MLX arrays where mlx is installed: hide it while transformers
    # decides. Only during the imports and the load, as einops would import it where "mlx" is in sys.modules.
    sys.modules["mlx"] = None
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    if args.dtype != "float32":
        raise SystemExit(f"--dtype {args.dtype}: the PyTorch workers run float32 only")
    parts = set(args.parts.split(","))
    if args.impl == "moshi":
        import reference

        label, versions = "moshi (PyTorch)", {"torch": torch.__version__, "moshi": version("moshi")}
        start = time.perf_counter()
        model = reference.moshi_model(original_file(weights))
    else:
        from transformers import MimiModel

        label, versions = (
            "transformers (PyTorch)",
            {"torch": torch.__version__, "transformers": version("transformers")},
        )
        start = time.perf_counter()
        model = MimiModel.from_pretrained(weights / "hf").eval()
    load_s = time.perf_counter() - start
    del sys.modules["mlx"]
    result = new_result(args.impl, label, args, versions)
    result["load_once_s"] = load_s
    result["blas"] = torch_blas(torch)
    result["versions"]["torch_threads"] = torch.get_num_threads()

    def encode(pcm, k):
        x = torch.from_numpy(pcm)[None, None]
        if args.impl == "transformers":
            return model.encode(x, num_quantizers=k).audio_codes.numpy()
        model.set_num_codebooks(k)
        return model.encode(x).numpy()

    def decode(codes):
        c = torch.from_numpy(codes.astype(np.int64))
        if args.impl == "transformers":
            return model.decode(c).audio_values.numpy()
        model.set_num_codebooks(codes.shape[1])
        return model.decode(c).numpy()

    if "offline" in parts:
        offline_rows(result, encode, decode, args.audio, ints(args.seconds), ints(args.codebooks), args.repeats)
    if "stream" in parts and args.frames > 0:
        if args.impl == "transformers":
            result["notes"].append("transformers: MimiModel has no frame-by-frame streaming API; no step latency")
        else:
            k = STREAM_CODEBOOKS
            model.set_num_codebooks(k)
            for batch in ints(args.batches):
                pcm, codes = stream_inputs(batch, k, args.frames)
                pcm = [torch.from_numpy(x[:, None]) for x in pcm]
                codes = [torch.from_numpy(c) for c in codes]
                steps = {
                    "encode step": lambda i, pcm=pcm: model.encode(pcm[i]),
                    "decode step": lambda i, codes=codes: model.decode(codes[i]),
                    "round trip": lambda i, pcm=pcm: model.decode(model.encode(pcm[i])),
                }
                for name, step in steps.items():
                    print(f"  {label}: streaming B={batch} {name}", file=sys.stderr, flush=True)
                    with model.streaming(batch):  # a fresh stream per measurement, like mlx-mimi's
                        stream_row(result, batch, k, name, step, args.frames)
    return result


def main() -> None:
    args = worker_parser(IMPLS).parse_args()
    pin_threads(args.threads)  # before any BLAS / OpenMP library loads
    weights = Path(args.weights)
    result = run_mlx_mimi(args, weights) if args.impl == "mlx-mimi" else run_torch(args, weights)
    if args.impl != "mlx-mimi" and "mlx" in sys.modules:
        raise SystemExit(f"{args.impl}: mlx was imported in this torch worker; its figures are not clean")
    emit(result, args.json)


if __name__ == "__main__":
    main()
