"""The Linux CPU BLAS preload: OpenBLAS is in use when present, reported, and can be turned off."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from mlx_mimi import backend


def _openblas_present() -> bool:
    return backend._find_openblas() is not None


@pytest.mark.skipif(platform.system() != "Linux", reason="the preload only matters on Linux")
def test_openblas_is_loaded_when_present():
    if not _openblas_present():
        pytest.skip("no system OpenBLAS (apt install libopenblas0-pthread)")
    assert backend.blas_report().startswith("OpenBLAS"), backend.blas_report()


def _openblas_mapped(env: dict) -> bool:
    """Whether a fresh process that imports mlx_mimi and runs a matmul has OpenBLAS mapped."""
    lib = os.path.realpath(backend._find_openblas())  # numpy's own prefixed OpenBLAS does not count
    code = (
        "import mlx_mimi, mlx.core as mx\n"
        "a = mx.ones((64, 64)); mx.eval(a @ a)\n"
        f"print({lib!r} in open('/proc/self/maps').read())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


@pytest.mark.skipif(platform.system() != "Linux", reason="the preload only matters on Linux")
def test_preload_can_be_disabled():
    """(The speed-up itself is measured in benchmarks/bench.py, not in a timed test.)"""
    if not _openblas_present():
        pytest.skip("no system OpenBLAS")
    assert _openblas_mapped(dict(os.environ, MLX_MIMI_BLAS="auto"))
    assert not _openblas_mapped(dict(os.environ, MLX_MIMI_BLAS="off"))
    report = subprocess.run(
        [sys.executable, "-c", "import mlx_mimi; print(mlx_mimi.backend.blas_report())"],
        env=dict(os.environ, MLX_MIMI_BLAS="off"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "disabled by MLX_MIMI_BLAS=off" in report
