"""The API users meet Mimi through elsewhere: latent in / latent out, transformers' arguments (padding_mask,
length, sample_rate), and per-row streams (reset, join, leave one row; snapshots that another stream object or
process continues from)."""

from __future__ import annotations

import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
from contract import assert_audio_contract, assert_contract

from mlx_mimi import AudioError, MimiError
from mlx_mimi.audio import resample
from mlx_mimi.streaming import StreamSnapshot

FRAME, SR = 1920, 24_000


# -- latents ----------------------------------------------------------------------------------------------------
def test_latent_in_latent_out(model, speech_long):
    pcm = speech_long[: 8 * SR + 321]
    codes = np.array(model.encode(pcm, num_codebooks=16))
    latent = model.encode_latent(pcm)
    # 105 frames: one offline chunk, so encode searched these very rows; the same computation, bit for bit
    np.testing.assert_array_equal(np.array(model.quantize(latent, 16)), codes)
    dequantized = model.dequantize(codes)
    assert dequantized.shape == latent.shape and dequantized.dtype == mx.float32
    np.testing.assert_array_equal(np.array(model.decode_latent(dequantized)), np.array(model.decode(codes)))
    # an unquantized latent decodes too, and sounds closer to the input than 16 codebooks do
    audio = np.array(model.decode_latent(latent, length=len(pcm)))
    assert audio.shape == (1, 1, len(pcm))
    with pytest.raises(MimiError, match=r"shape \(B, F, 512\)"):
        model.quantize(np.zeros((1, 4, 256), np.float32))
    with pytest.raises(MimiError, match="NaN"):
        model.decode_latent(np.full((1, 4, 512), np.nan, np.float32))


def test_latent_streams(model, speech_long):
    """A stream of latents out (encoder) and in (decoder): the offline latent and audio, under the contract."""
    pcm = speech_long[: 6 * SR + 999]
    enc = model.stream_encoder(latent=True)
    parts = [np.array(enc.step(pcm[i : i + 3000])) for i in range(0, len(pcm), 3000)]
    streamed = np.concatenate([*parts, np.array(enc.flush())], axis=1)
    offline = np.array(model.encode_latent(pcm))
    assert streamed.shape == offline.shape
    assert np.abs(streamed - offline).max() <= 1e-4 * np.abs(offline).max()
    dec = model.stream_decoder(latent=True)
    audio = np.concatenate([np.array(dec.step(offline[:, i : i + 4])) for i in range(0, offline.shape[1], 4)], axis=-1)
    assert_audio_contract(audio, model.decode_latent(offline), "latent stream decoder vs decode_latent")


