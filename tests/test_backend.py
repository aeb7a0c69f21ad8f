"""The Linux CPU BLAS: MLX's matmuls resolve to OpenBLAS whatever the import order, and the report says so.

Each case runs in a fresh process (the binding happens once per process). The proof is not that a library
was loaded: the dynamic linker's own log shows libmlx's cblas_sgemm bound to OpenBLAS, libmlx's call slot
is read back and named, and the rebound process computes bit for bit what the preloaded one computes.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from mlx_mimi import backend

pytestmark = pytest.mark.skipif(platform.system() != "Linux", reason="the BLAS choice only exists on Linux")

MATMUL = (
    "import numpy as np\n"
    "a = mx.array(np.random.default_rng(0).standard_normal((300, 700)).astype(np.float32))\n"
    "print(np.array(a @ a.T).tobytes().hex()[:4000])\n"
)


def run(code: str, **env) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return p


@pytest.fixture(autouse=True)
def openblas():
    if backend._find_openblas() is None:
        pytest.skip("no system OpenBLAS (apt install libopenblas0-pthread)")


def test_dynamic_linker_binds_mlx_to_openblas():
    p = run("import mlx_mimi, mlx.core", LD_DEBUG="bindings", MLX_MIMI_BLAS="auto")
    bindings = [line for line in p.stderr.splitlines() if "libmlx.so" in line and "`cblas_sgemm'" in line]
    assert bindings and all("openblas" in line for line in bindings), bindings
    off = run("import mlx_mimi, mlx.core", LD_DEBUG="bindings", MLX_MIMI_BLAS="off")
    bindings = [line for line in off.stderr.splitlines() if "libmlx.so" in line and "`cblas_sgemm'" in line]
    assert bindings and not any("openblas" in line for line in bindings), bindings


def test_import_order_does_not_matter():
    """mlx.core imported first: libmlx's slot is rebound, and its matmul equals the preloaded process's bits."""
    report = "import mlx_mimi; print(mlx_mimi.backend.mlx_gemm_library()); print(mlx_mimi.backend.blas_report())\n"
    late = run("import mlx.core as mx\n" + report + MATMUL).stdout.splitlines()
    early = run("import mlx_mimi\nimport mlx.core as mx\n" + report + MATMUL).stdout.splitlines()
    off = run("import mlx_mimi\nimport mlx.core as mx\n" + report + MATMUL, MLX_MIMI_BLAS="off").stdout.splitlines()
    assert "openblas" in late[0].lower() and "openblas" in early[0].lower(), (late[:2], early[:2])
    assert "rebound" in late[1] and "OpenBLAS" in early[1]
    assert "openblas" not in off[0].lower() and "disabled by MLX_MIMI_BLAS=off" in off[1]
    assert late[2] == early[2]  # the same BLAS computes the same bits ...
    assert off[2] != early[2]  # ... and another BLAS does not: the comparison can tell them apart


def test_a_blas_that_cannot_serve_is_a_visible_warning():
    """Asked for a library without cblas_sgemm after mlx.core was imported: nothing is patched, a warning
    says how to fix it, and the report names the bundled BLAS that MLX still calls."""
    libm = next(p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6") if os.path.exists(p))
    p = run(
        "import mlx.core as mx, warnings\nwarnings.simplefilter('always')\nimport mlx_mimi\n"
        "print(mlx_mimi.backend.blas_report())\n" + MATMUL,
        MLX_MIMI_BLAS=libm,
    )
    assert "slow reference BLAS" in p.stderr and "import mlx_mimi first" in p.stderr
    assert p.stdout.startswith("bundled reference BLAS")


def test_info_reports_the_blas():
    p = subprocess.run(
        [sys.executable, "-m", "mlx_mimi.cli", "info"], capture_output=True, text=True, timeout=120, check=True
    )
    assert "BLAS: OpenBLAS" in p.stdout, p.stdout
