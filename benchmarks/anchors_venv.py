"""Worker for moshi_mlx and rustymimi, run from their own venv (moshi_mlx pins an older mlx):

    python -m venv .venv-anchors && .venv-anchors/bin/pip install moshi_mlx rustymimi "mlx[cpu]"
    python benchmarks/bench.py --anchor-python .venv-anchors/bin/python

bench.py runs it once per implementation, like worker.py, with the same command line and JSON schema:

    .venv-anchors/bin/python benchmarks/anchors_venv.py --impl rustymimi --weights DIR --audio DIR/speech.npy
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import (  # noqa: E402
    emit,
    ints,
    new_result,
    offline_rows,
    pin_threads,
    stream_inputs,
    stream_row,
    worker_parser,
)

IMPLS = ("moshi_mlx", "rustymimi")
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"
STREAM_CODEBOOKS = 8


def preload_openblas() -> str:
    """The same BLAS as mlx-mimi, loaded before mlx.core so libmlx binds its cblas_* calls to it."""
    if os.path.exists(OPENBLAS) and os.environ.get("MLX_MIMI_BLAS", "auto") != "off":
        ctypes.CDLL(OPENBLAS, mode=ctypes.RTLD_GLOBAL)
        return f"OpenBLAS ({OPENBLAS}, preloaded before mlx.core)"
    return "the mlx wheel's bundled BLAS"


def _first_codebooks(weights: str, k: int) -> str:
    """moshi_mlx cannot load a file with more codebooks than its model: write a copy with the first k."""
    import re
    import tempfile

    import mlx.core as mx

    if k == 32:
        return weights
    keep = {}
    for name, value in mx.load(weights).items():
        hit = re.match(r"quantizer\.rvq_rest\.vq\.layers\.(\d+)\.", name)
        if hit is None or int(hit.group(1)) < k - 1:
            keep[name] = value
    path = os.path.join(tempfile.mkdtemp(), f"mimi-{k}.safetensors")
    mx.save_safetensors(path, keep)
    return path


def moshi_mlx_impl(weights: str, k: int):
    """(encode, decode, encode_step, decode_step, reset) of moshi_mlx's Mimi with k codebooks."""
    import mlx.core as mx
    import numpy as np
    from moshi_mlx.models import mimi

    model = mimi.Mimi(mimi.mimi_202407(k))
    model.load_pytorch_weights(_first_codebooks(weights, k), strict=True)

    def run(fn, x):
        out = fn(mx.array(x))
        mx.eval(out)
        return np.array(out)

    return (
        lambda pcm: run(model.encode, pcm[None, None]),
        lambda codes: run(model.decode, codes),
        lambda x: run(model.encode_step, x[:, None]),
        lambda c: run(model.decode_step, c),
        model.reset_all,
    )


def rustymimi_impl(weights: str, k: int):
    import rustymimi

    tok = rustymimi.Tokenizer(weights, num_codebooks=k)
    return (
        lambda pcm: tok.encode(pcm[None, None]),
        lambda codes: tok.decode(codes),
        lambda x: tok.encode_step(x[:, None]),
        lambda c: tok.decode_step(c),
        tok.reset,
    )


def main() -> None:
    args = worker_parser(IMPLS).parse_args()
    pin_threads(args.threads)
    blas = preload_openblas()
    import numpy as np

    weights = str(next((Path(args.weights) / "original").glob("*.safetensors")))
    make = moshi_mlx_impl if args.impl == "moshi_mlx" else rustymimi_impl
    if args.impl == "moshi_mlx":
        import mlx.core as mx

        versions = {"moshi_mlx": version("moshi_mlx"), "mlx": mx.__version__}
    else:
        versions = {"rustymimi": version("rustymimi")}
    result = new_result(args.impl, f"{args.impl} {versions[args.impl]}", args, versions)
    result["blas"] = blas if args.impl == "moshi_mlx" else "candle (Rust), RAYON_NUM_THREADS"
    parts = set(args.parts.split(","))
    if "offline" in parts:
        for k in ints(args.codebooks):  # one model per codebook count, one at a time
            start = time.perf_counter()
            impl = make(weights, k)
            encode, decode = impl[0], impl[1]
            result["load_once_s"] = result["load_once_s"] or time.perf_counter() - start
            offline_rows(
                result,
                lambda pcm, _k, encode=encode: encode(pcm),
                lambda codes, decode=decode: decode(np.asarray(codes).astype(np.uint32)),
                args.audio,
                ints(args.seconds),
                [k],
                args.repeats,
            )
            del impl, encode, decode  # before the next model is built
        result["offline"].sort(key=lambda r: (r["seconds"], r["codebooks"]))
    if "stream" in parts and args.frames > 0:
        k = STREAM_CODEBOOKS
        _, _, enc_step, dec_step, reset = make(weights, k)
        for batch in ints(args.batches):
            pcm, codes = stream_inputs(batch, k, args.frames)
            codes = [c.astype(np.uint32) for c in codes]
            steps = {
                "encode step": lambda i, pcm=pcm: enc_step(pcm[i]),
                "decode step": lambda i, codes=codes: dec_step(codes[i]),
                "round trip": lambda i, pcm=pcm: dec_step(np.asarray(enc_step(pcm[i])).astype(np.uint32)),
            }
            for name, step in steps.items():
                print(f"  {args.impl}: streaming B={batch} {name}", file=sys.stderr, flush=True)
                try:
                    reset()
                    stream_row(result, batch, k, name, step, args.frames)
                except Exception as exc:  # e.g. a streaming API that only takes one stream
                    msg = str(exc).splitlines()[0][:100] if str(exc) else ""
                    result["notes"].append(
                        f"{args.impl}: streaming B={batch} {name} failed: {type(exc).__name__} {msg}"
                    )
                    break
    emit(result, args.json)


if __name__ == "__main__":
    main()
