"""Adapters for moshi_mlx and rustymimi, run from their own venv (moshi_mlx pins mlx 0.26).

    python -m venv .venv-anchors && .venv-anchors/bin/pip install moshi_mlx rustymimi "mlx[cpu]"
    .venv-anchors/bin/python benchmarks/anchors_venv.py --weights tokenizer-...safetensors --seconds 10

bench.py runs this itself with ``--anchor-python .venv-anchors/bin/python`` and prints its rows in its
tables. Prints Markdown rows: offline RTF and streaming step latency, same format as bench.py.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from pathlib import Path

OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"
if os.path.exists(OPENBLAS) and os.environ.get("MLX_MIMI_BLAS", "auto") != "off":
    ctypes.CDLL(OPENBLAS, mode=ctypes.RTLD_GLOBAL)  # the same BLAS as mlx-mimi, before mlx.core loads

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from timing import median_time, step_latencies  # noqa: E402

FRAME = 1920


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


def moshi_mlx_impl(weights, k):
    import mlx.core as mx
    from moshi_mlx.models import mimi

    model = mimi.Mimi(mimi.mimi_202407(k))
    model.load_pytorch_weights(_first_codebooks(weights, k), strict=True)

    def encode(pcm):
        out = model.encode(mx.array(pcm)[None, None])
        mx.eval(out)
        return np.array(out)

    def decode(codes):
        out = model.decode(mx.array(codes))
        mx.eval(out)
        return out

    def enc_step(x):
        out = model.encode_step(mx.array(x)[None, None])
        mx.eval(out)
        return out

    def dec_step(c):
        out = model.decode_step(mx.array(c))
        mx.eval(out)
        return out

    return encode, decode, enc_step, dec_step, model.reset_all


def rustymimi_impl(weights, k):
    import rustymimi

    tok = rustymimi.Tokenizer(weights, num_codebooks=k)
    return (
        lambda pcm: tok.encode(pcm[None, None]),
        lambda codes: tok.decode(codes),
        lambda x: tok.encode_step(x[None, None]),
        lambda c: tok.decode_step(c),
        tok.reset,
    )


def stream_rows(name, impl, n, rng):
    _, _, enc_step, dec_step, reset = impl
    frames = [(rng.standard_normal(FRAME) * 0.1).astype(np.float32) for _ in range(n + 3)]
    codes = [rng.integers(0, 2048, (1, 8, 1)).astype(np.uint32) for _ in range(n + 3)]
    for label, fn in (
        ("encode step", lambda i: enc_step(frames[i])),
        ("decode step", lambda i: dec_step(codes[i])),
        ("round trip", lambda i: dec_step(np.asarray(enc_step(frames[i])).astype(np.uint32))),
    ):
        reset()
        mean, p99, fps = step_latencies(fn, n)
        print(f"STREAM | {name} | 1 | {label} | {mean:.2f} | {p99:.2f} | {fps:.0f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--seconds", default="10")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frames", type=int, default=100)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for name, make in (("moshi_mlx", moshi_mlx_impl), ("rustymimi", rustymimi_impl)):
        try:
            for seconds in [int(s) for s in args.seconds.split(",")]:
                pcm = (rng.standard_normal(seconds * 24_000) * 0.1).astype(np.float32)
                for k in (8, 32):
                    encode, decode, *_ = make(args.weights, k)
                    codes = np.asarray(encode(pcm)).astype(np.uint32)
                    te = median_time(lambda encode=encode, pcm=pcm: encode(pcm), args.repeats)
                    td = median_time(lambda decode=decode, codes=codes: decode(codes), args.repeats)
                    print(f"OFFLINE | {name} | {seconds} s | {k} | {seconds / te:.1f}x | {seconds / td:.1f}x |")
            stream_rows(name, make(args.weights, 8), args.frames, rng)
        except Exception as exc:  # report and go on with the other anchor
            print(f"# {name}: failed ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})")


if __name__ == "__main__":
    main()
