"""Where features meet: weights changed after use, quantization after use, training then encoding, threads then
interpreter exit. Each through the public API, each against a freshly loaded model with the same weights."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import mlx.core as mx
import numpy as np
import pytest

import mlx_mimi
from mlx_mimi.convert import write_converted
from mlx_mimi.quantize import quantize_model

FRAME = 1920


def _both(model, pcm: np.ndarray, k: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Offline codes and streamed codes (several pushes, a flush) of ``pcm``."""
    offline = np.array(model.encode(pcm, num_codebooks=k))
    enc = model.stream_encoder(num_codebooks=k)
    parts = [np.array(enc.step(pcm[i : i + 5000])) for i in range(0, len(pcm), 5000)]
    return offline, np.concatenate([*parts, np.array(enc.flush())], axis=-1)


def _decoded(model, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    offline = np.array(model.decode(codes))
    dec = model.stream_decoder()
    streamed = np.concatenate([np.array(dec.step(codes[..., i : i + 3])) for i in range(0, codes.shape[-1], 3)], -1)
    return offline, streamed


def _permuted(book: mx.array, seed: int) -> mx.array:
    """The same codebook entries in another order: codes change, the codebook's statistics do not."""
    rng = np.random.default_rng(seed)
    return book[mx.array(rng.permutation(book.shape[0]))]


def test_weights_changed_in_place_are_used(model_folder, speech_long, tmp_path):
    """Encode (compiling every path), change codebooks and a decoder weight in place, encode again: offline and
    streaming use the new weights, exactly as a freshly loaded model holding them."""
    pcm = speech_long[: 6 * 24_000 + 1234]
    model = mlx_mimi.load(model_folder)
    before, before_stream = _both(model, pcm)
    audio_before, _ = _decoded(model, before[:, :8, :20])
    # attribute assignment on a submodule (what training does) ...
    acoustic = model.quantizer.acoustic
    books = mx.array(acoustic.codebooks)
    books[2] = _permuted(books[2], 0)
    acoustic.codebooks = books
    acoustic.half_sq_norms = 0.5 * (books**2).sum(axis=-1)
    # ... and model.update (what a resumed checkpoint does)
    semantic = model.quantizer.semantic
    model.update({"quantizer": {"semantic": {"codebooks": _permuted(semantic.codebooks[0], 1)[None]}}})
    model.update({"quantizer": {"semantic": {"half_sq_norms": 0.5 * (model.quantizer.semantic.codebooks**2).sum(-1)}}})
    final = model.decoder.final_conv
    model.update({"decoder": {"final_conv": {"bias": final.bias + 0.25}}})
    after, after_stream = _both(model, pcm)
    audio_after, audio_after_stream = _decoded(model, before[:, :8, :20])

    fresh = mlx_mimi.load(write_converted(model, tmp_path / "changed"))
    expected, expected_stream = _both(fresh, pcm)
    expected_audio, expected_audio_stream = _decoded(fresh, before[:, :8, :20])
    assert (after != before).mean() > 0.02, "the change must move codes for this test to mean anything"
    np.testing.assert_array_equal(after, expected)
    np.testing.assert_array_equal(after_stream, expected_stream)
    np.testing.assert_array_equal(after_stream, after)  # and the stream still equals offline here
    assert np.abs(audio_after - audio_before).max() > 0.2
    np.testing.assert_array_equal(audio_after, expected_audio)
    np.testing.assert_array_equal(audio_after_stream, expected_audio_stream)
    assert before_stream.shape == after_stream.shape


def test_quantize_after_use(model_folder, speech_long):
    """A model used (compiled) in float, then quantized in place, encodes and streams as one loaded quantized."""
    pcm = speech_long[: 4 * 24_000 + 99]
    model = mlx_mimi.load(model_folder)
    float_codes, _ = _both(model, pcm, 8)
    _decoded(model, float_codes)
    quantize_model(model, 8)
    codes, streamed = _both(model, pcm, 8)
    audio, audio_streamed = _decoded(model, codes)

    fresh = mlx_mimi.load(model_folder, quantize=8)
    expected, expected_stream = _both(fresh, pcm, 8)
    expected_audio, expected_audio_stream = _decoded(fresh, codes)
    assert not np.array_equal(codes, float_codes), "8-bit weights move some codes: the test must see them"
    np.testing.assert_array_equal(codes, expected)
    np.testing.assert_array_equal(streamed, expected_stream)
    np.testing.assert_array_equal(audio, expected_audio)
    np.testing.assert_array_equal(audio_streamed, expected_audio_stream)


def test_train_then_encode(model, speech_long, tmp_path):
    """The 9-codebook variant encodes (compiled search and stream), trains (its EMA updates the content codebook
    in place), then encodes with the trained codebooks, as the checkpoint loaded fresh does."""
    variant = mlx_mimi.nine_codebooks(model, seed=3)
    pcm = speech_long[: 8 * 24_000]
    before, _ = _both(variant, pcm, 9)
    latent = np.array(variant.encode_latent(speech_long[: 20 * 24_000]))
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((1, latent.shape[1], 32)).astype(np.float32)
    batches = iter(lambda: {"latent": latent, "teacher": teacher}, None)
    mlx_mimi.train_heads(variant, batches, steps=3, distill_dim=32, checkpoint_dir=tmp_path / "run")
    after, after_stream = _both(variant, pcm, 9)

    fresh = mlx_mimi.load(tmp_path / "run" / (tmp_path / "run" / "latest").read_text().strip())
    expected, expected_stream = _both(fresh, pcm, 9)
    assert (after[:, 0] != before[:, 0]).mean() > 0.2, "training must move the content codes"
    np.testing.assert_array_equal(after, expected)
    np.testing.assert_array_equal(after_stream, expected_stream)


def test_compiled_steps_keep_no_stream_alive(model, speech_long):
    """The model's compiled steps are shared by streams of one shape but hold none of them (nor their state)."""
    enc = model.stream_encoder(num_codebooks=8)
    enc.step(speech_long[: 3 * FRAME])
    dec = model.stream_decoder()
    dec.step(np.zeros((1, 8, 2), np.int64))
    refs = [weakref.ref(enc), weakref.ref(dec)]
    del enc, dec
    gc.collect()
    assert [r() for r in refs] == [None, None]


THREAD_EXIT = """
import sys, threading
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import mlx_mimi

model = mlx_mimi.load(sys.argv[1])
pcm = np.load(sys.argv[2])


def encode():
    codes = model.encode(pcm, num_codebooks=8)
    model.decode(codes)


def stream():
    enc = model.stream_encoder(num_codebooks=8)
    codes = np.concatenate([np.array(enc.step(pcm)), np.array(enc.flush())], axis=-1)
    np.array(model.stream_decoder().step(codes))


mode = sys.argv[3]
if mode == "thread":
    worker = threading.Thread(target=encode)
    worker.start()
    worker.join()
elif mode == "pool":
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: encode(), range(3)))
elif mode == "stream":
    encode()  # the main thread's compiled functions too
    worker = threading.Thread(target=stream)
    worker.start()
    worker.join()
print("ok")
"""


@pytest.mark.parametrize("mode", ["thread", "pool", "stream"])
def test_threads_then_interpreter_exit(converted_folder, speech_long, tmp_path, mode):
    """A script that used the model in worker threads exits 0. MLX 0.32.4 aborts such a script at exit ("terminate
    called without an active exception", 134) in most runs when compiled functions live on in a finished thread's
    compile cache (compiled.py); the race is decided at every exit, so the script runs several times."""
    np.save(tmp_path / "pcm.npy", speech_long[: 3 * FRAME + 7])
    script = tmp_path / "threads.py"
    script.write_text(THREAD_EXIT)
    for _ in range(4):
        p = subprocess.run(
            [sys.executable, str(script), str(converted_folder), str(tmp_path / "pcm.npy"), mode],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert (p.returncode, p.stdout.strip()) == (0, "ok"), p.stderr[-2000:]
