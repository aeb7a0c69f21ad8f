"""mlx_mimi.compat.rustymimi and mlx_mimi.compat.moshi_mlx against the real packages (rustymimi 0.4.1, moshi_mlx
0.3.0), which pin their own mlx and so live in their own venv (``.venv-compat``, made by .ci/run; another one via
``MLX_MIMI_COMPAT_PYTHON``). The same script runs on the real package and on the drop-in: the same shapes and
dtypes; rustymimi's codes under the determinism contract over its first 10 s; moshi_mlx's agreement measured (its
tanh-GELU and offline attention without a causal mask make its codes differ); memory flat where theirs grows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import IN_CI
from contract import assert_contract

FRAME, SR = 1920, 24_000
VENV = Path(__file__).resolve().parents[1] / ".venv-compat" / "bin" / "python"
KYUTAI = "tokenizer-e351c8d8-checkpoint125.safetensors"
MEMORY_FRAMES = 600  # 48 s of audio streamed, one frame per step

# One script for both worlds: `--compat` imports mlx-mimi's drop-ins under the real packages' names.
SCRIPT = r"""
import json, sys, time
import numpy as np
if sys.argv[1] == "--compat":
    import mlx_mimi.compat.rustymimi as rustymimi
    import mlx_mimi.compat.moshi_mlx as moshi_mlx
else:
    import rustymimi
    import moshi_mlx
import mlx.core as mx
models = moshi_mlx.models
weights, speech_path, out = sys.argv[2:5]
memory_frames = int(sys.argv[5])
speech = np.load(speech_path).astype(np.float32)
ten = speech[: 10 * 24000]
result, arrays = {}, {}


def rss_mb():
    status = open("/proc/self/status").read()
    return int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmRSS:"))) / 1024


def describe(x):
    x = np.asarray(x)
    return [str(x.dtype), list(x.shape)]


tok = rustymimi.Tokenizer(weights, num_codebooks=8)
codes = tok.encode(ten[None, None])
arrays["rusty_encode"] = codes
result["rusty_encode"] = describe(codes)
result["rusty_decode"] = describe(tok.decode(np.ascontiguousarray(codes[:, :, :25])))
tok.reset()  # rustymimi's encode leaves state its encode_step would read
none = tok.encode_step(ten[None, None, :1000])
result["rusty_step_partial"] = none is None
steps = [tok.encode_step(ten[None, None, i : i + 1920]) for i in range(1000, len(ten) - 1920, 1920)]
arrays["rusty_steps"] = np.concatenate([s for s in steps if s is not None], axis=-1)
result["rusty_step"] = describe(steps[0])
result["rusty_decode_step"] = describe(tok.decode_step(steps[0]))
tok.reset()
stream = rustymimi.StreamTokenizer(weights)
for i in range(3):
    stream.encode(ten[i * 1920 : (i + 1) * 1920])
got, deadline = [], time.time() + 60
while len(got) < 3 and time.time() < deadline:
    c = stream.get_encoded()
    if c is None:
        time.sleep(0.01)
    else:
        got.append(c)
result["stream_encoded"] = [describe(c) for c in got]
stream.decode(got[0].reshape(1, -1))
pcm, deadline = None, time.time() + 60
while pcm is None and time.time() < deadline:
    pcm = stream.get_decoded()
    time.sleep(0.01)
result["stream_decoded"] = describe(pcm)

mimi = models.mimi.Mimi(models.mimi_202407(32))
mimi.load_pytorch_weights(weights, strict=True)
mcodes = mimi.encode(mx.array(ten[None, None]))
arrays["moshi_encode"] = np.array(mcodes)
result["moshi_encode"] = [str(mcodes.dtype), list(mcodes.shape)]
step = mimi.encode_step(mx.array(ten[None, None, :1920]))
result["moshi_step"] = [str(step.dtype), list(step.shape)]
audio = mimi.decode_step(step[:, :8])
result["moshi_decode_step"] = [str(audio.dtype), list(audio.shape)]
result["moshi_decode"] = [str(mimi.decode(mcodes[:, :, :5]).dtype), list(mimi.decode(mcodes[:, :, :5]).shape)]
mimi.reset_all()

