"""What quantization costs, for any model: size, load time, identical codes, decode and round-trip SNR.

    python benchmarks/quantization.py                         # random weights built like the tests (needs torch)
    python benchmarks/quantization.py --model kyutai/mimi     # the real checkpoint (run this on your Mac)
    python benchmarks/quantization.py --bits 8 --group-sizes 64 --scopes default

For each setting a quantized converted folder is written (``mimi convert --quantize``) and loaded back. Against
float32, on espeak-ng speech: the identical-code rate per codebook group (semantic, acoustic 2-8, 9-32) of
``encode``; the decode SNR of the float model's codes through the quantized decoder vs the float decoder; and
the round-trip SNR (quantized encode then decode vs float encode then decode). Scopes: ``default`` keeps the
two SEANets float (mlx_mimi.quantize.DEFAULT_KEEP_FLOAT), ``all`` quantizes every layer it can. bfloat16 and
float16 rows give the scale. Random weights are a proxy: they separate codes less than a trained model, and
errors compound differently; the figures that matter are those of the real checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import mlx_mimi  # noqa: E402  (before mlx.core: OpenBLAS)
from mlx_mimi.compare import agreement, chains_of  # noqa: E402
from mlx_mimi.convert import convert  # noqa: E402
from mlx_mimi.quantize import DEFAULT_KEEP_FLOAT  # noqa: E402

SR = 24_000


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10((ref**2).sum() / max(((ref - x) ** 2).sum(), 1e-30)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="hub id, folder or file (default: random weights as the tests)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--bits", default="8,4")
    ap.add_argument("--group-sizes", default="32,64,128")
    ap.add_argument("--scopes", default="default,all")
    args = ap.parse_args()
    import reference

    tmp = Path(tempfile.mkdtemp(prefix="mimi-quant-"))
    source = args.model
    if source is None:
        hf = reference.random_hf_model(reference.speech(44.0, seed=1)[-20 * SR :], seed=0)
        hf.save_pretrained(tmp / "hf")
        source = str(tmp / "hf")
    pcm = reference.speech(args.seconds, seed=5)
    print(f"# {' '.join(sys.argv)}")
    print(f"# model {source}; {args.seconds:g} s of espeak-ng speech; {mlx_mimi.schedule.device_report()}")
    float_dir = convert(source, tmp / "float32")
    f32 = mlx_mimi.load(float_dir)
    codes = np.array(f32.encode(pcm))
    latent = np.array(f32.encode_latent(pcm))
    audio = np.array(f32.decode(codes[:, :8]))
    round_trip = audio.reshape(-1)[: len(pcm)]
    chains = chains_of(f32)
    print(
        "| setting | size MB | load s | semantic | acoustic 2-8 | acoustic 9-32 | decode SNR dB | round-trip SNR dB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    settings = [("float32", {}), ("bfloat16", {"dtype": "bfloat16"}), ("float16", {"dtype": "float16"})]
    for bits in map(int, args.bits.split(",")):
        for group in map(int, args.group_sizes.split(",")):
            for scope in args.scopes.split(","):
                keep = DEFAULT_KEEP_FLOAT if scope == "default" else ()
                name = f"q{bits} g{group}" + (" (SEANets float)" if scope == "default" else " (all)")
                settings.append((name, {"quantize": bits, "group_size": group, "keep_float": keep}))
    for name, options in settings:
        folder = float_dir if name == "float32" else convert(source, tmp / name.replace(" ", "_"), **options)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            model = mlx_mimi.load(folder)
            times.append(time.perf_counter() - start)
        ours = np.array(model.encode(pcm))
        groups = agreement(ours, codes, latent, chains).groups
        decoded = np.array(model.decode(codes[:, :8]))
        rt = np.array(model.decode(ours[:, :8])).reshape(-1)[: len(pcm)]
        size = (folder / "model.safetensors").stat().st_size / 1e6
        print(
            f"| {name} | {size:.0f} | {np.median(times):.3f} | "
            + " | ".join(f"{rate:.3f}" for rate in groups.values())
            + f" | {snr_db(audio, decoded):.1f} | {snr_db(round_trip, rt):.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
