"""Streaming: compiled steps equal offline output (determinism contract), in constant memory, with batch,
reset, flush, MLX-array input without host syncs, and precise errors."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from contract import assert_audio_contract, assert_contract

from mlx_mimi import MimiError
from mlx_mimi.streaming import MAX_FRAMES_PER_CALL, state_nbytes

FRAME = 1920


def stream_codes(model, pcm, chunk_sizes, num_codebooks=None, batch_size=1):
    enc = model.stream_encoder(batch_size=batch_size, num_codebooks=num_codebooks)
    out, start = [], 0
    sizes = iter(chunk_sizes)
    while start < pcm.shape[-1]:
        n = next(sizes)
        out.append(np.array(enc.step(pcm[..., start : start + n])))
        start += n
    return np.concatenate(out, axis=-1), enc


@pytest.fixture(scope="module")
def long_pcm(speech_long):
    return speech_long[: (len(speech_long) // FRAME) * FRAME]  # 44 s: beyond the 10 s window


@pytest.fixture(scope="module")
def offline_codes(model, long_pcm):
    return np.array(model.encode(long_pcm))


@pytest.fixture(scope="module")
def long_latent(model, long_pcm):
    return np.array(model.encode_latent(long_pcm))


def test_long_stream_matches_offline(model, long_pcm, offline_codes, long_latent):
    """44 s of speech, 4000-sample chunks: the window (250 steps = 10 s) wraps several times."""
    codes, enc = stream_codes(model, long_pcm, iter(lambda: 4000, None))
    assert_contract(model, long_pcm, codes, offline_codes, "44 s stream vs offline", latent=long_latent)
    # one compiled function per number of frames in a call (4000 samples hold 1 or 2 frames), traced once each
    assert enc.traces <= 3


@pytest.mark.parametrize("chunk", [1, 480, 1920, 7 * FRAME + 5, "random"])
def test_chunk_sizes(model, long_pcm, offline_codes, long_latent, chunk):
    n = 12 * FRAME if chunk == 1 else 40 * FRAME  # 1-sample chunks are slow in Python: keep them short
    pcm = long_pcm[:n]
    rng = np.random.default_rng(0)
    sizes = iter(lambda: int(rng.integers(0, 5000)), None) if chunk == "random" else iter(lambda: chunk, None)
    codes, enc = stream_codes(model, pcm, sizes)
    assert codes.shape == (1, 32, n // FRAME) and enc.pending_samples == 0
    assert_contract(model, pcm, codes, offline_codes[:, :, : n // FRAME], f"chunks of {chunk}", latent=long_latent)
    # the frames of a call are unrolled in one compiled function: chunking does not change a frame's shapes,
    # so the codes equal those of one-frame pushes, bit for bit
    by_frame, _ = stream_codes(model, pcm, iter(lambda: FRAME, None))
    np.testing.assert_array_equal(codes, by_frame)


def test_steady_state_never_retraces(model, long_pcm):
    enc = model.stream_encoder(num_codebooks=8)
    enc.warmup()
    traces = enc.traces
    for i in range(20):
        enc.step(long_pcm[i * FRAME : (i + 1) * FRAME])
    assert enc.traces == traces


def test_a_step_is_one_compiled_call_per_group_of_frames(model, long_pcm):
    """A push of n whole frames runs ceil(n / MAX_FRAMES_PER_CALL) compiled calls, not n."""
    enc = model.stream_encoder(num_codebooks=8)
    calls = []
    run = enc._run

    def counting(x, frames, frame_len, codebooks):
        calls.append(frames)
        return run(x, frames, frame_len, codebooks)

    enc._run = counting
    enc.step(long_pcm[: 11 * FRAME])
    assert calls == [11]
    groups = (MAX_FRAMES_PER_CALL, 11 - MAX_FRAMES_PER_CALL)
    assert enc._used == {("encode", 8, 1, n, FRAME, enc.schedule, False) for n in groups}


def test_empty_and_partial_chunks(model, long_pcm, offline_codes, long_latent):
    enc = model.stream_encoder()
    assert np.array(enc.step(np.zeros(0, np.float32))).shape == (1, 32, 0)
    assert np.array(enc.step(long_pcm[: FRAME - 1])).shape == (1, 32, 0)
    assert enc.pending_samples == FRAME - 1 and enc.samples == FRAME - 1
    codes = np.array(enc.step(long_pcm[FRAME - 1 : 2 * FRAME]))
    assert_contract(model, long_pcm, codes, offline_codes[:, :, :2], "partial pushes", latent=long_latent[:, :2])


def test_flush_ends_the_stream(model, long_pcm):
    pcm = long_pcm[: 5 * FRAME + 700]
    enc = model.stream_encoder(num_codebooks=8)
    codes = np.concatenate([np.array(enc.step(pcm)), np.array(enc.flush())], axis=-1)
    assert codes.shape == (1, 8, 6) and enc.samples == len(pcm)
    assert_contract(model, pcm, codes, np.array(model.encode(pcm, num_codebooks=8)), "flushed stream vs offline")
    with pytest.raises(MimiError, match="flushed"):
        enc.step(pcm[:100])
    with pytest.raises(MimiError, match="already flushed"):
        enc.flush()
    enc.reset()
    np.testing.assert_array_equal(np.array(enc.step(pcm[: 5 * FRAME])), codes[:, :, :5])


def test_decode_stream_matches_offline(model, offline_codes):
    codes = offline_codes[:, :, :150]  # 12 s: beyond the window
    offline = np.array(model.decode(codes))
    dec = model.stream_decoder()
    pieces = []
    i = 0
    for n in [1, 2, 0, 3] * 40:
        if i >= 150:
            break
        pieces.append(np.array(dec.step(codes[:, :, i : i + n])))
        i += n
    streamed = np.concatenate(pieces, axis=-1)
    assert streamed.shape == offline.shape
    assert_audio_contract(streamed, offline, "decode stream vs offline")


def test_batch_streams_are_independent(model, long_pcm, offline_codes, long_latent):
    pcm = np.stack([long_pcm[: 20 * FRAME], long_pcm[20 * FRAME : 40 * FRAME]])
    codes, _ = stream_codes(model, pcm, iter(lambda: 3000, None), num_codebooks=8, batch_size=2)
    assert_contract(model, pcm[0], codes[:1], offline_codes[:, :8, :20], "stream B=2, clip 0", latent=long_latent)
    second = np.array(model.encode(pcm[1], num_codebooks=8))
    assert_contract(model, pcm[1], codes[1:], second, "stream B=2, clip 1")
    # two streams of one model do not share state
    a, b = model.stream_encoder(num_codebooks=8), model.stream_encoder(num_codebooks=8)
    first = np.array(b.step(long_pcm[: 5 * FRAME]))
    a.step(long_pcm[: 5 * FRAME])
    b.reset()
    np.testing.assert_array_equal(np.array(b.step(long_pcm[: 5 * FRAME])), first)


def test_reset(model, long_pcm):
    enc = model.stream_encoder(num_codebooks=4)
    first = np.array(enc.step(long_pcm[: 8 * FRAME]))
    enc.step(long_pcm[8 * FRAME : 8 * FRAME + 1000])
    enc.reset()
    np.testing.assert_array_equal(np.array(enc.step(long_pcm[: 8 * FRAME])), first)
    dec = model.stream_decoder()
    a = np.array(dec.step(first))
    dec.reset()
    np.testing.assert_array_equal(np.array(dec.step(first)), a)


def test_state_is_constant_size(model, long_pcm):
    """State bytes after 1 frame, after 13 s and after 26 s are identical (no growing KV cache).

    13 s is past the 10 s window: a growing cache would already be larger than the window there.
    """
    enc = model.stream_encoder(num_codebooks=8)
    dec = model.stream_decoder()
    enc_sizes, dec_sizes = [], []
    for _ in range(2):
        codes = enc.step(long_pcm[: 13 * 24_000])
        dec.step(codes)
        enc_sizes.append(enc.state_bytes)
        dec_sizes.append(dec.state_bytes)
    fresh = model.stream_encoder(num_codebooks=8)
    fresh.step(long_pcm[:FRAME])
    assert enc_sizes[0] == enc_sizes[1] == fresh.state_bytes
    assert dec_sizes[0] == dec_sizes[1]
    # the attention cache is exactly the window: 249 past steps x 8 layers x (k, v) x 512 floats
    window = model.config.sliding_window - 1
    attn = state_nbytes(enc.state["transformer"]["keys"]) + state_nbytes(enc.state["transformer"]["values"])
    assert attn == 2 * 8 * window * 512 * 4


def test_mlx_input_needs_no_host_sync(model, long_pcm, monkeypatch):
    """Fed MLX arrays (any float dtype), steps never read results back to the host: every way an mx.array
    can be synchronised (mx.eval, .item(), .tolist(), bool/int/float(), a numpy conversion in our modules)
    raises while they run. Results are scheduled with mx.async_eval; invalid values surface at
    check()/flush()/reset() instead."""
    import mlx_mimi.checks
    import mlx_mimi.codec
    import mlx_mimi.streaming

    enc, dec = model.stream_encoder(num_codebooks=8), model.stream_decoder()
    enc.warmup()
    dec.warmup(8)
    pcm = mx.array(long_pcm[: 3 * FRAME + 100]).astype(mx.bfloat16)
    syncs = []

    def forbidden(name):
        def fail(*args, **kwargs):
            syncs.append(name)
            raise AssertionError(f"{name} called inside a step")

        return fail

    class NoMxNumpy:
        """numpy, except that converting an mx.array (a host sync) fails."""

        def __getattr__(self, name):
            fn = getattr(np, name)
            if name not in ("array", "asarray", "asanyarray", "ascontiguousarray"):
                return fn

            def convert(obj, *args, **kwargs):
                if isinstance(obj, mx.array):
                    forbidden(f"np.{name}(mx.array)")()
                return fn(obj, *args, **kwargs)

            return convert

    monkeypatch.setattr(mx, "eval", forbidden("mx.eval"))
    for method in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(mx.array, method, forbidden(f"mx.array.{method}"))
    monkeypatch.setattr(mlx_mimi.streaming, "np", NoMxNumpy())
    monkeypatch.setattr(mlx_mimi.codec, "np", NoMxNumpy())
    monkeypatch.setattr(mlx_mimi.checks, "np", NoMxNumpy())
    codes = enc.step(pcm)
    audio = dec.step(codes)
    bad = dec.step(mx.full((1, 8, 1), 5000, dtype=mx.int32))  # out of range: clamped in the graph, flagged
    monkeypatch.undo()
    assert not syncs
    assert codes.shape == (1, 8, 3) and audio.shape == (1, 1, 3 * FRAME) and bad.shape == (1, 1, FRAME)
    expected = model.stream_encoder(num_codebooks=8).step(mx.array(long_pcm[: 3 * FRAME + 100]).astype(mx.bfloat16))
    np.testing.assert_array_equal(np.array(codes), np.array(expected))
    with pytest.raises(MimiError, match="out of range"):
        dec.check()
    dec.check()  # the flag was consumed
    enc.step(mx.array(np.full(FRAME, np.nan, np.float32)))
    with pytest.raises(MimiError, match="NaN"):
        enc.flush()


def test_stream_bad_input(model):
    enc = model.stream_encoder(batch_size=2)
    with pytest.raises(MimiError, match="does not fit this stream"):
        enc.step(np.zeros(100, np.float32))
    with pytest.raises(MimiError, match="NaN"):
        enc.step(np.full((2, 100), np.nan, np.float32))
    with pytest.raises(MimiError, match="floating point"):
        enc.step(np.zeros((2, 100), np.int16))
    with pytest.raises(MimiError, match="floating point"):
        enc.step(mx.zeros((2, 100), dtype=mx.int32))
    dec = model.stream_decoder(batch_size=1)
    with pytest.raises(MimiError, match="batch 2"):
        dec.step(np.zeros((2, 8, 1), np.int64))
    with pytest.raises(MimiError, match="out of range"):
        dec.step(np.full((1, 8, 1), 5000))
    for bad in (0, -1, True, 2.0, "2", None):
        with pytest.raises(MimiError, match="batch_size"):
            model.stream_encoder(batch_size=bad)
        with pytest.raises(MimiError, match="batch_size"):
            model.stream_decoder(batch_size=bad)


def test_codebook_search_needs_no_sort(model, long_pcm, monkeypatch):
    """The search takes its two finalists by two argmins: argpartition is a full sort on Metal, 32 times per
    frame. Every sorting op raises here, offline and in a stream."""
    for name in ("argpartition", "argsort", "sort", "partition", "topk"):
        monkeypatch.setattr(mx, name, lambda *a, _n=name, **k: pytest.fail(f"mx.{_n} called in the search"))
    pcm = long_pcm[: 3 * FRAME + 7]
    offline = np.array(model.encode(pcm, num_codebooks=32))
    enc = model.stream_encoder(num_codebooks=32, batch_size=1)
    streamed = np.concatenate([np.array(enc.step(pcm)), np.array(enc.flush())], axis=-1)
    monkeypatch.undo()
    assert_contract(model, pcm, streamed, offline, "search without sorts: stream vs offline")
