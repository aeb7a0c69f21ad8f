"""The 9-codebook variant (seed 003): surgery, parity with the seed's CausalBridgeQuantizer built on
vector_quantize_pytorch, streaming == offline, the CLI, and training of the new heads in MLX."""

from __future__ import annotations

import json
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from conftest import require
from contract import assert_audio_contract, assert_contract

import mlx_mimi
from mlx_mimi import MimiError
from mlx_mimi.codes import load_codes
from mlx_mimi.train import align_teacher, latest_checkpoint, train_heads
from mlx_mimi.variant import nine_codebooks

SR = 24_000


@pytest.fixture(scope="module")
def variant(model):
    return nine_codebooks(model, seed=0, distill_dim=64)


@pytest.fixture(scope="module")
def pcm(speech_long):
    return speech_long[: 20 * SR]


@pytest.fixture(scope="module")
def latent(model, pcm):
    return np.array(model.encode_latent(pcm))


def test_surgery_follows_the_seed_table(model, variant):
    q, mimi_q = variant.quantizer, model.quantizer
    assert variant.config.quantizer_topology == "chain" and variant.config.chain_stages == [1, 1, 7]
    assert variant.num_codebooks == 9
    # head 1 = Mimi codebook 0 with the semantic projections; heads 2-8 = Mimi codebooks 1-7 with the acoustic ones
    np.testing.assert_array_equal(np.array(q.stages[1].codebooks), np.array(mimi_q.semantic.codebooks[:1]))
    np.testing.assert_array_equal(np.array(q.stages[1].input_proj), np.array(mimi_q.semantic.input_proj))
    np.testing.assert_array_equal(np.array(q.stages[2].codebooks), np.array(mimi_q.acoustic.codebooks[:7]))
    np.testing.assert_array_equal(np.array(q.stages[2].output_proj), np.array(mimi_q.acoustic.output_proj))
    for name in ("encoder.init_conv.weight", "encoder_transformer.layers.0.mlp.fc1.weight", "decoder.final_conv.bias"):
        a, b = (dict(mlx_mimi_flat(m))[name] for m in (variant, model))
        np.testing.assert_array_equal(np.array(a), np.array(b))
    # head 0 is fresh and seeded
    again = nine_codebooks(model, seed=0, distill_dim=64)
    other = nine_codebooks(model, seed=1, distill_dim=64)
    np.testing.assert_array_equal(np.array(again.quantizer.stages[0].codebooks), np.array(q.stages[0].codebooks))
    assert not np.array_equal(np.array(other.quantizer.stages[0].input_proj), np.array(q.stages[0].input_proj))


def mlx_mimi_flat(model):
    from mlx.utils import tree_flatten

    return tree_flatten(model.parameters())


def test_surgery_refuses_what_it_cannot_build(model, variant):
    with pytest.raises(MimiError, match="already a variant"):
        nine_codebooks(variant)
    with pytest.raises(MimiError, match="content_init"):
        nine_codebooks(model, content_init="zeros")
    with pytest.raises(MimiError, match="needs latents"):
        nine_codebooks(model, content_init="kmeans")
    with pytest.raises(MimiError, match="at least 2048 latent frames"):
        nine_codebooks(model, content_init="kmeans", latents=np.zeros((100, 512), np.float32))


def test_kmeans_init_covers_the_latents(model, latent):
    frames = latent.reshape(-1, 512)
    built = nine_codebooks(model, seed=0, content_init="kmeans", latents=np.concatenate([frames] * 9), kmeans_iters=3)
    codes = np.array(built.quantizer.encode(mx.array(latent), 1))
    assert np.unique(codes).size > 150  # every distinct frame is a seed of its own cluster


