"""Bad input to the Python API: each gets a precise MimiError (a ValueError), never a crash deep inside MLX."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlx_mimi import AudioError, CodesError, MimiError

FRAME = 1920


@pytest.mark.parametrize(
    "pcm, message",
    [
        (np.zeros((1, 2, FRAME), np.float32), "not mono"),
        (np.zeros((1, 1, 1, FRAME), np.float32), r"shape \(T,\), \(B, T\) or \(B, 1, T\)"),
        (np.zeros((5000, 1), np.float32), r"looks like \(samples, channels\)"),  # soundfile's always_2d shape
        (np.zeros((48000, 2), np.float32), r"pcm.mean\(axis=1\)"),
        (np.zeros(FRAME, np.int16), "floating point"),
        (mx.zeros((FRAME,), dtype=mx.int32), "floating point"),
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((0, FRAME), np.float32), "empty"),
        (np.array([0.0, np.nan] * FRAME, np.float32), "NaN"),
        (mx.array(np.array([0.0, np.inf] * FRAME, np.float32)), "NaN or infinite"),
    ],
)
def test_bad_audio(model, pcm, message):
    """Bad audio arrays raise the documented AudioError, from encode, encode_batch and a stream alike."""
    with pytest.raises(AudioError, match=message):
        model.encode(pcm)
    if isinstance(pcm, np.ndarray) and pcm.ndim == 1:
        with pytest.raises(AudioError, match=message):
            model.encode_batch([pcm])
        if pcm.size:  # a stream takes pushes of 0 samples
            with pytest.raises(AudioError, match=message):
                model.stream_encoder().step(pcm)


def test_audio_beyond_unit_range_is_encoded_as_given(model):
    """Finite floats beyond [-1, 1] are encoded as given (not clipped, not refused), as the references do."""
    pcm = np.sin(np.arange(4 * FRAME) / 7.0).astype(np.float32) * 3.0
    codes = np.array(model.encode(pcm))
    assert not np.array_equal(codes, np.array(model.encode(np.clip(pcm, -1, 1))))


@pytest.mark.parametrize("k", [0, 33, -1, 2.5, "8"])
def test_bad_num_codebooks(model, k):
    with pytest.raises(MimiError, match="num_codebooks"):
        model.encode(np.zeros(FRAME, np.float32), num_codebooks=k)


@pytest.mark.parametrize(
    "codes, message",
    [
        (np.full((1, 8, 4), 2048), r"out of range.*\[0, 2048\)"),
        (mx.full((1, 8, 4), 4096, dtype=mx.int32), "out of range"),
        (np.full((1, 8, 4), -1), "out of range"),
        (np.zeros((1, 33, 4), np.int64), "33 codebooks"),
        (np.zeros((1, 0, 4), np.int64), "0 codebooks"),
        (np.zeros((8, 4), np.int64), r"shape \(B, K, F\)"),
        (np.zeros((1, 8, 4), np.float32), "integers"),
        (np.zeros((1, 8, 0), np.int64), "empty"),
    ],
)
def test_bad_codes(model, codes, message):
    with pytest.raises(CodesError, match=message):
        model.decode(codes)


def test_errors_are_value_errors():
    import mlx_mimi

    assert issubclass(MimiError, ValueError)
    for name in ("AudioError", "CodesFileError", "ConfigError", "DeviceError", "ModelNotFoundError", "WeightsError"):
        assert issubclass(getattr(mlx_mimi, name), MimiError), name


@pytest.mark.parametrize("chunk", [0, -3, 2.5, True, "8"])
def test_bad_chunk_frames(model, chunk):
    with pytest.raises(MimiError, match="chunk_frames"):
        model.encode(np.zeros(FRAME, np.float32), chunk_frames=chunk)
    with pytest.raises(MimiError, match="chunk_frames"):
        model.decode(np.zeros((1, 8, 2), np.int64), chunk_frames=chunk)


def test_many_clips_run_in_bounded_passes(model):
    """A batch far larger than one pass (the schedule's frames_per_pass) is split into passes of whole clips."""
    per_pass = model.current_schedule().frames_per_pass
    pcm = np.random.default_rng(0).standard_normal((per_pass * 3 + 1, FRAME)).astype(np.float32)
    codes = np.array(model.encode(pcm * 0.1, num_codebooks=4))
    assert codes.shape == (pcm.shape[0], 4, 1)
    np.testing.assert_array_equal(codes[-1:], np.array(model.encode(pcm[-1] * 0.1, num_codebooks=4)))


def test_silence_and_tiny_inputs_are_fine(model):
    for n in (1, FRAME - 1, FRAME, FRAME + 1):
        codes = np.array(model.encode(np.zeros(n, np.float32)))
        assert codes.shape == (1, 32, -(-n // FRAME))
        assert codes.min() >= 0 and codes.max() < 2048
