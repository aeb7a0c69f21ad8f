"""JODIO (seed 002's dump) in mlx-mimi against the PyTorch build of the dump (tests/jodio_reference.py).

The reference has random weights saved under the dump's state_dict names; mlx-mimi loads that file and must
give the reference's latents (float tolerance), codes (near-tie standard, mlx_mimi/compare.py) and decoded
audio, offline, streaming and batched, under each selectable reading.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlx.utils
import numpy as np
import pytest
from conftest import require, require_espeak
from contract import assert_audio_contract, assert_contract

import mlx_mimi
from mlx_mimi import JodioConfig
from mlx_mimi.errors import WeightsError

require("torch")
import torch  # noqa: E402
from jodio_reference import JODIO  # noqa: E402
from reference import speech  # noqa: E402

FRAME = 1920
TINY = {
    "channels": 32,
    "latent_dim": 40,
    "encoder_heads": 2,
    "encoder_head_dim": 16,
    "encoder_layers": 2,
    "encoder_intermediate": 64,
    "decoder_width": 16,
    "decoder_heads": 2,
    "decoder_head_dim": 8,
    "decoder_layers": 1,
    "decoder_intermediate": 32,
    "codebook_size": 256,
    "attention_window": 12,
}


def reference_kwargs(config: JodioConfig, repaired: bool = True) -> dict:
    """JodioConfig -> the keyword arguments of tests/jodio_reference.JODIO for the same model and readings."""
    c = config
    return {
        "channels": c.channels,
        "latent_dim": c.latent_dim,
        "ratios": tuple(c.ratios),
        "final_stride": c.final_stride,
        "dilations": tuple(c.dilations),
        "encoder_layers": c.encoder_layers,
        "encoder_heads": c.encoder_heads,
        "encoder_intermediate": c.encoder_intermediate,
        "attention_dim": c.encoder_heads * c.encoder_head_dim,
        "decoder_width": c.decoder_width,
        "decoder_layers": c.decoder_layers,
        "decoder_heads": c.decoder_heads,
        "decoder_intermediate": c.decoder_intermediate,
        "codebook_size": c.codebook_size,
        "num_semantic": c.num_semantic_quantizers,
        "num_acoustic": c.num_acoustic_quantizers,
        "repaired": repaired,
        "residual": c.residual,
        "input_lookahead": c.input_lookahead,
        "window": c.attention_window,
        "rope": c.rope,
        "rope_theta": c.rope_theta,
        "mlp_activation": c.mlp_activation,
        "norm_eps": c.norm_eps,
        "acoustic_input": c.acoustic_input,
    }


@torch.no_grad()
def random_reference(config: JodioConfig, wav: np.ndarray, seed: int = 0, repaired: bool = True) -> JODIO:
    """The PyTorch build with random weights: PyTorch's default init, perturbed norm weights, and codebooks drawn
    level by level from Gaussians fitted to the residuals of ``wav`` (so speech hits many distinct codes)."""
    torch.manual_seed(seed)
    ref = JODIO(**reference_kwargs(config, repaired)).eval()
    for name, p in ref.named_parameters():
        if "norm" in name:
            p.copy_(1 + 0.2 * torch.randn_like(p))
    latent = ref.latent(torch.from_numpy(wav)[None, None]).double()[0]
    rng = np.random.default_rng(seed)
    sem_total = torch.zeros_like(latent)
    for rvq in (ref.semantic_rvq, ref.acoustic_rvq):
        residual = latent - sem_total if rvq is ref.acoustic_rvq and config.acoustic_input == "residual" else latent
        residual = residual.numpy()
        for vq in rvq.quantizers:
            mean, cov = residual.mean(0), np.cov(residual.T)
            cov = cov + 0.05 * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
            book = mean + rng.standard_normal((config.codebook_size, cov.shape[0])) @ np.linalg.cholesky(cov).T
            nearest = ((book**2).sum(-1) - 2 * residual @ book.T).argmin(-1)
            if rvq is ref.semantic_rvq:
                sem_total = sem_total + torch.from_numpy(book[nearest])
            residual = residual - book[nearest]
            vq.codebook.weight.copy_(torch.from_numpy(book.astype(np.float32)))
    return ref


def save_reference(ref: JODIO, folder: Path, config: dict | None = None) -> Path:
    """The state_dict under the dump's names (+ a config.json where the model is not the dump's size)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(folder / "model.safetensors"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps({"model_type": "jodio", **config}))
    return folder