def _seed_quantizer(variant):
    """Seed 003's CausalBridgeQuantizer, as written there, with Mimi's 256-d projections (codebook_dim=256),
    loaded with the variant's weights (the projections have no bias in Mimi: zero)."""
    import torch
    from torch import nn
    from vector_quantize_pytorch import ResidualVQ, VectorQuantize

    class CausalBridgeQuantizer(nn.Module):
        def __init__(self, codec_dim=512, qwen_dim=64, wavlm_dim=1024, codebook_dim=256):
            super().__init__()
            self.head_content = VectorQuantize(dim=codec_dim, codebook_size=2048, codebook_dim=codebook_dim)
            self.head_prosody = VectorQuantize(dim=codec_dim, codebook_size=2048, codebook_dim=codebook_dim)
            self.acoustic_residual = ResidualVQ(
                dim=codec_dim, num_quantizers=7, codebook_size=2048, codebook_dim=codebook_dim
            )
            self.proj_qwen = nn.Linear(codec_dim, qwen_dim)
            self.proj_wavlm = nn.Linear(codec_dim, wavlm_dim)

        def forward(self, x):
            q_c, idx_c, _ = self.head_content(x)
            resid_1 = x - q_c.detach()
            q_p, idx_p, _ = self.head_prosody(resid_1)
            resid_2 = x - (q_c + q_p)
            q_a, idx_a, _ = self.acoustic_residual(resid_2)
            q_total = q_c + q_p + q_a
            # the seed's torch.cat([idx_c, idx_p, idx_a], dim=1) cannot run ((B, F), (B, F), (B, F, 7)):
            # the codes are concatenated on the codebook axis instead
            return q_total, torch.cat([idx_c[..., None], idx_p[..., None], idx_a], dim=-1)

    seed = CausalBridgeQuantizer().eval()
    stages = variant.quantizer.stages

    def t(a):
        return torch.tensor(np.array(a))

    with torch.no_grad():
        for vq, stage in ((seed.head_content, stages[0]), (seed.head_prosody, stages[1])):
            vq.project_in.weight.copy_(t(stage.input_proj))
            vq.project_in.bias.zero_()
            vq.project_out.weight.copy_(t(stage.output_proj))
            vq.project_out.bias.zero_()
            vq._codebook.embed.copy_(t(stage.codebooks))
        rvq = seed.acoustic_residual
        rvq.project_in.weight.copy_(t(stages[2].input_proj))
        rvq.project_in.bias.zero_()
        rvq.project_out.weight.copy_(t(stages[2].output_proj))
        rvq.project_out.bias.zero_()
        for j, layer in enumerate(rvq.layers):
            layer._codebook.embed.copy_(t(stages[2].codebooks[j : j + 1]))
    return seed


def test_parity_with_the_seed_module(variant, pcm, latent):
    require("torch", "vector_quantize_pytorch")
    import torch

    seed = _seed_quantizer(variant)
    with torch.no_grad():
        q_total, idx = seed(torch.tensor(latent))
    theirs = idx.numpy().transpose(0, 2, 1)  # (B, 9, F)
    ours = np.array(variant.encode(pcm))
    assert ours.shape == theirs.shape == (1, 9, latent.shape[1])
    result = assert_contract(variant, pcm, ours, theirs, "9-codebook encode vs the seed's module", latent=latent)
    assert result.identical >= 0.99
    used = [len(np.unique(ours[0, k])) for k in range(9)]
    print(f"distinct codes per codebook on 20 s: {used}")
    assert min(used[1:]) > 5  # the comparison is not between constant codes
    # decode: the latent our quantizer sums from the codes = the seed's q_total from the same codes
    ours_latent = np.array(variant.quantizer.decode(mx.array(theirs.transpose(0, 2, 1))))
    err = float(np.abs(ours_latent - q_total.numpy()).max())
    print(f"decode latent vs the seed's q_total: max abs difference {err:.2e}")
    assert err <= 1e-5


def test_streaming_equals_offline(variant, pcm, latent):
    offline = np.array(variant.encode(pcm))
    enc = variant.stream_encoder(batch_size=1, num_codebooks=9)
    rng = np.random.default_rng(0)
    parts, i = [], 0
    while i < len(pcm):
        n = int(rng.integers(1, 6000))
        parts.append(np.array(enc.step(pcm[i : i + n])))
        i += n
    parts.append(np.array(enc.flush()))
    streamed = np.concatenate(parts, axis=-1)
    assert_contract(variant, pcm, offline, streamed, "9-codebook stream vs offline", latent=latent)
    dec = variant.stream_decoder(batch_size=1)
    audio = np.concatenate([np.array(dec.step(mx.array(offline[..., f : f + 3]))) for f in range(0, 250, 3)], -1)
    assert_audio_contract(np.array(variant.decode(offline))[..., : audio.shape[-1]], audio, "9-codebook decode stream")


def test_fewer_codebooks_truncate_the_chain(variant, pcm):
    full = np.array(variant.encode(pcm))
    for k in (1, 2, 5):
        part = np.array(variant.encode(pcm, num_codebooks=k))
        np.testing.assert_array_equal(part, full[:, :k])
        assert variant.decode(part).shape[-1] == full.shape[-1] * 1920
    with pytest.raises(MimiError, match=r"num_codebooks must be in \[1, 9\]"):
        variant.encode(pcm, num_codebooks=10)


