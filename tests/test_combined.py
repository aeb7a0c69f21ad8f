"""Mimi inside transformers' speech models (KyutaiSpeechToText, Csm: ``codec_model``; Moshi: ``audio_encoder``):
found from the model's config.json, read from the shards that hold it (folder, hub, offline cache), the language
model never materialised; the same codes, bit for bit, as loading the Mimi alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require
from fake_hub import FakeHub, pointed_at
from test_hub import _fake_cache

import mlx_mimi

FRAME = 1920


def _small_lm(kind: str, codec_config):
    """A transformers speech model at a small LM size (but a 160k x 256 text embedding, ~160 MB in float32, so that
    reading the LM would show in the memory), around the full-size random Mimi config."""
    from transformers import (
        CsmConfig,
        CsmForConditionalGeneration,
        KyutaiSpeechToTextConfig,
        KyutaiSpeechToTextForConditionalGeneration,
        MoshiConfig,
        MoshiForConditionalGeneration,
    )

    small = dict(hidden_size=256, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4, head_dim=64)
    codec = codec_config.to_dict()
    if kind == "stt":
        config = KyutaiSpeechToTextConfig(**small, vocab_size=160_000, ffn_dim=128, codec_config=codec)
        return KyutaiSpeechToTextForConditionalGeneration(config), "codec_model"
    if kind == "csm":
        depth = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, head_dim=32)
        config = CsmConfig(
            **small,
            intermediate_size=128,
            text_vocab_size=160_000,
            depth_decoder_config={**depth, "intermediate_size": 128, "backbone_hidden_size": 256},
            codec_config=codec,
        )
        return CsmForConditionalGeneration(config), "codec_model"
    depth = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, head_dim=32)
    config = MoshiConfig(
        **small,
        vocab_size=160_000,
        ffn_dim=128,
        audio_encoder_config=codec,
        depth_decoder_config={**depth, "ffn_dim": 128},
    )
    return MoshiForConditionalGeneration(config), "audio_encoder"


@pytest.fixture(scope="module")
def combined(hf_reference, tmp_path_factory) -> dict[str, Path]:
    """Each kind saved with save_pretrained, sharded (shards of 100 MB: the Mimi spans several)."""
    require("torch", "transformers")
    import torch

    hf_model, _ = hf_reference
    out = {}
    for kind in ("stt", "csm", "moshi"):
        model, attr = _small_lm(kind, hf_model.config)
        with torch.no_grad():
            getattr(model, attr).load_state_dict(hf_model.state_dict())
        folder = tmp_path_factory.mktemp(f"combined_{kind}")
        model.save_pretrained(folder, max_shard_size="100MB")
        out[kind] = folder
    return out


@pytest.fixture(scope="module")
def expected(model, speech_long):
    pcm = speech_long[: 12 * FRAME + 77]
    return pcm, np.array(model.encode(pcm))


@pytest.mark.parametrize("kind", ["stt", "csm", "moshi"])
def test_combined_folders_load_the_mimi_inside(combined, expected, kind):
    pcm, codes = expected
    folder = combined[kind]
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2  # really sharded
    loaded = mlx_mimi.load(folder)
    assert isinstance(loaded, mlx_mimi.Mimi) and loaded.source["layout"] == "hf"
    np.testing.assert_array_equal(np.array(loaded.encode(pcm)), codes)
    np.testing.assert_array_equal(
        np.array(loaded.decode(codes[:, :8, :6])), np.array(mlx_mimi.load(folder).decode(codes[:, :8, :6]))
    )


def test_unsharded_and_converted(combined, expected, tmp_path):
    """One model.safetensors (no index) works the same; `mimi convert` writes the Mimi alone."""
    require("torch", "transformers")
    from transformers import KyutaiSpeechToTextForConditionalGeneration

    pcm, codes = expected
    whole = tmp_path / "whole"
    KyutaiSpeechToTextForConditionalGeneration.from_pretrained(combined["stt"]).save_pretrained(
        whole, max_shard_size="10GB"
    )
    assert not (whole / "model.safetensors.index.json").exists()
    np.testing.assert_array_equal(np.array(mlx_mimi.load(whole).encode(pcm)), codes)
    p = subprocess.run(
        [sys.executable, "-m", "mlx_mimi.cli", "convert", str(combined["stt"]), "-o", str(tmp_path / "mimi")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "mimi" / "model.safetensors").stat().st_size < 400e6  # the Mimi only
    np.testing.assert_array_equal(np.array(mlx_mimi.load(tmp_path / "mimi").encode(pcm)), codes)


def test_hub_and_offline_cache_read_only_the_codec_shards(combined, expected, tmp_path):
    """From the hub: config.json, the shard index and the shards holding codec_model.* are downloaded, no other
    shard; from an offline cache, the same files answer."""
    pcm, codes = expected
    folder = combined["stt"]
    files = {p.name: p for p in folder.iterdir() if p.is_file()}
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    codec_shards = {f for name, f in index.items() if name.startswith("codec_model.")}
    lm_only = set(index.values()) - codec_shards
    assert lm_only, "the test needs a shard holding only the language model"
    cache = str(tmp_path / "cache")
    with FakeHub({"kyutai/stt-combined": files}) as hub, pointed_at(hub.endpoint):
        loaded = mlx_mimi.load("kyutai/stt-combined", cache_dir=cache)
        np.testing.assert_array_equal(np.array(loaded.encode(pcm)), codes)
        for shard in lm_only:
            assert hub.bytes_served("kyutai/stt-combined", shard) == 0, shard
    offline = tmp_path / "offline"
    _fake_cache(offline, "kyutai/stt-combined", {n: files[n] for n in files if n not in lm_only})
    np.testing.assert_array_equal(
        np.array(mlx_mimi.load("kyutai/stt-combined", cache_dir=str(offline)).encode(pcm)), codes
    )


# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child of the large test process would report
# the parent's peak.
PEAK_RSS = """
import sys, mlx_mimi
mlx_mimi.load(sys.argv[1])
status = open("/proc/self/status").read()
print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_the_language_model_is_never_materialised(combined, hf_reference):
    """Peak RSS of loading the Mimi from the combined checkpoint vs from its own folder, each in a fresh process:
    within a margin far below the language model's size (its 160k x 256 embedding and the rest, ~170 MB in
    float32; the real ones are 1-7 GB)."""

    def peak(path) -> float:
        p = subprocess.run([sys.executable, "-c", PEAK_RSS, str(path)], capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        return int(p.stdout.strip()) / 1024  # MB (VmHWM is in kB)

    alone = peak(hf_reference[1])
    inside = peak(combined["stt"])
    lm_mb = sum(f.stat().st_size for f in combined["stt"].glob("*.safetensors")) / 2**20 - 367
    print(
        f"peak RSS: Mimi alone {alone:.0f} MB, from the combined checkpoint {inside:.0f} MB; the LM is ~{lm_mb:.0f} MB"
    )
    assert inside - alone < 0.5 * lm_mb
