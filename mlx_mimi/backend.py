"""The compute backend: an optimised BLAS for MLX's Linux CPU wheel, and a report of what MLX really calls.

The Linux ``mlx[cpu]`` wheel links the netlib reference BLAS (~6 GFLOP/s). MLX calls ``cblas_sgemm``
through its PLT, so there are two ways to give it OpenBLAS (~50x faster):

1. Before ``mlx.core`` is imported (the package ``__init__`` runs first): load OpenBLAS with RTLD_GLOBAL,
   and the dynamic linker binds libmlx's ``cblas_*gemm`` to it when mlx.core loads.
2. After (the user imported ``mlx.core`` first): libmlx's GOT slots for ``cblas_*gemm`` are already bound
   to the bundled BLAS; we rewrite those slots (found from libmlx's own relocation table, and only after
   checking that each one points into the bundled BLAS or libmlx's own lazy stub) to OpenBLAS's functions.
   Where that is impossible (read-only GOT, unknown ELF), one warning says how to fix it.

``mlx_gemm_library()`` (and ``blas_report()``) reads the slot back and names the library it points into, so what is
reported is what MLX
calls, not only what was loaded. ``MLX_MIMI_BLAS=off`` keeps the bundled BLAS; a path picks a library.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import platform
import struct
import sys
import threading
import warnings
from pathlib import Path

ENV_VAR = "MLX_MIMI_BLAS"
GEMMS = ("cblas_sgemm", "cblas_dgemm", "cblas_cgemm")

_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
    "/usr/local/lib/libopenblas.so.0",
)

_lock = threading.Lock()
_loaded: str | None = None  # the OpenBLAS file MLX was given
_how = ""  # "preloaded" or "rebound"
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
    """Give MLX's CPU matmuls an optimised BLAS where it helps (Linux) and is allowed; return its path or None.

    Safe to call more than once and from any thread; the package calls it on import.
    """
    global _loaded, _how, _reason
    with _lock:
        if _loaded is not None:
            return _loaded
        choice = os.environ.get(ENV_VAR, "auto").strip()
        if choice.lower() in ("off", "0", "none", "false"):
            _reason = f"disabled by {ENV_VAR}={choice}"
            return None
        if platform.system() != "Linux":
            _reason = "not needed (MLX uses Accelerate/Metal on macOS)"
            return None
        path = choice if choice.lower() != "auto" else _find_openblas()
        if path is None:
            _reason = "no OpenBLAS found (apt install libopenblas0-pthread); MLX uses its bundled reference BLAS"
            return None
        late = "mlx.core" in sys.modules
        try:
            lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            _reason = f"could not load {path}: {exc}"
            return None
        if not late:
            _loaded, _how, _reason = path, "preloaded", "loaded"
            return path
        problem = _rebind(lib)
        if problem is None:
            _loaded, _how, _reason = path, "rebound", "loaded"
            return path
        _reason = (
            f"mlx.core was imported before mlx_mimi and its BLAS could not be switched ({problem}); "
            "import mlx_mimi first, or run with LD_PRELOAD=" + path
        )
        warnings.warn(f"mlx-mimi: MLX keeps its slow reference BLAS (~10x slower on Linux): {_reason}", stacklevel=3)
        return None


# -- reading and rewriting libmlx's GOT slots ------------------------------------------------------------
_JUMP_SLOT = {"x86_64": (7, 6), "aarch64": (1026, 1025)}  # (JUMP_SLOT, GLOB_DAT) relocation types


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def _libmlx_path() -> Path | None:
    spec = importlib.util.find_spec("mlx")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "lib" / "libmlx.so"
        if path.is_file():
            return path
    return None


def _gemm_relocations(path: Path) -> dict[str, int]:
    """{symbol: r_offset} of the cblas_*gemm slots in an ELF64 little-endian shared library."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    types = _JUMP_SLOT.get(platform.machine())
    if types is None:
        raise ValueError(f"unsupported machine {platform.machine()}")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    out = {}
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != 4 or entsize != 24:  # SHT_RELA
            continue
        symtab = sections[link]
        strtab = sections[symtab[6]]
        for i in range(size // 24):
            r_offset, r_info, _ = struct.unpack_from("<QQq", data, offset + i * 24)
            if (r_info & 0xFFFFFFFF) not in types:
                continue
            (st_name,) = struct.unpack_from("<I", data, symtab[4] + (r_info >> 32) * 24)
            start = strtab[4] + st_name
            name = data[start : data.index(b"\0", start)].decode()
            if name in GEMMS:
                out[name] = r_offset
    return out


def _libc():
    return ctypes.CDLL(None)


def _library_of(address: int) -> str | None:
    info = _DlInfo()
    if not address or not _libc().dladdr(ctypes.c_void_p(address), ctypes.byref(info)):
        return None
    return os.path.realpath(info.dli_fname.decode()) if info.dli_fname else None


def _slots() -> tuple[Path, dict[str, int]]:
    """libmlx's path and {symbol: runtime address of its GOT slot}; raises where that cannot be known."""
    lib = _libmlx_path()
    if lib is None:
        raise ValueError("libmlx.so not found")
    handle = ctypes.CDLL(str(lib), mode=os.RTLD_NOLOAD)._handle  # already loaded by mlx.core
    link_map = ctypes.c_void_p()
    if _libc().dlinfo(ctypes.c_void_p(handle), 2, ctypes.byref(link_map)) != 0:  # RTLD_DI_LINKMAP
        raise ValueError("dlinfo failed")
    base = ctypes.c_size_t.from_address(link_map.value).value  # link_map.l_addr
    return lib, {name: base + offset for name, offset in _gemm_relocations(lib).items()}


def _writable(address: int) -> bool:
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= address < hi:
                return "w" in perms
    return False


def _rebind(openblas: ctypes.CDLL) -> str | None:
    """Point libmlx's cblas_*gemm slots at ``openblas``; None on success, else why not (nothing written)."""
    try:
        lib, slots = _slots()
        if "cblas_sgemm" not in slots:
            return "libmlx has no cblas_sgemm slot"
        plan = []
        for name, slot in slots.items():
            current = ctypes.c_void_p.from_address(slot).value or 0
            owner = _library_of(current) or ""
            if "libblas" not in os.path.basename(owner) and owner != os.path.realpath(lib):
                return f"{name} points into {owner or 'an unknown place'}, not the bundled BLAS"
            if not _writable(slot):
                return "libmlx's GOT is read-only (full RELRO)"
            plan.append((slot, ctypes.cast(getattr(openblas, name), ctypes.c_void_p).value))
    except (OSError, ValueError, AttributeError, IndexError, struct.error) as exc:
        return str(exc)
    for slot, target in plan:  # aligned pointer-sized stores: atomic for a concurrent caller
        ctypes.c_void_p.from_address(slot).value = target
    return None


def mlx_gemm_library() -> str | None:
    """The library file libmlx's ``cblas_sgemm`` calls go to right now (None where it cannot be read)."""
    if platform.system() != "Linux" or "mlx.core" not in sys.modules:
        return None
    try:
        _, slots = _slots()
        return _library_of(ctypes.c_void_p.from_address(slots["cblas_sgemm"]).value or 0)
    except (OSError, ValueError, KeyError, IndexError, struct.error):
        return None


def blas_report() -> str:
    """One line naming the BLAS MLX's CPU matmuls use, read from libmlx's own call slot where possible."""
    if platform.system() == "Darwin":
        return "Accelerate (macOS)"
    actual = mlx_gemm_library()
    if actual and "openblas" in os.path.basename(actual).lower():
        how = " (rebound after mlx.core was imported first)" if _how == "rebound" else ""
        return f"OpenBLAS ({actual}){how}"
    if _loaded:  # loaded, but the slot could not be read back: say what we did
        return f"OpenBLAS ({_loaded}, {_how})"
    where = f" {actual}" if actual else ""
    return f"bundled reference BLAS{where} ({_reason})"