@torch.no_grad()
def reference_encode(ref: JODIO, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    padded = np.pad(wav, (0, (-len(wav)) % FRAME))
    codes, latent = ref.encode(torch.from_numpy(padded)[None, None])
    return codes.numpy(), latent.numpy()


def assert_parity(model, ref, wav: np.ndarray, label: str, latent_tol: float = 1e-4) -> np.ndarray:
    """Latent, codes and decoded audio of mlx-mimi vs the reference; returns the reference codes."""
    codes_ref, latent_ref = reference_encode(ref, wav)
    latent = np.array(model.encode_latent(wav))
    rel = np.abs(latent - latent_ref).max() / np.abs(latent_ref).max()
    print(f"{label}: latent max abs difference {np.abs(latent - latent_ref).max():.2e} (relative {rel:.2e})")
    assert rel < latent_tol, f"{label}: latents differ by {rel:.2e} relative"
    codes = np.array(model.encode(wav))
    distinct = [len(np.unique(codes_ref[0, k])) for k in range(codes_ref.shape[1])]
    print(f"{label}: distinct codes per codebook {distinct}")
    assert min(distinct) > 1, f"{label}: degenerate codebooks {distinct}"
    assert_contract(model, wav, codes_ref, codes, label, latent=latent_ref)
    if "decoder" in model:
        with torch.no_grad():
            pcm_ref = ref.decode(torch.from_numpy(codes_ref)).numpy()[0, 0]
        pcm = np.array(model.decode(codes_ref))[0, 0]
        n = len(pcm_ref)
        assert len(pcm) == codes_ref.shape[-1] * FRAME and n == len(pcm) - model.decoder_delay
        err = np.abs(pcm[:n] - pcm_ref).max() / np.abs(pcm_ref).max()
        print(f"{label}: decode max abs difference relative {err:.2e}; tail zeros {not pcm[n:].any()}")
        assert err < 1e-4 and not pcm[n:].any()
    return codes_ref


@pytest.fixture(scope="module")
def speech_short() -> np.ndarray:
    require_espeak()
    return speech(12.0, seed=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, speech_short):
    config = JodioConfig(**TINY)
    ref = random_reference(config, speech_short)
    folder = save_reference(ref, tmp_path_factory.mktemp("jodio_tiny"), TINY)
    return ref, folder


def test_full_size_model_from_the_dump_names(tmp_path_factory):
    """The dump's sizes (386 M parameters), random weights, 3 s of speech: latents, codes, decoded audio."""
    require_espeak()
    wav = speech(3.0, seed=4)[: 36 * FRAME]
    ref = random_reference(JodioConfig(), wav, seed=1)
    folder = save_reference(ref, tmp_path_factory.mktemp("jodio_full"))  # no config.json: the dump's sizes
    model = mlx_mimi.load(folder)
    assert isinstance(model, mlx_mimi.Jodio) and model.num_codebooks == 10
    count = sum(v.size for k, v in mlx.utils.tree_flatten(model.parameters()) if not k.endswith("half_sq_norms"))
    ref_count = sum(p.numel() for p in ref.parameters())
    norm_gains = sum(p.numel() for n, p in ref.named_parameters() if n.endswith("original0"))  # folded on load
    print(f"parameters: reference {ref_count:,} (weight norm's {norm_gains:,} gains folded: mlx-mimi {count:,})")
    assert count == ref_count - norm_gains and 385e6 < ref_count < 387e6
    assert_parity(model, ref, wav, "JODIO full size")


def test_tiny_model_matches_the_reference(tiny, speech_short):
    ref, folder = tiny
    model = mlx_mimi.load(folder)
    assert_parity(model, ref, speech_short, "JODIO tiny")


@pytest.mark.parametrize(
    "reading",
    [
        {"residual": False},
        {"input_lookahead": 0},
        {"acoustic_input": "residual"},
        {"mlp_activation": "silu", "rope": False},
    ],
    ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()),
)
def test_each_reading_matches_the_reference(reading, tmp_path, speech_short):
    config = JodioConfig(**TINY, **reading)
    wav = speech_short[: 60 * FRAME]
    ref = random_reference(config, wav, seed=2)
    model = mlx_mimi.load(save_reference(ref, tmp_path, {**TINY, **reading}))
    assert_parity(model, ref, wav, f"JODIO {reading}")


