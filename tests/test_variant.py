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
from mlx_mimi.train import TrainSettings, align_teacher, latest_checkpoint, train_heads
from mlx_mimi.variant import nine_codebooks

SR = 24_000


@pytest.fixture(scope="module")
def variant(model):
    return nine_codebooks(model, seed=0)


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
    # head 0 is seed 003's VectorQuantize(dim=512, codebook_size=2048): a 512-d codebook on the latent, no projection
    assert variant.config.chain_projections == [False, True, True]
    assert "input_proj" not in q.stages[0] and q.stages[0].codebooks.shape == (1, 2048, 512)
    # head 1 = Mimi codebook 0 with the semantic projections; heads 2-8 = Mimi codebooks 1-7 with the acoustic ones
    np.testing.assert_array_equal(np.array(q.stages[1].codebooks), np.array(mimi_q.semantic.codebooks[:1]))
    np.testing.assert_array_equal(np.array(q.stages[1].input_proj), np.array(mimi_q.semantic.input_proj))
    np.testing.assert_array_equal(np.array(q.stages[2].codebooks), np.array(mimi_q.acoustic.codebooks[:7]))
    np.testing.assert_array_equal(np.array(q.stages[2].output_proj), np.array(mimi_q.acoustic.output_proj))
    for name in ("encoder.init_conv.weight", "encoder_transformer.layers.0.mlp.fc1.weight", "decoder.final_conv.bias"):
        a, b = (dict(mlx_mimi_flat(m))[name] for m in (variant, model))
        np.testing.assert_array_equal(np.array(a), np.array(b))
    # head 0 is fresh and seeded; the projected reading stays selectable
    again = nine_codebooks(model, seed=0)
    other = nine_codebooks(model, seed=1)
    np.testing.assert_array_equal(np.array(again.quantizer.stages[0].codebooks), np.array(q.stages[0].codebooks))
    assert not np.array_equal(np.array(other.quantizer.stages[0].codebooks), np.array(q.stages[0].codebooks))
    projected = nine_codebooks(model, seed=0, content_projection=True)
    assert projected.config.chain_projections == [True, True, True]
    assert projected.quantizer.stages[0].input_proj.shape == (256, 512)


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
    """Seed 003's CausalBridgeQuantizer, as written there: the content head is ``VectorQuantize(dim=512,
    codebook_size=2048)`` with the library's defaults (no projection, unless the variant was built with
    ``content_projection``); the transplanted heads carry Mimi's 256-d projections (codebook_dim=256). Loaded with
    the variant's weights (Mimi's projections have no bias: zero)."""
    import torch
    from torch import nn
    from vector_quantize_pytorch import ResidualVQ, VectorQuantize

    content_dim = 256 if "input_proj" in variant.quantizer.stages[0] else None

    class CausalBridgeQuantizer(nn.Module):
        def __init__(self, codec_dim=512, qwen_dim=64, wavlm_dim=1024, codebook_dim=256):
            super().__init__()
            self.head_content = VectorQuantize(dim=codec_dim, codebook_size=2048, codebook_dim=content_dim)
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
            vq._codebook.embed.copy_(t(stage.codebooks))
            if "input_proj" not in stage:
                assert isinstance(vq.project_in, nn.Identity)  # the library's default: no projection
                continue
            vq.project_in.weight.copy_(t(stage.input_proj))
            vq.project_in.bias.zero_()
            vq.project_out.weight.copy_(t(stage.output_proj))
            vq.project_out.bias.zero_()
        rvq = seed.acoustic_residual
        rvq.project_in.weight.copy_(t(stages[2].input_proj))
        rvq.project_in.bias.zero_()
        rvq.project_out.weight.copy_(t(stages[2].output_proj))
        rvq.project_out.bias.zero_()
        for j, layer in enumerate(rvq.layers):
            layer._codebook.embed.copy_(t(stages[2].codebooks[j : j + 1]))
    return seed