# -- transformers' arguments ------------------------------------------------------------------------------------
def test_padding_mask_batches_like_transformers(model, speech_long):
    """encode(pcm, padding_mask=...) as transformers takes it: each clip's codes are those it gets alone, and
    frame_mask says which frames are its own; decode(codes, padding_mask=...) keeps the mask's samples."""
    lengths = [5 * SR + 17, 3 * SR, 5 * SR - 1000]
    batch = np.zeros((3, max(lengths)), np.float32)
    mask = np.zeros((3, max(lengths)), np.int64)
    for i, n in enumerate(lengths):
        batch[i, :n] = speech_long[i * SR : i * SR + n]
        mask[i, :n] = 1
    codes = np.array(model.encode(batch, num_codebooks=8, padding_mask=mask))
    frames = np.array(model.frame_mask(mask))
    assert frames.shape == (3, codes.shape[-1]) and frames.sum(1).tolist() == [-(-n // FRAME) for n in lengths]
    for i, n in enumerate(lengths):
        alone = np.array(model.encode(batch[i, :n], num_codebooks=8))
        assert_contract(model, batch[i, :n], codes[i : i + 1, :, frames[i]], alone, f"padding_mask clip {i}")
    audio = np.array(model.decode(codes, padding_mask=mask))
    assert audio.shape == (3, 1, max(lengths))
    with pytest.raises(AudioError, match="right padding"):
        model.encode(batch, padding_mask=mask[:, ::-1].copy())
    with pytest.raises(AudioError, match=r"padding_mask must be \(B, T\)"):
        model.encode(batch, padding_mask=mask[:2])


def test_decode_length_and_sample_rates(model, speech_long):
    pcm24 = speech_long[: 4 * SR]
    codes = np.array(model.encode(pcm24))
    assert model.decode(codes, length=50_000).shape == (1, 1, 50_000)
    with pytest.raises(MimiError, match="longer than"):
        model.decode(codes, length=codes.shape[-1] * FRAME + 1)
    pcm16 = resample(pcm24, SR, 16_000)
    np.testing.assert_array_equal(
        np.array(model.encode(pcm16, sample_rate=16_000)), np.array(model.encode(resample(pcm16, 16_000, SR)))
    )
    clips = model.encode_batch([pcm16, pcm16[:20_000]], sample_rate=16_000)
    np.testing.assert_array_equal(np.array(clips[0]), np.array(model.encode(pcm16, sample_rate=16_000))[0])
    enc = model.stream_encoder(sample_rate=16_000)
    streamed = [np.array(enc.step(pcm16[i : i + 2000])) for i in range(0, len(pcm16), 2000)]
    streamed = np.concatenate([*streamed, np.array(enc.flush())], axis=-1)
    offline = np.array(model.encode(pcm16, sample_rate=16_000))
    assert streamed.shape == offline.shape  # streamed resampling (soxr's stream) vs whole-clip: a few samples' edge
    assert (streamed == offline).mean() > 0.9
    with pytest.raises(AudioError, match="sample_rate"):
        model.encode(pcm16, sample_rate=0)


# -- per-row streams ---------------------------------------------------------------------------------------------
def _alone(model, pcm: np.ndarray, k: int = 8) -> np.ndarray:
    enc = model.stream_encoder(num_codebooks=k)
    return np.concatenate([np.array(enc.step(pcm[i : i + FRAME])) for i in range(0, len(pcm), FRAME)], axis=-1)


def test_rows_join_and_leave_without_disturbing_the_others(model, speech_long):
    """A batch-3 stream: row 1 leaves after 40 frames and a new user joins there (reset(rows=[1])); row 2 idles
    (active mask) for 10 frames. Every row's codes equal a stream of its own, and nothing recompiles."""
    users = [speech_long[i * 7 * SR : i * 7 * SR + 90 * FRAME] for i in range(4)]
    enc = model.stream_encoder(batch_size=3, num_codebooks=8)
    enc.warmup()
    got = {0: [], 1: [], 2: [], 3: []}  # user -> frames
    seats = [0, 1, 2]  # row -> user
    position = {0: 0, 1: 0, 2: 0, 3: 0}
    masked_step = np.array([True, True, False])
    for step in range(80):
        if step == 40:
            enc.reset(rows=[1])  # user 1 leaves, user 3 joins
            seats[1] = 3
        idle = 20 <= step < 30
        frame = np.stack([users[u][position[u] * FRAME : (position[u] + 1) * FRAME] for u in seats])
        codes = np.array(enc.step(frame, active=masked_step if idle else None))
        for row, user in enumerate(seats):
            if idle and row == 2:
                continue
            got[user].append(codes[row])
            position[user] += 1
    traces = enc.traces
    for user, frames in got.items():
        codes = np.concatenate(frames, axis=-1)[None]
        alone = _alone(model, users[user][: codes.shape[-1] * FRAME])
        assert_contract(model, users[user][: codes.shape[-1] * FRAME], codes, alone, f"row user {user} vs alone")
    enc.step(np.zeros((3, FRAME), np.float32))
    assert enc.traces == traces  # resets and masks recompiled nothing
    with pytest.raises(MimiError, match="frame boundary"):
        enc.step(np.zeros((3, 100), np.float32))
        enc.reset(rows=[0])
    with pytest.raises(MimiError, match="active must be 3 booleans"):
        enc.step(np.zeros((3, FRAME), np.float32), active=[True, False])


SNAPSHOT_SCRIPT = """
import sys, numpy as np, mlx_mimi
from mlx_mimi.streaming import StreamSnapshot
model = mlx_mimi.load(sys.argv[1])
enc = model.stream_encoder(num_codebooks=8)
enc.restore(StreamSnapshot.load(sys.argv[2]))
pcm = np.load(sys.argv[3])
np.save(sys.argv[4], np.concatenate([np.array(enc.step(pcm)), np.array(enc.flush())], axis=-1))
"""


def test_snapshots_continue_elsewhere(model, model_folder, speech_long, tmp_path):
    """A stream's state, snapshotted mid-frame, continues in another stream object and in another process with
    the same output bit for bit; one row's snapshot moves a user to a row of another batched stream."""
    pcm = speech_long[: 30 * SR + 555]
    cut = 12 * SR + 1234  # mid-frame: the pending samples travel with the snapshot
    enc = model.stream_encoder(num_codebooks=8)
    head = np.array(enc.step(pcm[:cut]))
    snap = enc.snapshot()
    tail = np.concatenate([np.array(enc.step(pcm[cut:])), np.array(enc.flush())], axis=-1)
    other = model.stream_encoder(num_codebooks=8)
    other.restore(snap)
    np.testing.assert_array_equal(np.concatenate([np.array(other.step(pcm[cut:])), np.array(other.flush())], -1), tail)
    snap.save(tmp_path / "stream.safetensors")
    np.save(tmp_path / "rest.npy", pcm[cut:])
    p = subprocess.run(
        [sys.executable, "-c", SNAPSHOT_SCRIPT, str(model_folder), str(tmp_path / "stream.safetensors")]
        + [str(tmp_path / "rest.npy"), str(tmp_path / "out.npy")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), tail)
    assert head.shape[-1] + tail.shape[-1] == -(-len(pcm) // FRAME)
    # one row moves: row 1 of a batch-2 stream -> a row of another batch-2 stream, whose rows heard other audio.
    # At the same row index a row's arithmetic is its own: bit-identical. At another index a BLAS may treat rows by
    # position (the determinism contract promises bit-identity only for the same batch composition): near-ties.
    a = model.stream_encoder(batch_size=2, num_codebooks=8)
    two = np.stack([pcm[: 20 * FRAME], pcm[SR : SR + 20 * FRAME]])
    elsewhere = np.stack([pcm[2 * SR : 2 * SR + 10 * FRAME], pcm[3 * SR : 3 * SR + 10 * FRAME]])
    a.step(two[:, : 10 * FRAME])
    moved = {}
    for row in (1, 0):
        b = model.stream_encoder(batch_size=2, num_codebooks=8)
        b.step(elsewhere)
        b.restore(a.snapshot(rows=[1]), rows=[row])
        rest = elsewhere.copy()
        rest[row] = two[1, 10 * FRAME :]
        moved[row] = np.array(b.step(rest))[row : row + 1]
    stayed = np.array(a.step(two[:, 10 * FRAME :]))[1:2]
    np.testing.assert_array_equal(moved[1], stayed)
    latent = np.array(model.encode_latent(two[1]))[:, 10:]
    assert_contract(model, two[1], moved[0], stayed, "a stream row moved to another row index", latent=latent)
    with pytest.raises(MimiError, match="another stream"):
        model.stream_encoder(num_codebooks=4).restore(snap)
    with pytest.raises(MimiError, match="holds 1 row"):
        b.restore(a.snapshot(rows=[1]))
    assert isinstance(StreamSnapshot.load(tmp_path / "stream.safetensors"), StreamSnapshot)


def test_decoder_rows(model, speech_long):
    """The decoder's rows reset and idle alone too."""
    codes = np.array(model.encode(np.stack([speech_long[: 8 * SR], speech_long[SR : 9 * SR]]), num_codebooks=8))
    dec = model.stream_decoder(batch_size=2)
    first = np.array(dec.step(codes[..., :20]))
    dec.reset(rows=[1])
    again = np.array(dec.step(np.stack([codes[0, :, 20:40], codes[1, :, :20]])))
    alone = np.array(model.stream_decoder().step(codes[1:, :, :20]))
    assert_audio_contract(again[1:], alone, "decoder row 1 after its reset vs alone")
    whole = np.array(model.stream_decoder().step(codes[:1, :, :40]))
    assert_audio_contract(np.concatenate([first[:1], again[:1]], axis=-1), whole, "decoder row 0 undisturbed")


def test_row_and_snapshot_misuse_is_refused_before_anything_changes(model, speech_long):
    enc = model.stream_encoder(batch_size=2, num_codebooks=8)
    enc.step(np.zeros((2, 3 * FRAME + 100), np.float32))  # 100 samples pending
    whole = enc.snapshot()
    other = model.stream_encoder(batch_size=2, num_codebooks=8)
    with pytest.raises(MimiError, match="restore it whole"):
        other.restore(whole, rows=[0, 1])  # the pending samples could not travel with rows
    with pytest.raises(MimiError, match="active mask takes whole frames"):
        enc.step(np.zeros((2, FRAME), np.float32), active=[True, False])
    for bad in (True, 1.5, "0", [0, 0], [5]):
        with pytest.raises(MimiError, match="rows must be"):
            enc.snapshot(rows=bad)
    # a snapshot of another shape changes nothing
    before = enc.snapshot()
    wrong = StreamSnapshot({k: v[:, :1] if v.ndim > 1 else v for k, v in whole.arrays.items()}, dict(whole.meta))
    with pytest.raises(MimiError, match="the snapshot's"):
        enc.restore(wrong)
    after = enc.snapshot()
    assert all(np.array_equal(before.arrays[k], after.arrays[k]) for k in before.arrays)
    assert before.meta == after.meta


def test_resampled_padding_masks_and_short_clips(model, speech_long):
    lengths = [16_000 * 2 + 5, 16_000]
    batch = np.zeros((2, 16_000 * 3), np.float32)  # padded past the longest clip, as padding="max_length" does
    mask = np.zeros_like(batch, dtype=np.int64)
    for i, n in enumerate(lengths):
        batch[i, :n] = resample(speech_long[: 3 * SR], SR, 16_000)[:n]
        mask[i, :n] = 1
    codes = model.encode(batch, sample_rate=16_000, padding_mask=mask)
    frames = model.frame_mask(mask, sample_rate=16_000)
    assert frames.shape == (2, codes.shape[-1])
    with pytest.raises(AudioError, match="empty"):
        model.encode(np.zeros(10, np.float32), sample_rate=768_000)
    with pytest.raises(AudioError, match="too short"):
        model.encode_batch([np.zeros(10, np.float32)], sample_rate=768_000)