def test_interleaved_rope_layout_is_permuted_on_load(tiny, tmp_path, speech_short):
    """A checkpoint whose q/k rows pair RoPE dimensions (2i, 2i+1) loads into the same model."""
    ref, folder = tiny
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    for name in state:
        if name.endswith(("attention.q_proj.weight", "attention.k_proj.weight")):
            heads = TINY["encoder_heads"] if name.startswith("encoder") else TINY["decoder_heads"]
            w = state[name]
            out_dim, in_dim = w.shape
            # rotate-half rows (h, half, pair-index) -> interleaved (h, pair-index, half)
            state[name] = w.reshape(heads, 2, out_dim // heads // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "jodio", **TINY, "rope_layout": "interleaved"}))
    wav = speech_short[: 40 * FRAME]
    a = np.array(mlx_mimi.load(folder).encode_latent(wav))
    b = np.array(mlx_mimi.load(tmp_path).encode_latent(wav))
    assert np.array_equal(a, b)


def test_streaming_equals_offline(tiny, speech_short):
    ref, folder = tiny
    model = mlx_mimi.load(folder)
    wav = speech_short
    offline = np.array(model.encode(wav))
    stream = model.stream_encoder()
    parts, rng, start = [], np.random.default_rng(0), 0
    while start < len(wav):
        size = int(rng.integers(1, 3 * FRAME))
        parts.append(np.array(stream.step(wav[start : start + size])))
        start += size
    parts.append(np.array(stream.flush()))
    streamed = np.concatenate([p for p in parts if p.size], axis=-1)
    assert_contract(model, wav, offline, streamed, "JODIO stream vs offline encode")

    decoder = model.stream_decoder()
    pcm = np.concatenate([np.array(decoder.step(offline[..., i : i + 3])) for i in range(0, offline.shape[-1], 3)], -1)
    decoded = np.array(model.decode(offline))
    delay = model.decoder_delay
    assert pcm.shape == decoded.shape
    assert not pcm[..., :delay].any()  # the stream runs 2210 samples behind decode
    err = np.abs(pcm[..., delay:] - decoded[..., :-delay]).max()
    print(f"JODIO stream decode vs offline (delayed {delay}): max abs difference {err:.2e}")
    assert err <= 1e-5 * max(1.0, np.abs(decoded).max())


def test_batches_equal_single_clips(tiny, speech_short):
    """encode_batch/decode_batch give each clip what it gets alone (the determinism contract: a padded batch
    runs other matmul sizes, so near-ties and float rounding only)."""
    _, folder = tiny
    model = mlx_mimi.load(folder)
    clips = [speech_short[: 5 * FRAME + 7], speech_short[FRAME : 21 * FRAME], speech_short[3 * FRAME : 12 * FRAME - 1]]
    batch = model.encode_batch(clips)
    for i, (clip, codes) in enumerate(zip(clips, batch, strict=True)):
        alone = np.array(model.encode(clip))
        assert_contract(model, clip, alone, np.array(codes)[None], f"JODIO batch clip {i}")
    audio = model.decode_batch([np.array(c) for c in batch])
    for i, (codes, pcm) in enumerate(zip(batch, audio, strict=True)):
        alone = np.array(model.decode(np.array(codes)[None]))[0, 0]
        assert pcm.shape == alone.shape
        assert_audio_contract(np.array(pcm), alone, f"JODIO batch decode clip {i}")
        assert not np.array(pcm)[len(alone) - model.decoder_delay :].any()  # its own zero tail, not the padding's


def test_a_checkpoint_without_the_repair_is_a_clear_error(tiny, tmp_path, speech_short):
    """The dump as printed (post_vq_proj in_features 6, no repair_proj) encodes, and cannot decode."""
    ref, folder = tiny
    printed = JODIO(**reference_kwargs(JodioConfig(**TINY), repaired=False))
    state = {k: v for k, v in ref.state_dict().items() if k in printed.state_dict()}
    state["post_vq_proj.weight"] = printed.state_dict()["post_vq_proj.weight"]
    printed.load_state_dict(state)
    save_reference(printed, tmp_path, TINY)
    with pytest.raises(WeightsError, match=r"without repair_proj\.weight.*can only encode"):
        mlx_mimi.load(tmp_path)
    encoder = mlx_mimi.load(tmp_path, decoder=False)
    wav = speech_short[: 20 * FRAME]
    assert np.array_equal(np.array(encoder.encode(wav)), np.array(mlx_mimi.load(folder).encode(wav)))
    with pytest.raises(mlx_mimi.MimiError, match="without its decoder"):
        encoder.decode(np.zeros((1, 10, 3), np.int64))
    # with repair_proj but the printed post_vq_proj: the error names the shape and the repair
    from safetensors.torch import save_file

    state["repair_proj.weight"] = ref.repair_proj.weight
    state["repair_proj.bias"] = ref.repair_proj.bias
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsError, match=r"post_vq_proj\.weight.*\(32, 6\).*repair"):
        mlx_mimi.load(tmp_path)


