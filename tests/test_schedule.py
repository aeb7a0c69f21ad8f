"""The schedule (mlx_mimi/schedule.py): every per-device choice in one object. The GPU schedule runs here on the CPU
device, so every branch a Mac takes (mx.fast.rope with an array offset, one attention over a whole chunk, whole-chunk
SEANets, multi-clip passes, MLX's own activations, no evaluation points, no second stream) runs in CI, and is held
to the determinism contract against the CPU schedule."""

from __future__ import annotations

import dataclasses

import mlx.core as mx
import numpy as np
import pytest
from contract import assert_audio_contract, assert_contract

import mlx_mimi
from mlx_mimi.schedule import cpu_schedule, for_device, gpu_schedule

FRAME, SR = 1920, 24_000


@pytest.fixture
def gpu_model(model_folder):
    """A model pinned to the GPU schedule, on the CPU device."""
    m = mlx_mimi.load(model_folder)
    m.schedule = gpu_schedule()
    return m


def test_the_schedules_differ_where_a_mac_differs():
    cpu, gpu = cpu_schedule(), gpu_schedule()
    assert for_device(mx.cpu) == cpu and for_device(mx.gpu) == gpu
    assert gpu.seanet_tile_frames is None and gpu.attention_block is None and not gpu.evaluation_points
    assert not (gpu.shared_rope or gpu.split_elementwise or gpu.fast_math)
    assert cpu.seanet_tile_frames and cpu.attention_block and cpu.evaluation_points and cpu.split_elementwise
    assert cpu.streaming().evaluation_points is False and cpu.streaming().chunk_frames == cpu.chunk_frames


def test_gpu_schedule_on_the_cpu_keeps_the_contract(model, gpu_model, speech_minute):
    """Codes, latents and decoded audio of the GPU schedule vs the CPU schedule, 60 s of speech: near-ties only."""
    pcm = speech_minute
    ours = np.array(model.encode(pcm))
    theirs = np.array(gpu_model.encode(pcm))
    latent = np.array(model.encode_latent(pcm))
    gpu_latent = np.array(gpu_model.encode_latent(pcm))
    scale = np.abs(latent).max()
    print(f"latent max difference {np.abs(gpu_latent - latent).max():.2e} of {scale:.2f}")
    assert np.abs(gpu_latent - latent).max() <= 1e-4 * scale
    assert_contract(model, pcm, theirs, ours, "60 s: GPU schedule vs CPU schedule", rates=True, latent=latent)
    codes = ours[:, :, :200]
    assert_audio_contract(gpu_model.decode(codes), model.decode(codes), "decode: GPU schedule vs CPU schedule")


def test_gpu_schedule_batches_and_streams(model, gpu_model, speech_long):
    """The GPU schedule's multi-clip passes and its streams (MLX's own activations, mx.fast.rope at an offset)."""
    lengths = (7 * SR + 11, 7 * SR + 5000, 12 * SR + 5, 12 * SR + 900)  # two pairs of similar lengths
    clips = [speech_long[i * SR : i * SR + n] for i, n in enumerate(lengths)]
    batch = gpu_model.encode_batch(clips, num_codebooks=8)
    for i, (clip, codes) in enumerate(zip(clips, batch, strict=True)):
        single = np.array(model.encode(clip, num_codebooks=8))
        assert_contract(model, clip, np.array(codes)[None], single, f"GPU-schedule batch clip {i} vs CPU alone")
    groups = gpu_model._clip_groups([len(c) // FRAME + 1 for c in clips], gpu_model.current_schedule())
    assert max(len(g) for g in groups) > 1  # several clips in one pass, as on a GPU
    pcm = speech_long[: 15 * SR + 333]
    enc = gpu_model.stream_encoder(num_codebooks=8)
    assert enc.schedule == gpu_schedule().streaming()
    streamed = np.concatenate([np.array(enc.step(pcm[i : i + 4000])) for i in range(0, len(pcm), 4000)], axis=-1)
    streamed = np.concatenate([streamed, np.array(enc.flush())], axis=-1)
    assert_contract(model, pcm, streamed, np.array(model.encode(pcm, num_codebooks=8)), "GPU-schedule stream")
    dec = gpu_model.stream_decoder()
    audio = np.concatenate([np.array(dec.step(streamed[..., i : i + 5])) for i in range(0, 40, 5)], axis=-1)
    assert_audio_contract(audio, model.decode(streamed[..., :40]), "GPU-schedule stream decoder vs CPU decode")


def test_a_pinned_schedule_is_used_and_chunk_frames_override_it(model_folder, speech_long):
    """``model.schedule`` pins a schedule; ``chunk_frames=`` overrides only the chunk; streams keep theirs."""
    m = mlx_mimi.load(model_folder)
    pcm = speech_long[: 20 * SR]
    m.schedule = dataclasses.replace(cpu_schedule(), chunk_frames=16)
    pinned = np.array(m.encode(pcm))
    m.schedule = None
    np.testing.assert_array_equal(pinned, np.array(m.encode(pcm, chunk_frames=16)))
