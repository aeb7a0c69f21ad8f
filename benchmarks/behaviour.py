"""Before/after a refactor: every output mlx-mimi produces, saved, then compared bit for bit.

    python benchmarks/behaviour.py snapshot before/            # builds fixtures/ once (kept), writes before/
    git checkout <other> && python benchmarks/behaviour.py snapshot after/ --fixtures before/fixtures
    python benchmarks/behaviour.py compare before/ after/      # exit 1 on any difference

Covers, on espeak-ng speech through random weights saved as files (so both sides load the same bytes): Mimi
(HF and converted layouts; encode at 8 and 32 codebooks, latents, batches of mixed lengths, decode, streams of
batch 1 and 2 in odd chunk sizes), the 9-codebook variant, a quantized model (8 bits), JODIO (a small config,
dump and converted layouts), and the CLI (encode / decode / roundtrip files, `mimi info`, error lines), whose
files and text must be identical too. "Identical" holds on one machine: run both snapshots on the same one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import mlx_mimi  # noqa: E402, I001  (before mlx.core: OpenBLAS)
import mlx.core as mx  # noqa: E402  # isort: skip
from mlx.utils import tree_flatten, tree_unflatten  # noqa: E402  # isort: skip

SR = 24_000


def build_fixtures(folder: Path) -> None:
    """Speech and random model files (built with the code at hand once; both snapshots then load them)."""
    import reference
    import soundfile as sf
    from random_model import random_model

    from mlx_mimi.convert import write_converted

    folder.mkdir(parents=True)
    speech = reference.speech(30.0, seed=11)
    np.save(folder / "speech.npy", speech)
    sf.write(folder / "talk.wav", speech[: 7 * SR + 333], SR, subtype="FLOAT")
    sf.write(folder / "other.flac", speech[9 * SR : 12 * SR], SR)
    random_model(speech, folder / "mimi")
    config = mlx_mimi.JodioConfig(
        channels=32,
        latent_dim=48,
        encoder_layers=2,
        encoder_heads=2,
        encoder_head_dim=16,
        encoder_intermediate=64,
        decoder_width=32,
        decoder_layers=1,
        decoder_heads=2,
        decoder_head_dim=16,
        decoder_intermediate=64,
        codebook_size=64,
    )
    jodio = mlx_mimi.Jodio(config)
    rng = np.random.default_rng(2)
    params = [
        (
            k,
            mx.array(
                (rng.standard_normal(v.shape) * (0.3 / np.sqrt(v.shape[-1]) if v.ndim > 1 else 0.1)).astype(np.float32)
            ),
        )
        for k, v in tree_flatten(jodio.parameters())
    ]
    jodio.update(tree_unflatten(params))
    jodio.source = {"model_id": "random jodio", "revision": None, "layout": "mlx-mimi"}
    write_converted(jodio, folder / "jodio")


def _mimi_outputs(model, speech: np.ndarray, out: dict, tag: str, k: int) -> None:
    pcm = speech[: 12 * SR + 777]
    codes = np.array(model.encode(pcm, num_codebooks=k))
    out[f"{tag}/encode"] = codes
    out[f"{tag}/latent"] = np.array(model.encode_latent(pcm))
    out[f"{tag}/decode"] = np.array(model.decode(codes))
    clips = [speech[i * SR : i * SR + n] for i, n in enumerate((3 * SR + 5, 5 * SR, SR // 3, 8 * SR + 1919))]
    for i, c in enumerate(model.encode_batch(clips, num_codebooks=k)):
        out[f"{tag}/encode_batch/{i}"] = np.array(c)
    for i, a in enumerate(model.decode_batch([np.array(c) for c in model.encode_batch(clips, num_codebooks=k)])):
        out[f"{tag}/decode_batch/{i}"] = np.array(a)
    out[f"{tag}/encode_pair"] = np.array(model.encode(np.stack([pcm[: 6 * SR], pcm[SR : 7 * SR]]), num_codebooks=k))
    for batch in (1, 2):
        enc = model.stream_encoder(batch_size=batch, num_codebooks=k)
        dec = model.stream_decoder(batch_size=batch)
        x = np.stack([pcm, pcm[::-1].copy()])[:batch]
        got, audio = [], []
        for i in range(0, x.shape[1], 2999):
            c = np.array(enc.step(x[:, i : i + 2999]))
            got.append(c)
            audio.append(np.array(dec.step(c)))
        got.append(np.array(enc.flush()))
        out[f"{tag}/stream{batch}/codes"] = np.concatenate(got, axis=-1)
        out[f"{tag}/stream{batch}/audio"] = np.concatenate(audio, axis=-1)


def _cli(args: list, cwd: Path) -> dict:
    p = subprocess.run([sys.executable, "-m", "mlx_mimi.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    return {"args": [str(a) for a in args], "code": p.returncode, "stdout": p.stdout, "stderr": p.stderr}


def _content_digest(path: Path) -> str:
    """A digest of what a file holds, not of its bytes: safetensors headers list metadata in a random order and
    float WAVs carry a time stamp (libsndfile's PEAK chunk), so equal outputs are not equal bytes."""
    import soundfile as sf

    digest = hashlib.sha256()
    if path.suffix == ".safetensors":
        arrays, metadata = mx.load(str(path), return_metadata=True)
        digest.update(json.dumps(metadata or {}, sort_keys=True).encode())
        for key in sorted(arrays):
            tensor = arrays[key]
            raw = tensor.view(mx.uint16) if tensor.dtype == mx.bfloat16 else tensor
            digest.update(f"{key}{tensor.dtype}{tensor.shape}".encode() + np.array(raw).tobytes())
    elif path.suffix == ".wav":
        data, rate = sf.read(str(path), dtype="float64")
        info = sf.info(str(path))
        digest.update(f"{rate}{info.subtype}{data.shape}".encode() + data.tobytes())
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def snapshot(dest: Path, fixtures: Path) -> None:
    if not fixtures.exists():
        build_fixtures(fixtures)
    dest.mkdir(parents=True, exist_ok=True)
    speech = np.load(fixtures / "speech.npy")
    out: dict[str, np.ndarray] = {}
    mimi = mlx_mimi.load(fixtures / "mimi")
    _mimi_outputs(mimi, speech, out, "mimi32", 32)
    _mimi_outputs(mimi, speech, out, "mimi8", 8)
    variant = mlx_mimi.nine_codebooks(mimi, seed=0)
    _mimi_outputs(variant, speech, out, "variant", 9)
    out["variant/fingerprint"] = np.frombuffer(variant.codebooks_fingerprint().encode(), np.uint8)
    q8 = mlx_mimi.load(fixtures / "mimi", quantize=8)
    _mimi_outputs(q8, speech, out, "q8", 8)
    jodio = mlx_mimi.load(fixtures / "jodio")
    _mimi_outputs(jodio, speech, out, "jodio", 10)
    np.savez(dest / "arrays.npz", **out)

    work = dest / "cli"
    work.mkdir(exist_ok=True)
    m = fixtures / "mimi"
    runs = [
        _cli(
            ["encode", fixtures / "talk.wav", fixtures / "other.flac", "--out-dir", "codes", "-n", 8, "--model", m],
            work,
        ),
        _cli(["decode", "codes/talk.safetensors", "-o", "talk.wav", "--model", m], work),
        _cli(["roundtrip", fixtures / "other.flac", "-o", "rt.wav", "--pcm16", "-n", 4, "--model", m], work),
        _cli(["encode", fixtures / "talk.wav", "-o", "j.safetensors", "--model", fixtures / "jodio"], work),
        _cli(["info", m], work),
        _cli(["info", fixtures / "jodio"], work),
        _cli(["encode", "nothing.wav", "-o", "x.safetensors", "--model", m], work),
        _cli(["decode", "codes/talk.safetensors", "-o", "x.wav", "--model", fixtures / "jodio"], work),
        _cli(["convert", m, "-o", "conv", "--dtype", "bfloat16"], work),
    ]
    for run in runs:  # the text may name this snapshot's folders: make it comparable
        for key in ("stdout", "stderr"):
            run[key] = run[key].replace(str(work), "<work>").replace(str(fixtures), "<fixtures>")
    files = {str(p.relative_to(work)): _content_digest(p) for p in sorted(work.rglob("*")) if p.is_file()}
    (dest / "cli.json").write_text(json.dumps({"runs": runs, "files": files}, indent=1) + "\n")
    print(f"wrote {len(out)} arrays, {len(runs)} CLI runs, {len(files)} files to {dest}")


def compare(a: Path, b: Path) -> int:
    bad = 0
    with np.load(a / "arrays.npz") as x, np.load(b / "arrays.npz") as y:
        names = sorted(set(x) | set(y))
        for name in names:
            if name not in x or name not in y:
                print(f"DIFF {name}: only in {'before' if name in x else 'after'}")
                bad += 1
            elif x[name].shape != y[name].shape or not np.array_equal(x[name], y[name]):
                diff = (
                    np.abs(x[name].astype(np.float64) - y[name].astype(np.float64)).max()
                    if x[name].shape == y[name].shape
                    else "shape"
                )
                print(f"DIFF {name}: {diff}")
                bad += 1
    ca, cb = (json.loads((p / "cli.json").read_text()) for p in (a, b))
    for ra, rb in zip(ca["runs"], cb["runs"], strict=True):
        if ra != rb:
            print(f"DIFF cli {' '.join(ra['args'])}:\n  before {ra}\n  after  {rb}")
            bad += 1
    if ca["files"] != cb["files"]:
        print(f"DIFF cli files: {ca['files']} vs {cb['files']}")
        bad += 1
    print(f"{len(names)} arrays, {len(ca['runs'])} CLI runs, {len(ca['files'])} files compared: {bad} differences")
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snapshot")
    snap.add_argument("dest", type=Path)
    snap.add_argument("--fixtures", type=Path, default=None)
    cmp = sub.add_parser("compare")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.command == "snapshot":
        snapshot(args.dest.resolve(), (args.fixtures or args.dest / "fixtures").resolve())
    else:
        sys.exit(compare(args.a, args.b))


if __name__ == "__main__":
    main()
