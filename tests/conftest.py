"""Shared fixtures: real speech (espeak-ng) and random checkpoints in the real layouts, built once per session.

Reference-based tests skip with a reason where torch/transformers/moshi are missing (a Mac user's plain
pytest) but fail in CI (CI=true), where .ci/run installs them: a CI run that skips them proves nothing. Under
CI=true every skip is a failure (the hooks at the end), whatever raised it.
Everything else runs without torch: the ``model`` fixture then uses weights built by random_model.py.
``MLX_MIMI_TEST_WITHOUT_TORCH=1`` simulates that machine here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

# mlx_mimi before anything imports mlx.core: it preloads OpenBLAS on Linux (see mlx_mimi/backend.py).
import mlx_mimi  # noqa: F401, I001

sys.path.insert(0, str(Path(__file__).parent))

import reference  # noqa: E402

# No machine here reaches the hub: huggingface_hub must answer from the cache at once, not retry a network.
# (It reads this at import time, so set it before anything imports it.)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
WITHOUT_TORCH = os.environ.get("MLX_MIMI_TEST_WITHOUT_TORCH") == "1"
_TORCH_FAMILY = {"torch", "transformers", "moshi", "vector_quantize_pytorch"}


def have(*modules: str) -> bool:
    return all(not (WITHOUT_TORCH and m in _TORCH_FAMILY) and importlib.util.find_spec(m) is not None for m in modules)


def require(*modules: str) -> None:
    missing = [m for m in modules if not have(m)]
    if missing:
        reason = f"reference package(s) not installed: {', '.join(missing)} (pip install -e '.[dev]', see .ci/run)"
        if IN_CI:
            pytest.fail("CI must run the reference tests: " + reason)
        pytest.skip(reason, allow_module_level=True)


def require_espeak() -> None:
    if not reference.have_espeak():
        if IN_CI:
            pytest.fail("CI must have espeak-ng (apt install espeak-ng)")
        pytest.skip("espeak-ng not installed: cannot make real speech")


@pytest.fixture(scope="session")
def speech_long() -> np.ndarray:
    """44 s of espeak-ng speech at 24 kHz (longer than the 10 s attention window)."""
    require_espeak()
    return reference.speech(44.0, seed=1)


@pytest.fixture(scope="session")
def speech_minute() -> np.ndarray:
    """60 s of other espeak-ng speech: the length the determinism contract's rates are stated on."""
    require_espeak()
    return reference.speech(60.0, seed=5)


@pytest.fixture(scope="session")
def hf_reference(tmp_path_factory, speech_long):
    """(transformers MimiModel, folder saved with save_pretrained) with random non-degenerate weights."""
    require("torch", "transformers")
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = reference.random_hf_model(speech_long[-20 * reference.SR :], seed=0)
    folder = tmp_path_factory.mktemp("hf_mimi")
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="session")
def original_folder(tmp_path_factory, hf_reference) -> Path:
    """The same weights saved under the names of Kyutai's real tokenizer file."""
    folder = tmp_path_factory.mktemp("kyutai_mimi")
    reference.save_original(hf_reference[0], folder)
    return folder


@pytest.fixture(scope="session")
def model_folder(request, tmp_path_factory, speech_long) -> Path:
    """A model folder for the tests that need no reference: transformers-built where torch is installed
    (always in CI), else built by random_model.py."""
    if have("torch", "transformers") or IN_CI:
        return request.getfixturevalue("hf_reference")[1]
    from random_model import random_model

    return random_model(speech_long, tmp_path_factory.mktemp("random_mimi"))


@pytest.fixture(scope="session")
def model(model_folder):
    return mlx_mimi.load(model_folder)


@pytest.fixture(scope="session")
def converted_folder(tmp_path_factory, model_folder) -> Path:
    from mlx_mimi.convert import convert

    return convert(model_folder, tmp_path_factory.mktemp("converted"))


# -- CI never skips -------------------------------------------------------------------------------------------
def _ci_fails_skip(report) -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true never skips a test, and this one skipped: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _ci_fails_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _ci_fails_skip(outcome.get_result())
