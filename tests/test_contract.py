"""The determinism contract (README): what is bit-identical, and what is held to the near-tie standard.

Bit-identical: the same input, settings and batch composition on the same machine, from any thread, any
number of times; and, on the CPU backend, a clip batched with others of its length vs alone (per-clip matmul
shapes, layers/linear.py). Near-tie standard (mlx_mimi/compare.py): streaming vs offline, offline chunking,
another BLAS. These tests assert exactly that, so they hold on any x86-64 or arm64 CPU, with or without
OpenBLAS.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import mlx.core as mx
import numpy as np
import pytest
from contract import assert_audio_contract, assert_contract

import mlx_mimi
import mlx_mimi.layers.conv
import mlx_mimi.layers.linear
import mlx_mimi.layers.quantizer

FRAME, SR = 1920, 24_000
CPU_BACKEND = mx.default_device() == mx.cpu


def clips(speech: np.ndarray, count: int, seconds: float) -> np.ndarray:
    """``count`` different clips of equal length (a partial last frame included), from rotations of speech."""
    n = int(seconds * SR) + 777
    return np.stack([np.roll(speech, -i * 52_391)[:n] for i in range(count)])


def test_repeats_are_bit_identical(model, speech_long):
    pcm = speech_long[: 12 * SR + 5]
    codes = np.array(model.encode(pcm))
    np.testing.assert_array_equal(np.array(model.encode(pcm)), codes)
    audio = np.array(model.decode(codes))
    np.testing.assert_array_equal(np.array(model.decode(codes)), audio)


def _stream_codes(model, pcm: np.ndarray, chunk: int = 3000) -> np.ndarray:
    enc = model.stream_encoder(num_codebooks=8)
    out = [np.array(enc.step(pcm[i : i + chunk])) for i in range(0, len(pcm), chunk)]
    out.append(np.array(enc.flush()))
    return np.concatenate(out, axis=-1)


def test_threads_are_bit_identical(model, speech_long):
    """Concurrent encode/decode/streams on one model from a thread pool equal sequential calls, bit for bit."""
    inputs = clips(speech_long, 4, 5.0)
    codes = [np.array(model.encode(pcm)) for pcm in inputs]
    audio = [np.array(model.decode(c)) for c in codes]
    streamed = [_stream_codes(model, pcm) for pcm in inputs]

    def work(i: int):
        c = np.array(model.encode(inputs[i]))
        return i, c, np.array(model.decode(c)), _stream_codes(model, inputs[i])

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, [0, 1, 2, 3, 3, 2, 1, 0]))
    for i, c, a, s in results:
        np.testing.assert_array_equal(c, codes[i])
        np.testing.assert_array_equal(a, audio[i])
        np.testing.assert_array_equal(s, streamed[i])


def test_objects_cross_threads(model_folder, speech_long):
    """A model loaded in one thread and a stream created in another are usable from a third."""
    pcm = speech_long[: 4 * SR]
    box = {}
    loader = threading.Thread(target=lambda: box.setdefault("model", mlx_mimi.load(model_folder)))
    loader.start()
    loader.join()
    model = box["model"]
    expected = np.array(model.encode(pcm, num_codebooks=8))
    enc = model.stream_encoder(num_codebooks=8)
    dec = model.stream_decoder()

    def step():
        box["codes"] = np.concatenate([np.array(enc.step(pcm)), np.array(enc.flush())], axis=-1)
        box["audio"] = np.array(dec.step(box["codes"]))

    worker = threading.Thread(target=step)
    worker.start()
    worker.join()
    assert_contract(model, pcm, box["codes"], expected, "stream stepped in another thread vs offline")
    assert box["audio"].shape == (1, 1, expected.shape[-1] * FRAME)


@pytest.mark.parametrize("seconds, batch", [(10, 2), (10, 4), (10, 8), (60, 2)])
def test_batched_equals_single(model, speech_minute, monkeypatch, seconds, batch):
    """A clip batched with others of its length gets its own codes and audio: bit-identical on the CPU backend
    (per-clip matmul shapes), near-ties only elsewhere. The CPU schedule with passes of ``batch`` clips (the CPU
    default runs one 128-frame clip per pass): every clip of the batch shares one pass, which the test checks."""
    schedule = dataclasses.replace(mlx_mimi.cpu_schedule(), chunk_frames=32, frames_per_pass=32 * batch)
    monkeypatch.setattr(model, "schedule", schedule)
    passes = []
    run_encoder = model._run_encoder
    monkeypatch.setattr(
        model, "_run_encoder", lambda pcm, *a, **k: passes.append(pcm.shape[0]) or run_encoder(pcm, *a, **k)
    )
    pcm = clips(speech_minute, batch, seconds)
    single = np.concatenate([np.array(model.encode(p)) for p in pcm])
    passes.clear()
    batched = np.array(model.encode(pcm))
    assert passes == [batch], passes  # one pass of the whole batch: it really was batched
    assert_contract(model, pcm, batched, single, f"{seconds} s, B={batch}: batched vs single", rates=seconds >= 60)
    codes = single[:, :8, :40]
    audio_single = np.concatenate([np.array(model.decode(c[None])) for c in codes])
    audio_batched = np.array(model.decode(codes))
    assert_audio_contract(audio_batched, audio_single, f"B={batch} decode batched vs single")
    if CPU_BACKEND:
        np.testing.assert_array_equal(batched, single)
        np.testing.assert_array_equal(audio_batched, audio_single)


def test_offline_products_use_per_clip_shapes(model_folder, speech_long, monkeypatch):
    """Why batched equals single on any CPU, not only on this one's BLAS: every product of an offline call runs with
    a clip's own row count (``per_clip_matmuls``), so no BLAS sees another matrix size for a batched clip. A BLAS
    whose small-row kernels round differently (OpenBLAS with AVX-512) would otherwise give other audio in the last
    bit; here every product that carries a batch is recorded, with its mode, while the graphs are built."""
    products = []
    original = mlx_mimi.layers.linear.matmul

    def recording(x, w_t, bias=None):
        if x.ndim == 3 and x.shape[0] > 1:
            products.append(mlx_mimi.layers.linear.per_clip_active())
        return original(x, w_t, bias)

    for module in (mlx_mimi.layers.linear, mlx_mimi.layers.conv, mlx_mimi.layers.quantizer):
        monkeypatch.setattr(module, "matmul", recording)
    model = mlx_mimi.load(model_folder)  # fresh: its compiled searches are traced while recorded
    model.schedule = dataclasses.replace(mlx_mimi.cpu_schedule(), chunk_frames=32, frames_per_pass=96)  # 3 per pass
    pcm = clips(speech_long, 3, 4.0)
    codes = model.encode(pcm, num_codebooks=8)
    latent = model.encode_latent(pcm)
    model.quantize(latent, 8)
    model.decode(codes)
    model.decode_latent(model.dequantize(codes))
    model.decode(codes, length=pcm.shape[-1])
    # SEANet convs, transformer projections, searches and output projections of both directions
    assert len(products) > 100, len(products)
    assert all(products), f"{products.count(False)} of {len(products)} batched products folded the clips together"


def test_stream_vs_offline_on_a_minute(model, speech_minute):
    pcm = speech_minute
    offline = np.array(model.encode(pcm))
    enc = model.stream_encoder()
    parts = [np.array(enc.step(pcm[i : i + 4000])) for i in range(0, len(pcm), 4000)]
    streamed = np.concatenate([*parts, np.array(enc.flush())], axis=-1)
    assert_contract(model, pcm, streamed, offline, "60 s: stream (4000-sample chunks) vs offline", rates=True)


def test_offline_chunking_on_a_minute(model, speech_minute):
    pcm = speech_minute[: 60 * SR - 1234]
    default = np.array(model.encode(pcm))
    for chunk in (7, 1000):
        other = np.array(model.encode(pcm, chunk_frames=chunk))
        assert_contract(model, pcm, other, default, f"60 s: chunk_frames={chunk} vs default", rates=True)
    codes = default[:, :, :130]
    assert_audio_contract(model.decode(codes, chunk_frames=9), model.decode(codes), "decode chunk 9 vs default")


def test_offline_evaluation_points_change_nothing(model, speech_long):
    """Offline passes evaluate inside each chunk (schedule.evaluation_points): when work runs, not what it computes,
    so the same chunk with and without those points is bit-identical on any machine."""
    pcm = mx.array(speech_long[: 70 * FRAME - 777])[None, :, None]
    valid = mx.array([70 * FRAME - 5000])  # a clip ending inside the chunk: the batch path's per-tile counts
    runs = []
    for points in (False, True):
        schedule = dataclasses.replace(mlx_mimi.cpu_schedule(), evaluation_points=points)
        latent, state = model.latent_chunk(pcm, model.encoder_state(1), schedule, final=True)
        padded, _ = model.latent_chunk(pcm, model.encoder_state(1), schedule, final=True, valid=valid)
        codes = model.quantizer.encode(latent, 8)
        audio, dstate = model.decode_chunk(codes, model.decoder_state(1), schedule)
        runs.append([np.array(a) for a in (latent, padded, state["seanet"][-2], codes, audio)])
        runs[-1] += [np.array(k) for k in dstate["transformer"]["keys"]]
    for plain, evaluated in zip(*runs, strict=True):
        np.testing.assert_array_equal(evaluated, plain)


def test_attention_blocks_match_one_product(model):
    """A CPU offline chunk attends in query blocks (layers/transformer.py): each block's keys are those its
    window reaches, so the result is the one-product attention's up to float rounding (other matmul shapes)."""
    rng = np.random.default_rng(3)
    tr = model.encoder_transformer
    state = tr.initial_state(1, mx.float32)
    outs = {}
    for block in (64, None):
        schedule = dataclasses.replace(mlx_mimi.cpu_schedule(), attention_block=block)
        s, ys = state, []
        for steps in (300, 257, 5):  # a fresh stream, then a full window of context, then a short call
            x = mx.array(rng.standard_normal((1, steps, tr.layers[0].attn.qkv.weight.shape[1]), dtype=np.float32))
            y, s = tr(x, s, schedule)
            ys.append(np.array(y))
        outs[block] = np.concatenate(ys, axis=1)
        rng = np.random.default_rng(3)
    blocked, whole = outs[64], outs[None]
    assert np.abs(blocked - whole).max() <= 1e-5 * np.abs(whole).max(), np.abs(blocked - whole).max()


ENCODE_SCRIPT = """
import sys, numpy as np, mlx_mimi
model = mlx_mimi.load(sys.argv[1])
print(mlx_mimi.backend.blas_report(), file=sys.stderr)
np.save(sys.argv[3], np.array(model.encode(np.load(sys.argv[2]))))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS choice exists on Linux only")
def test_reference_blas_vs_openblas(model, model_folder, speech_minute, tmp_path):
    """Another BLAS (MLX's bundled reference BLAS: another summation order) gives the same codes up to near-ties."""
    pcm = speech_minute[: 20 * SR]
    np.save(tmp_path / "pcm.npy", pcm)
    env = dict(os.environ, MLX_MIMI_BLAS="off")
    out = tmp_path / "codes.npy"
    p = subprocess.run(
        [sys.executable, "-c", ENCODE_SCRIPT, str(model_folder), str(tmp_path / "pcm.npy"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    assert "bundled reference BLAS" in p.stderr
    result = assert_contract(model, pcm, np.load(out), np.array(model.encode(pcm)), "reference BLAS vs this process")
    assert result.identical >= 0.995
