"""The compute backend: an optimised BLAS for MLX's Linux CPU wheel, and a report of what is in use.

The Linux ``mlx[cpu]`` wheel links the netlib reference BLAS (~6 GFLOP/s). MLX resolves ``cblas_sgemm``
through the dynamic linker, so loading OpenBLAS with RTLD_GLOBAL *before* ``mlx.core`` is imported makes
MLX's matmuls use it (~50x faster). This module must therefore be imported before ``mlx.core``; the package
``__init__`` does so. Set ``MLX_MIMI_BLAS=off`` to keep the bundled BLAS, or to a library path to choose one.
"""

from __future__ import annotations

import ctypes
import glob
import os
import platform
import sys

ENV_VAR = "MLX_MIMI_BLAS"

_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
    "/usr/local/lib/libopenblas.so.0",
)

_loaded: str | None = None
_reason = "not attempted"


def _find_openblas() -> str | None:
    for path in _CANDIDATES:
        if os.path.exists(path):
            return path
    for pattern in ("/usr/lib/*/libopenblas*.so*", "/usr/lib*/libopenblas*.so*"):
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[0]
    return None


def load_blas() -> str | None:
    """Load an optimised BLAS globally, where it helps (Linux) and is allowed; return its path or None."""
    global _loaded, _reason
    if _loaded is not None:
        return _loaded
    choice = os.environ.get(ENV_VAR, "auto").strip()
    if choice.lower() in ("off", "0", "none", "false"):
        _reason = f"disabled by {ENV_VAR}={choice}"
        return None
    if platform.system() != "Linux":
        _reason = "not needed (MLX uses Accelerate/Metal on macOS)"
        return None
    if "mlx.core" in sys.modules:
        _reason = "mlx.core was imported before mlx_mimi; import mlx_mimi first to load OpenBLAS"
        return None
    path = choice if choice.lower() != "auto" else _find_openblas()
    if path is None:
        _reason = "no OpenBLAS found (apt install libopenblas0-pthread); MLX uses its bundled reference BLAS"
        return None
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        _reason = f"could not load {path}: {exc}"
        return None
    _loaded = path
    _reason = "loaded"
    return path


def blas_report() -> str:
    """One line naming the BLAS MLX's CPU matmuls use."""
    if _loaded:
        return f"OpenBLAS ({_loaded})"
    if platform.system() == "Darwin":
        return "Accelerate (macOS)"
    return f"bundled reference BLAS ({_reason})"


def device_report() -> str:
    import mlx.core as mx

    return f"mlx {mx.__version__}, default device {mx.default_device()}"