def test_cli_builds_encodes_and_decodes(converted_folder, tmp_path, pcm):
    out = tmp_path / "mimi9"
    run = [sys.executable, "-m", "mlx_mimi.cli"]
    p = subprocess.run(
        [*run, "variant", "nine-codebooks", str(converted_folder), "-o", str(out), "--distill-dim", "64"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "config.json").read_text())["quantizer_topology"] == "chain"
    wav = tmp_path / "talk.wav"
    sf.write(wav, pcm[: 5 * SR], SR, subtype="FLOAT")
    p = subprocess.run([*run, "encode", str(wav), "--model", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    codes = load_codes(tmp_path / "talk.safetensors")
    loaded = mlx_mimi.load(out)
    np.testing.assert_array_equal(codes.codes, np.array(loaded.encode(pcm[: 5 * SR]))[0])
    assert codes.codes.shape[0] == 9
    p = subprocess.run(
        [*run, "decode", str(tmp_path / "talk.safetensors"), "--model", str(out)], capture_output=True, text=True
    )
    assert p.returncode == 0 and (tmp_path / "talk.mimi.wav").exists(), p.stderr
    p = subprocess.run([*run, "info", str(out)], capture_output=True, text=True)
    assert "codebooks: 9 (in a chain: content 1, prosody 1, acoustic 7;" in p.stdout, p.stdout + p.stderr
    p = subprocess.run(
        [*run, "variant", "nine-codebooks", str(out), "-o", str(tmp_path / "again")], capture_output=True, text=True
    )
    assert (
        p.returncode == 1
        and p.stderr.strip()
        == "error: the 9-codebook surgery starts from Mimi's split quantizer; this model is already a variant"
    )


def test_teacher_alignment_repeats_tokens_by_duration():
    teacher = np.arange(6, dtype=np.float32).reshape(1, 3, 2)
    aligned = align_teacher(teacher, np.array([[1, 0, 2]]), 3)
    np.testing.assert_array_equal(aligned[0], [[0, 1], [4, 5], [4, 5]])
    with pytest.raises(MimiError, match="durations sum to 2 frames, the audio has 3"):
        align_teacher(teacher, np.array([[1, 0, 1]]), 3)


def _synthetic_batches(latent, dim, seed=0, batch=4, window=40):
    """Teacher features a fixed linear map of the latent's per-token mean, tokens of 1-3 frames."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((latent.shape[-1], dim)).astype(np.float32) / np.sqrt(latent.shape[-1])
    frames = latent[0]
    while True:
        lat, teachers, durations = [], [], []
        for _ in range(batch):
            start = int(rng.integers(frames.shape[0] - window))
            x = frames[start : start + window]
            d = []
            while sum(d) < window:
                d.append(min(int(rng.integers(1, 4)), window - sum(d)))
            bounds = np.cumsum([0] + d)
            tokens = np.stack([x[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]) @ w
            lat.append(x)
            teachers.append(tokens)
            durations.append(d)
        width = max(len(d) for d in durations)  # pad tokens with zero-duration entries
        t = np.zeros((batch, width, dim), np.float32)
        dur = np.zeros((batch, width), np.int64)
        for i, (tok, d) in enumerate(zip(teachers, durations, strict=True)):
            t[i, : len(d)], dur[i, : len(d)] = tok, d
        yield {"latent": np.stack(lat), "teacher": t, "durations": dur}


def test_training_lowers_the_loss_and_grows_usage(model, latent, tmp_path):
    variant = nine_codebooks(model, seed=0, distill_dim=64)
    before = np.unique(np.array(variant.quantizer.encode(mx.array(latent), 1))).size
    log = []
    train_heads(
        variant,
        _synthetic_batches(latent, 64),
        steps=40,
        lr=1e-3,
        checkpoint_dir=tmp_path / "ckpt",
        checkpoint_every=20,
        log=log.append,
    )
    for e in log[::5]:
        print(
            f"step {e.step}: loss {e.loss:.4f} distill {e.distill:.4f} commitment {e.commitment:.4f} "
            f"codes used {e.codes_used} alive {e.alive} replaced {e.replaced}"
        )
    first, last = np.mean([e.distill for e in log[:5]]), np.mean([e.distill for e in log[-5:]])
    after = np.unique(np.array(variant.quantizer.encode(mx.array(latent), 1))).size
    print(f"distill {first:.4f} -> {last:.4f}; content codes used on 20 s: {before} -> {after}")
    assert last < 0.8 * first
    assert after > before
    # the trained head round-trips through a checkpoint: the folder loads as a model with the same codes
    checkpoint = latest_checkpoint(tmp_path / "ckpt")
    assert checkpoint.name == "step-000040"
    loaded = mlx_mimi.load(checkpoint)
    np.testing.assert_array_equal(
        np.array(loaded.quantizer.encode(mx.array(latent), 9)), np.array(variant.quantizer.encode(mx.array(latent), 9))
    )
    np.testing.assert_array_equal(np.array(loaded.quantizer.bridge.weight), np.array(variant.quantizer.bridge.weight))


def test_training_resumes_from_the_latest_checkpoint(model, latent, tmp_path):
    first = nine_codebooks(model, seed=0, distill_dim=64)
    train_heads(first, _synthetic_batches(latent, 64), steps=6, lr=1e-3, checkpoint_dir=tmp_path, checkpoint_every=3)
    resumed = nine_codebooks(model, seed=0, distill_dim=64)  # a fresh process would rebuild or load the model
    log = train_heads(
        resumed, _synthetic_batches(latent, 64, seed=1), steps=8, lr=1e-3, checkpoint_dir=tmp_path, checkpoint_every=3
    )
    assert [e.step for e in log] == [7, 8]
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000006", "step-000008"]  # keeps 2
    assert not list(tmp_path.glob(".staging*"))


def test_train_heads_command(converted_folder, latent, tmp_path):
    run = [sys.executable, "-m", "mlx_mimi.cli"]
    model_dir = tmp_path / "mimi9"
    p = subprocess.run(
        [*run, "variant", "nine-codebooks", str(converted_folder), "-o", str(model_dir), "--distill-dim", "16"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    data = tmp_path / "feats"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        frames = latent[0, i * 100 : (i + 1) * 100]
        np.savez(data / f"c{i}.npz", latent=frames, teacher=rng.standard_normal((50, 16)), durations=np.full(50, 2))
    p = subprocess.run(
        [
            *run,
            "train-heads",
            str(model_dir),
            "--data",
            str(data),
            "-o",
            str(tmp_path / "runs"),
            "--steps",
            "3",
            "--batch-size",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert "step 3: loss" in p.stderr and "latest: step-000003" in p.stdout
    assert mlx_mimi.load(tmp_path / "runs" / "step-000003").num_codebooks == 9


def test_non_finite_training_stops_before_saving(model, latent, tmp_path):
    """NaN teacher features stop training with one error before any update or checkpoint; in a .npz clip the error
    names the file, as do a junk file and durations that do not fit the clip."""
    variant = mlx_mimi.nine_codebooks(model, seed=4, distill_dim=16)
    before = np.array(variant.quantizer.stages[0].codebooks)
    teacher = np.full((1, latent.shape[1], 16), np.nan, np.float32)
    with pytest.raises(mlx_mimi.MimiError, match="teacher features hold NaN"):
        mlx_mimi.train_heads(
            variant, iter([{"latent": latent, "teacher": teacher}]), steps=1, checkpoint_dir=tmp_path / "run"
        )
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    np.testing.assert_array_equal(np.array(variant.quantizer.stages[0].codebooks), before)
    # a loss that overflows to inf with finite inputs is caught at the step, before anything changes
    huge = np.full((1, latent.shape[1], 16), 3e38, np.float32)
    with pytest.raises(mlx_mimi.MimiError, match="step 1: the loss is inf"):
        mlx_mimi.train_heads(variant, iter([{"latent": latent, "teacher": huge}]), steps=1)
    np.testing.assert_array_equal(np.array(variant.quantizer.stages[0].codebooks), before)

    from mlx_mimi.train import npz_batches

    data = tmp_path / "feats"
    data.mkdir()
    frames = latent[0, :40]
    np.savez(data / "a.npz", latent=frames, teacher=np.full((20, 16), np.nan), durations=np.full(20, 2))
    with pytest.raises(mlx_mimi.MimiError, match="a.npz: teacher features hold NaN"):
        next(npz_batches(variant, data, 1))
    np.savez(data / "a.npz", latent=frames, teacher=np.zeros((20, 16)), durations=np.full(20, 3))
    with pytest.raises(mlx_mimi.MimiError, match="a.npz: durations sum to 60 frames, the audio has 40"):
        next(npz_batches(variant, data, 1))
    (data / "a.npz").write_bytes(b"not a zip file")
    with pytest.raises(mlx_mimi.MimiError, match="a.npz: "):
        next(npz_batches(variant, data, 1))
