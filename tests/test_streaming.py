"""Streaming: compiled per-frame steps equal offline output, in constant memory, with batch and reset."""

from __future__ import annotations

import numpy as np
import pytest

from mlx_mimi import MimiError
from mlx_mimi.streaming import state_nbytes

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


def test_long_stream_equals_offline(model, long_pcm, offline_codes):
    """44 s of speech, 4000-sample chunks: the window (250 steps = 10 s) wraps several times."""
    codes, enc = stream_codes(model, long_pcm, iter(lambda: 4000, None))
    np.testing.assert_array_equal(codes, offline_codes)
    assert enc.traces == 1  # one compilation for the whole stream


@pytest.mark.parametrize("chunk", [1, 480, 1920, "random"])
def test_chunk_sizes(model, long_pcm, offline_codes, chunk):
    n = 12 * FRAME if chunk == 1 else 40 * FRAME  # 1-sample chunks are slow in Python: keep them short
    pcm = long_pcm[:n]
    rng = np.random.default_rng(0)
    sizes = iter(lambda: int(rng.integers(0, 5000)), None) if chunk == "random" else iter(lambda: chunk, None)
    codes, enc = stream_codes(model, pcm, sizes)
    np.testing.assert_array_equal(codes, offline_codes[:, :, : n // FRAME])
    assert enc.traces == 1 and enc.pending_samples == 0


def test_empty_and_partial_chunks(model, long_pcm, offline_codes):
    enc = model.stream_encoder()
    assert np.array(enc.step(np.zeros(0, np.float32))).shape == (1, 32, 0)
    assert np.array(enc.step(long_pcm[: FRAME - 1])).shape == (1, 32, 0)
    assert enc.pending_samples == FRAME - 1
    codes = np.array(enc.step(long_pcm[FRAME - 1 : 2 * FRAME]))
    np.testing.assert_array_equal(codes, offline_codes[:, :, :2])


def test_decode_stream_equals_offline(model, offline_codes):
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
    assert np.abs(streamed - offline).max() <= 1e-4
    assert dec.traces == 1


def test_batch_streams_are_independent(model, long_pcm, offline_codes):
    pcm = np.stack([long_pcm[: 20 * FRAME], long_pcm[20 * FRAME : 40 * FRAME]])
    codes, _ = stream_codes(model, pcm, iter(lambda: 3000, None), num_codebooks=8, batch_size=2)
    np.testing.assert_array_equal(codes[0], offline_codes[0, :8, :20])
    np.testing.assert_array_equal(codes[1], np.array(model.encode(pcm[1], num_codebooks=8))[0])
    # two streams of one model do not share state
    a, b = model.stream_encoder(num_codebooks=8), model.stream_encoder(num_codebooks=8)
    a.step(long_pcm[: 5 * FRAME])
    np.testing.assert_array_equal(np.array(b.step(long_pcm[: 5 * FRAME])), offline_codes[:, :8, :5])


def test_reset(model, long_pcm, offline_codes):
    enc = model.stream_encoder(num_codebooks=4)
    first = np.array(enc.step(long_pcm[: 8 * FRAME]))
    enc.step(long_pcm[8 * FRAME : 8 * FRAME + 1000])
    enc.reset()
    np.testing.assert_array_equal(np.array(enc.step(long_pcm[: 8 * FRAME])), first)
    np.testing.assert_array_equal(first, offline_codes[:, :4, :8])
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
    assert enc.traces == 1 and dec.traces == 1


def test_long_offline_in_chunks_is_one_pass(model, long_pcm, offline_codes):
    """encode/decode run long input through the same state in chunks, identical to a single pass.

    Codes are bit-identical. Audio agrees to float rounding only (~4e-7): the BLAS picks different
    blockings for different matrix sizes, so sums are ordered differently.
    """
    pcm = np.concatenate([long_pcm, long_pcm[:777]])
    single = np.array(model.encode(pcm, chunk_frames=10_000))
    chunked = np.array(model.encode(pcm, chunk_frames=7))
    np.testing.assert_array_equal(chunked, single)
    np.testing.assert_array_equal(chunked[:, :, : offline_codes.shape[-1]], offline_codes)
    codes = offline_codes[:, :, :130]
    chunked_audio = np.array(model.decode(codes, chunk_frames=9))
    assert np.abs(chunked_audio - np.array(model.decode(codes, chunk_frames=1000))).max() <= 1e-6


def test_stream_bad_input(model):
    enc = model.stream_encoder(batch_size=2)
    with pytest.raises(MimiError, match="does not fit this stream"):
        enc.step(np.zeros(100, np.float32))
    with pytest.raises(MimiError, match="NaN"):
        enc.step(np.full((2, 100), np.nan, np.float32))
    with pytest.raises(MimiError, match="floating point"):
        enc.step(np.zeros((2, 100), np.int16))
    dec = model.stream_decoder(batch_size=1)
    with pytest.raises(MimiError, match="batch 2"):
        dec.step(np.zeros((2, 8, 1), np.int64))
    with pytest.raises(MimiError, match="out of range"):
        dec.step(np.full((1, 8, 1), 5000))
    with pytest.raises(MimiError, match="batch_size"):
        model.stream_encoder(batch_size=0)


def test_two_stream_seanet_is_exact(model, long_pcm):
    """The offline encoder splits its SEANet pass over two streams with a halo: identical to one pass."""
    import mlx.core as mx

    from mlx_mimi.layers.seanet import run_on_two_streams

    assert model.encoder.receptive_field == 4280  # 1 + 6 + 2 + 7 + 2*4 + 9*4 + 2*20 + 11*20 + 2*120 + 15*120 + 2*960

    x = mx.array(long_pcm[: 32 * FRAME])[None, :, None]
    state = model.encoder.initial_state(1, mx.float32)
    one, one_state = model.encoder(x, state)
    two, two_state = run_on_two_streams(model.encoder, x, state, model.encoder_halo, FRAME, 1 / 960)
    assert np.array_equal(np.array(one), np.array(two))
    assert all(np.array_equal(np.array(a), np.array(b)) for a, b in zip(one_state, two_state, strict=True))
    short, _ = run_on_two_streams(model.encoder, x, state, FRAME // 2, FRAME, 1 / 960)  # halo < receptive field
    assert not np.array_equal(np.array(one), np.array(short))