def test_cli_encode_decode_info_convert(tiny, tmp_path, speech_short):
    import soundfile as sf

    _, folder = tiny
    wav = tmp_path / "talk.wav"
    sf.write(wav, speech_short[: 30 * FRAME], 24000, subtype="FLOAT")

    def mimi(*args):
        return subprocess.run([sys.executable, "-m", "mlx_mimi.cli", *args], capture_output=True, text=True)

    info = mimi("info", str(folder))
    assert info.returncode == 0, info.stderr
    assert "JODIO" in info.stdout and "repair" in info.stdout, info.stdout
    out = mimi("encode", str(wav), "--model", str(folder), "-o", str(tmp_path / "talk.safetensors"))
    assert out.returncode == 0, out.stderr
    from mlx_mimi.codes import load_codes

    codes = load_codes(tmp_path / "talk.safetensors").codes
    assert codes.shape[-2:] == (10, 30)
    api = np.array(mlx_mimi.load(folder).encode(speech_short[: 30 * FRAME]))
    assert np.array_equal(np.asarray(codes).reshape(api.shape), api)
    out = mimi("decode", str(tmp_path / "talk.safetensors"), "--model", str(folder), "-o", str(tmp_path / "back.wav"))
    assert out.returncode == 0, out.stderr
    back, rate = sf.read(tmp_path / "back.wav")
    assert rate == 24000 and len(back) == 30 * FRAME
    out = mimi("convert", str(folder), "-o", str(tmp_path / "converted"))
    assert out.returncode == 0, out.stderr
    converted = mlx_mimi.load(tmp_path / "converted")
    assert isinstance(converted, mlx_mimi.Jodio)
    assert np.array_equal(np.array(converted.encode(speech_short[: 30 * FRAME])), api)


def test_jodio_config_checks():
    with pytest.raises(mlx_mimi.ConfigError, match="input_lookahead"):
        JodioConfig(input_lookahead=2)
    with pytest.raises(mlx_mimi.ConfigError, match="acoustic_input"):
        JodioConfig(acoustic_input="both")
    assert JodioConfig().decoder_delay == 2210 and JodioConfig().frame_size == FRAME