# memory while streaming: RSS after 100 frames and after memory_frames
tok.reset()
long = np.tile(speech, memory_frames * 1920 // len(speech) + 2)
marks = {}
for i in range(memory_frames):
    tok.encode_step(long[None, None, i * 1920 : (i + 1) * 1920])
    if i + 1 in (100, memory_frames):
        marks[i + 1] = rss_mb()
result["rusty_rss"] = marks
mimi.reset_all()
marks = {}
for i in range(memory_frames):
    mx.eval(mimi.encode_step(mx.array(long[None, None, i * 1920 : (i + 1) * 1920])))
    if i + 1 in (100, memory_frames):
        marks[i + 1] = rss_mb()
result["moshi_rss"] = marks
np.savez(out + ".npz", **arrays)
with open(out + ".json", "w") as f:
    json.dump(result, f)
"""


@pytest.fixture(scope="module")
def compat_python() -> str:
    python = os.environ.get("MLX_MIMI_COMPAT_PYTHON") or str(VENV)
    if not Path(python).exists():
        reason = f"no venv with rustymimi 0.4.1 and moshi_mlx 0.3.0 at {python} (.ci/run makes .venv-compat)"
        if IN_CI:
            pytest.fail("CI must run the compatibility tests: " + reason)
        pytest.skip(reason)
    return python


@pytest.fixture(scope="module")
def runs(compat_python, original_folder, speech_long, tmp_path_factory):
    """The script's results with the real packages and with the drop-ins, on the same weights and speech."""
    folder = tmp_path_factory.mktemp("compat")
    np.save(folder / "speech.npy", speech_long[: 30 * SR])
    weights = str(original_folder / KYUTAI)
    script = folder / "script.py"
    script.write_text(SCRIPT)
    out = {}
    for world, python in (("real", compat_python), ("compat", sys.executable)):
        env = dict(os.environ)
        if world == "real":
            env.pop("PYTHONPATH", None)
        args = [python, str(script), "--compat" if world == "compat" else "--real", weights]
        args += [str(folder / "speech.npy"), str(folder / world), str(MEMORY_FRAMES)]
        p = subprocess.run(args, capture_output=True, text=True, timeout=1500, env=env)
        assert p.returncode == 0, f"{world}: {p.stderr[-3000:]}"
        out[world] = (json.loads((folder / f"{world}.json").read_text()), dict(np.load(folder / f"{world}.npz")))
    return out


def test_same_call_shapes_and_dtypes(runs):
    """Every call of the script: the same shapes and dtypes from the drop-ins as from the real packages."""
    (real, _), (ours, _) = runs["real"], runs["compat"]
    for key in real:
        if key.endswith("_rss"):
            continue
        assert ours[key] == real[key], (key, ours[key], real[key])


def test_rustymimi_codes_under_the_contract(runs, model, speech_long):
    """rustymimi vs the drop-in over its first 10 s (past its window it drifts: its attention cache drops keys)."""
    (_, real), (_, ours) = runs["real"], runs["compat"]
    pcm = speech_long[: 10 * SR]
    assert_contract(model, pcm, ours["rusty_encode"], real["rusty_encode"], "rustymimi encode vs drop-in, 10 s")
    n = min(real["rusty_steps"].shape[-1], ours["rusty_steps"].shape[-1])
    stepped = pcm[: n * FRAME]  # the script's first push (1000 samples) gives no frame: frames start at sample 0
    label = "rustymimi encode_step vs drop-in, 10 s"
    assert_contract(model, stepped, ours["rusty_steps"][..., :n], real["rusty_steps"][..., :n], label)


def test_moshi_mlx_agreement_is_measured(runs):
    (_, real), (_, ours) = runs["real"], runs["compat"]
    a, b = real["moshi_encode"], ours["moshi_encode"]
    semantic = float((a[:, 0] == b[:, 0]).mean())
    first8 = float((a[:, :8] == b[:, :8]).mean())
    print(f"moshi_mlx vs drop-in (= the reference's codes), 10 s: semantic {semantic:.3f}, codebooks 1-8 {first8:.3f}")
    assert a.shape == b.shape


def test_memory_stays_flat_where_theirs_grows(runs):
    real, ours = runs["real"][0], runs["compat"][0]
    seconds = (MEMORY_FRAMES - 100) * FRAME / SR
    growth = {}
    for name in ("rusty", "moshi"):
        for world, result in (("real", real), ("compat", ours)):
            marks = {int(k): v for k, v in result[f"{name}_rss"].items()}
            growth[(name, world)] = (marks[MEMORY_FRAMES] - marks[100]) / seconds
    for (name, world), rate in growth.items():
        print(f"{name} ({world}): RSS {rate:+.3f} MB per second of audio streamed")
    assert growth[("rusty", "compat")] < 0.1 and growth[("moshi", "compat")] < 0.1