@pytest.mark.parametrize("content_projection", [False, True])
def test_parity_with_the_seed_module(model, variant, pcm, latent, content_projection):
    require("torch", "vector_quantize_pytorch")
    import torch

    if content_projection:
        variant = nine_codebooks(model, seed=0, content_projection=True)
    seed = _seed_quantizer(variant)
    with torch.no_grad():
        q_total, idx = seed(torch.tensor(latent))
    theirs = idx.numpy().transpose(0, 2, 1)  # (B, 9, F)
    ours = np.array(variant.encode(pcm))
    assert ours.shape == theirs.shape == (1, 9, latent.shape[1])
    label = f"9-codebook encode vs the seed's module (content projection {content_projection})"
    result = assert_contract(variant, pcm, ours, theirs, label, latent=latent)
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
        [*run, "variant", "nine-codebooks", str(converted_folder), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["quantizer_topology"] == "chain" and config["chain_projections"] == [False, True, True]
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


def test_the_defaults_are_the_seeds():
    """Seed 003: AdamW (0.8, 0.99); 1e-4 for heads 0/1, 1e-5 for heads 2-8, all of them trained; its losses only
    (the heads' commitment losses discarded); qwen 1536-d, WavLM 1024-d."""
    s = TrainSettings(steps=1)
    assert s.betas == (0.8, 0.99) and (s.content_lr, s.prosody_lr, s.acoustic_lr) == (1e-4, 1e-4, 1e-5)
    assert s.heads == ("content", "prosody", "acoustic") and s.commitment_weight == 0.0
    assert (s.distill_dim, s.wavlm_dim, s.accumulate) == (1536, 1024, 1)
    with pytest.raises(MimiError, match="heads must be among"):
        TrainSettings(steps=1, heads=("timbre",))
    with pytest.raises(MimiError, match="acoustic_lr must be a positive number"):
        TrainSettings(steps=1, acoustic_lr=0)


def test_training_with_the_seeds_defaults(model, latent, tmp_path):
    """Every head trains at the seed's rates: the distillation loss falls, the content head's usage grows, the
    prosody and acoustic heads' codebooks move by EMA; the checkpoint reloads to the same codes and bridges."""
    variant = nine_codebooks(model, seed=0)
    before = np.unique(np.array(variant.quantizer.encode(mx.array(latent), 1))).size
    acoustic_before = np.array(variant.quantizer.stages[2].codebooks)
    log = []
    train_heads(
        variant,
        _synthetic_batches(latent, 64),
        steps=40,
        distill_dim=64,
        bridge_lr=1e-3,
        checkpoint_dir=tmp_path / "ckpt",
        checkpoint_every=20,
        log=log.append,
    )
    for e in log[::5] + log[-1:]:
        print(
            f"step {e.step}: loss {e.loss:.4f} distill {e.distill:.4f} commitment {e.commitment:.4f} "
            f"codes used {e.codes_used} alive {e.alive} replaced {e.replaced}"
        )
    first, last = np.mean([e.distill for e in log[:5]]), np.mean([e.distill for e in log[-5:]])
    after = np.unique(np.array(variant.quantizer.encode(mx.array(latent), 1))).size
    print(f"distill {first:.4f} -> {last:.4f}; content codes used on 20 s: {before} -> {after}")
    assert last < 0.8 * first
    assert after > before
    assert not np.array_equal(np.array(variant.quantizer.stages[2].codebooks), acoustic_before)
    checkpoint = latest_checkpoint(tmp_path / "ckpt")
    assert checkpoint.name == "step-000040"
    loaded = mlx_mimi.load(checkpoint)
    np.testing.assert_array_equal(
        np.array(loaded.quantizer.encode(mx.array(latent), 9)), np.array(variant.quantizer.encode(mx.array(latent), 9))
    )
    state = mx.load(str(checkpoint / "training.safetensors"))
    assert state["bridge.qwen.weight"].shape == (64, 512) and state["bridge.wavlm.weight"].shape == (1024, 512)


def _arrays(variant, trainer_state) -> dict[str, np.ndarray]:
    out = {f"q.{k}": np.array(v) for k, v in mlx_mimi_flat(variant) if k.startswith("quantizer.")}
    out.update({k: np.array(v) for k, v in trainer_state.items() if not k.startswith("rng")})
    return out


def test_accumulated_micro_batches_equal_one_batch(model, latent):
    """N micro-batches of batch 1 accumulated = one step of batch N: the same losses, updated projections, bridges,
    optimizer state, codebooks and EMA statistics (within float rounding), with loss B and commitment on."""
    from mlx_mimi.train import HeadTrainer

    batch = next(_synthetic_batches(latent, 32, seed=4, batch=4, window=30))
    rng = np.random.default_rng(1)
    batch["wavlm"] = rng.standard_normal((4, 30, 16)).astype(np.float32)
    settings = dict(distill_dim=32, wavlm_dim=16, commitment_weight=0.5, prosody_lr=1e-3, acoustic_lr=1e-3)
    runs = {}
    for accumulate in (1, 4):
        variant = nine_codebooks(model, seed=2)
        trainer = HeadTrainer(variant, TrainSettings(steps=1, accumulate=accumulate, **settings))
        from mlx_mimi.train import _batch

        if accumulate == 1:
            micro = [_batch(variant, batch, trainer.settings)]
        else:
            micro = [_batch(variant, {k: v[i : i + 1] for k, v in batch.items()}, trainer.settings) for i in range(4)]
        logs = [trainer.train_step(micro) for _ in range(2)]  # two steps: the second from updated state
        runs[accumulate] = (logs, _arrays(variant, trainer.state_arrays()))
    (logs_one, one), (logs_acc, acc) = runs[1], runs[4]
    for a, b in zip(logs_one, logs_acc, strict=True):
        print(f"step {a.step}: loss {a.loss:.6f} vs {b.loss:.6f}, wavlm {a.wavlm:.6f} vs {b.wavlm:.6f}")
        np.testing.assert_allclose(
            [a.loss, a.distill, a.wavlm, a.commitment], [b.loss, b.distill, b.wavlm, b.commitment], rtol=1e-5
        )
        assert a.codes_used == b.codes_used and a.replaced == b.replaced
    assert one.keys() == acc.keys()
    worst = max(float(np.abs(one[k] - acc[k]).max() / (np.abs(one[k]).max() + 1e-12)) for k in one)
    print(f"{len(one)} arrays after 2 steps; worst relative difference {worst:.2e}")
    assert worst <= 1e-4
    assert logs_one[0].wavlm > 0 and logs_one[0].commitment > 0


def test_loss_b_trains_the_prosody_head(model, latent):
    """A batch with ``wavlm`` targets adds MSE(proj_wavlm(q_c + q_p), wavlm): the WavLM bridge and the prosody
    projections move; without them the WavLM bridge does not (not even by weight decay)."""
    from mlx_mimi.train import HeadTrainer, _batch

    batch = next(_synthetic_batches(latent, 32, seed=5, batch=2, window=20))
    for with_wavlm in (False, True):
        variant = nine_codebooks(model, seed=0)
        trainer = HeadTrainer(variant, TrainSettings(steps=1, distill_dim=32, wavlm_dim=8, prosody_lr=1e-3))
        bridge = np.array(trainer.bridges["wavlm"]["weight"])
        prosody = np.array(variant.quantizer.stages[1].input_proj)
        b = dict(batch)
        if with_wavlm:
            b["wavlm"] = np.ones((2, 20, 8), np.float32)
        log = trainer.train_step([_batch(variant, b, trainer.settings)])
        moved = not np.array_equal(np.array(trainer.bridges["wavlm"]["weight"]), bridge)
        assert moved == with_wavlm and (log.wavlm > 0) == with_wavlm
        assert np.array_equal(np.array(variant.quantizer.stages[1].input_proj), prosody) != with_wavlm


def test_training_resumes_from_the_latest_checkpoint(model, latent, tmp_path):
    first = nine_codebooks(model, seed=0)
    settings = dict(distill_dim=64, checkpoint_dir=tmp_path, checkpoint_every=3)
    train_heads(first, _synthetic_batches(latent, 64), steps=6, **settings)
    resumed = nine_codebooks(model, seed=0)  # a fresh process would rebuild or load the model
    log = train_heads(resumed, _synthetic_batches(latent, 64, seed=1), steps=8, **settings)
    assert [e.step for e in log] == [7, 8]
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000006", "step-000008"]  # keeps 2
    assert not list(tmp_path.glob(".staging*"))
    with pytest.raises(MimiError, match="no setting 'lr'"):
        train_heads(resumed, _synthetic_batches(latent, 64), steps=9, lr=1e-4)


def test_untrained_variant_against_mimi(model, variant, pcm):
    """What the README says of the untrained variant, measured: the share of its codes equal to Mimi's."""
    ours = np.array(variant.encode(pcm))
    mimi = np.array(model.encode(pcm, num_codebooks=8))
    prosody = float((ours[:, 1] == mimi[:, 0]).mean())
    acoustic = float((ours[:, 2:] == mimi[:, 1:8]).mean())
    first = float((ours[:, 2] == mimi[:, 1]).mean())
    print(
        f"untrained variant vs Mimi on 20 s: prosody = Mimi's codebook 1 in {prosody:.3f} of frames; acoustic 2-8 "
        f"= Mimi's 2-8 in {acoustic:.3f} (first acoustic {first:.3f})"
    )
    assert prosody > 0.9  # the content head's tiny random entries leave the prosody head Mimi's input
    assert acoustic < 0.2  # but the acoustic heads read latent - (q_c + q_p), where Mimi's read the latent


def test_train_heads_command(converted_folder, latent, tmp_path):
    run = [sys.executable, "-m", "mlx_mimi.cli"]
    model_dir = tmp_path / "mimi9"
    p = subprocess.run(
        [*run, "variant", "nine-codebooks", str(converted_folder), "-o", str(model_dir)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    data = tmp_path / "feats"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        frames = latent[0, i * 100 : (i + 1) * 100]
        np.savez(
            data / f"c{i}.npz",
            latent=frames,
            teacher=rng.standard_normal((50, 16)),
            durations=np.full(50, 2),
            wavlm=rng.standard_normal((100, 8)),
        )
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
            "1",
            "--accumulate",
            "2",
            "--distill-dim",
            "16",
            "--wavlm-dim",
            "8",
            "--heads",
            "content,prosody",
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert "step 3: loss" in p.stderr and ", wavlm " in p.stderr and "latest: step-000003" in p.stdout
    settings = json.loads(
        mx.load(str(tmp_path / "runs" / "step-000003" / "training.safetensors"), return_metadata=True)[1]["settings"]
    )
    assert settings["accumulate"] == 2 and settings["heads"] == ["content", "prosody"]
    assert mlx_mimi.load(tmp_path / "runs" / "step-000003").num_codebooks == 9


def test_non_finite_training_stops_before_saving(model, latent, tmp_path):
    """NaN teacher features stop training with one error before any update or checkpoint; in a .npz clip the error
    names the file, as do a junk file and durations that do not fit the clip."""
    variant = mlx_mimi.nine_codebooks(model, seed=4)
    before = np.array(variant.quantizer.stages[0].codebooks)
    teacher = np.full((1, latent.shape[1], 16), np.nan, np.float32)
    with pytest.raises(mlx_mimi.MimiError, match="teacher features hold NaN"):
        mlx_mimi.train_heads(
            variant,
            iter([{"latent": latent, "teacher": teacher}]),
            steps=1,
            distill_dim=16,
            checkpoint_dir=tmp_path / "run",
        )
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    np.testing.assert_array_equal(np.array(variant.quantizer.stages[0].codebooks), before)
    # a loss that overflows to inf with finite inputs is caught at the step, before anything changes
    huge = np.full((1, latent.shape[1], 16), 3e38, np.float32)
    with pytest.raises(mlx_mimi.MimiError, match="step 1: the loss is inf"):
        mlx_mimi.train_heads(variant, iter([{"latent": latent, "teacher": huge}]), steps=1, distill_dim=16)
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


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("decay", 1.5, "decay must be in"),
        ("betas", (0.8,), "betas must be two numbers"),
        ("seed", -1, "seed must be an int"),
        ("steps", "5", "steps must be an int"),
        ("wavlm_weight", "x", "wavlm_weight must be a finite number"),
        ("heads", "content,content", "heads must be among"),
    ],
)
def test_bad_training_settings(setting, value, message):
    kwargs = {"steps": 1, setting: value}
    with pytest.raises(MimiError, match=message):
        TrainSettings(**kwargs)
    assert TrainSettings(steps=1, heads="content,prosody").heads == ("content", "prosody")
