"""Hub and path resolution: repos shaped like Kyutai's moshi, stt and tts repos and like kyutai/mimi, served by
a local fake of the hub's HTTP API (fake_hub.py) and from huggingface_hub's cache; an unreachable hub fails
fast; local-looking references are paths; a missing config is an error, never a silent default."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fake_hub import FakeHub, pointed_at
from safetensors.numpy import save_file

import mlx_mimi
from mlx_mimi import ConfigError, ModelNotFoundError, WeightsError
from mlx_mimi.hub import resolve

FRAME = 1920
KYUTAI = "tokenizer-e351c8d8-checkpoint125.safetensors"
STT_MIMI = "mimi-pytorch-e351c8d8@125.safetensors"


@pytest.fixture(scope="module")
def lm_file(tmp_path_factory) -> Path:
    """A 24 MB stand-in for a language model checkpoint (Moshi's tensor names): never to be downloaded."""
    path = tmp_path_factory.mktemp("lm") / "model.safetensors"
    rng = np.random.default_rng(0)
    save_file(
        {
            "text_emb.weight": rng.standard_normal((3000, 1024)).astype(np.float32),
            "transformer.layers.0.self_attn.in_proj_weight": rng.standard_normal((3072, 1024)).astype(np.float32),
        },
        str(path),
    )
    return path


@pytest.fixture(scope="module")
def repos(hf_reference, original_folder, lm_file) -> dict:
    hf = hf_reference[1]
    kyutai = original_folder / KYUTAI
    lm_config = {"dep_q": 8, "n_q": 16, "card": 2048, "dim": 4096, "model_type": "moshi"}
    return {
        "kyutai/mimi": {"model.safetensors": hf / "model.safetensors", "config.json": hf / "config.json"},
        "kyutai/moshiko-pytorch-bf16": {  # legacy: no config.json; model.safetensors is the LM
            "model.safetensors": lm_file,
            KYUTAI: kyutai,
            "tokenizer_spm_32k_3.model": b"spm",
        },
        "kyutai/stt-1b-en_fr": {  # config.json (the LM's) names the Mimi file
            "config.json": json.dumps({**lm_config, "mimi_name": STT_MIMI, "moshi_name": "model.safetensors"}).encode(),
            "model.safetensors": lm_file,
            STT_MIMI: kyutai,
            "tokenizer_en_fr_audio_8000.model": b"spm",
        },
        "kyutai/tts-1.6b-en_fr": {
            "config.json": json.dumps({**lm_config, "mimi_name": KYUTAI, "moshi_name": "dsm_tts.safetensors"}).encode(),
            "dsm_tts.safetensors": lm_file,
            KYUTAI: kyutai,
        },
        "someone/llm": {"config.json": b'{"model_type": "llama"}', "model.safetensors": lm_file},
    }


@pytest.fixture(scope="module")
def expected(model, speech_long):
    pcm = speech_long[: 10 * FRAME]
    return pcm, np.array(model.encode(pcm))


def test_kyutai_repos_online(repos, expected, tmp_path):
    """Each repo resolves to its Mimi file, chosen from the file list (and a config.json) before anything large
    is downloaded: the language model's bytes are never fetched (at most the first 100 kB of a header)."""
    pcm, codes = expected
    cache = str(tmp_path / "cache")
    with FakeHub(repos) as hub, pointed_at(hub.endpoint):
        for repo_id, files in repos.items():
            if repo_id == "someone/llm":
                continue
            loaded = mlx_mimi.load(repo_id, cache_dir=cache)
            layout = "hf" if repo_id == "kyutai/mimi" else "original"
            assert loaded.source["layout"] == layout and loaded.source["model_id"] == repo_id
            np.testing.assert_array_equal(np.array(loaded.encode(pcm)), codes)
            for name in files:
                if name in ("model.safetensors", "dsm_tts.safetensors") and repo_id != "kyutai/mimi":
                    assert hub.bytes_served(repo_id, name) == 0, (repo_id, name)
        with pytest.raises(WeightsError, match="not a Mimi checkpoint"):
            mlx_mimi.load("someone/llm", cache_dir=cache)
        assert hub.bytes_served("someone/llm", "model.safetensors") <= 100_001  # the header read only
        with pytest.raises(ModelNotFoundError, match="no hub repo"):
            mlx_mimi.load("kyutai/nothing-here", cache_dir=cache)
    # the server is gone: the same ids load from the cache, at once
    for repo_id in ("kyutai/mimi", "kyutai/stt-1b-en_fr", "kyutai/moshiko-pytorch-bf16"):
        start = time.perf_counter()
        assert resolve(repo_id, cache_dir=cache).weights.is_file()
        assert time.perf_counter() - start < 2


def _fake_cache(cache: Path, repo: str, files: dict, revision="0123456789abcdef0123456789abcdef01234567"):
    """The folder layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/...}."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / revision
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)
    for name, src in files.items():
        (snap / name).write_bytes(src if isinstance(src, bytes) else Path(src).read_bytes())


def test_offline_cache_rules(repos, expected, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pcm, codes = expected
    cache = tmp_path / "hub"
    for repo_id in ("kyutai/mimi", "kyutai/stt-1b-en_fr"):
        _fake_cache(cache, repo_id, repos[repo_id])
    # moshiko cached whole (its model.safetensors is the language model), and with only the tokenizer downloaded
    _fake_cache(cache, "kyutai/moshiko-pytorch-bf16", repos["kyutai/moshiko-pytorch-bf16"])
    tokenizer_only = dict(repos["kyutai/moshiko-pytorch-bf16"])
    del tokenizer_only["model.safetensors"]
    _fake_cache(cache, "kyutai/moshika-pytorch-bf16", tokenizer_only)
    for repo_id in ("kyutai/mimi", "kyutai/stt-1b-en_fr", "kyutai/moshiko-pytorch-bf16", "kyutai/moshika-pytorch-bf16"):
        np.testing.assert_array_equal(np.array(mlx_mimi.load(repo_id, cache_dir=str(cache)).encode(pcm)), codes)
    # kyutai/mimi cached without its config.json: an error, not kyutai/mimi's defaults guessed
    _fake_cache(cache, "other/mimi", {"model.safetensors": repos["kyutai/mimi"]["model.safetensors"]})
    with pytest.raises(ModelNotFoundError, match="lacks its config.json"):
        mlx_mimi.load("other/mimi", cache_dir=str(cache))
    with pytest.raises(ModelNotFoundError, match="not in the local cache"):
        mlx_mimi.load("kyutai/not-there", cache_dir=str(cache))


def test_local_folders_follow_the_same_rules(repos, expected, tmp_path):
    pcm, codes = expected
    stt = tmp_path / "stt"
    stt.mkdir()
    for name, src in repos["kyutai/stt-1b-en_fr"].items():
        (stt / name).write_bytes(src if isinstance(src, bytes) else Path(src).read_bytes())
    loaded = mlx_mimi.load(stt)
    assert loaded.source["layout"] == "original"
    np.testing.assert_array_equal(np.array(loaded.encode(pcm)), codes)
    hf = tmp_path / "hf_without_config"
    hf.mkdir()
    shutil.copy(repos["kyutai/mimi"]["model.safetensors"], hf / "model.safetensors")
    with pytest.raises(ConfigError, match="has no config.json"):
        mlx_mimi.load(hf)
    with pytest.raises(ConfigError, match="has no config.json"):
        mlx_mimi.load(hf / "model.safetensors")


def test_references_that_look_local_are_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mimi-fixtures").mkdir()
    for ref, message in [
        ("mimi-fixtures/hf", "no such file or folder"),
        ("./nowhere", "no such file or folder"),
        ("nowhere/x.safetensors", "no such folder"),
        ("a/b/c", "no such"),
    ]:
        start = time.perf_counter()
        with pytest.raises(ModelNotFoundError, match=message):
            resolve(ref)
        assert time.perf_counter() - start < 1
    for bad in (None, "", "   ", 3):
        with pytest.raises(ModelNotFoundError, match="model"):
            resolve(bad)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("endpoint", ["closed", "silent"])
def test_unreachable_hub_fails_fast_and_quietly(tmp_path, endpoint):
    """No network: one error line within a few seconds (huggingface_hub alone retries for ~25-60 s).

    "closed": connections are refused. "silent": a listening socket that never answers (a hanging network),
    which the probe's timeout (MLX_MIMI_HUB_TIMEOUT, 2 s here) cuts short."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = _closed_port() if endpoint == "closed" else silent.getsockname()[1]
        env = dict(
            os.environ, HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "hf"), MLX_MIMI_HUB_TIMEOUT="2"
        )
        env.pop("HF_HUB_OFFLINE", None)
        start = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-m", "mlx_mimi.cli", "info", "kyutai/mimi"], env=env, capture_output=True, text=True
        )
        took = time.perf_counter() - start
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model 'kyutai/mimi' is not in the local cache"), p.stderr
    assert took < 15, took
