"""Activations, and the one place where mlx-mimi swaps MLX's own transcendental ops for faster ones by backend.

Why: MLX's x86 CPU backend evaluates ``exp``/``expm1``/``erf`` one element at a time through libm (9-11 ns
per element for expm1, 34 ns for GELU's erf, measured on an AMD EPYC with MLX 0.32.4), and the two SEANets
evaluate ~7 M ELUs per audio second each. Written in plain arithmetic and compiled, MLX fuses them into
generated C++ kernels instead: ELU 3.2 ns per element on a decoder-sized tensor (61440 x 64), GELU 3.6 ns,
with the accuracy of the libm versions (ELU max relative error 8.7e-8 vs 7.3e-8 for expm1; GELU's rational
erf is Eigen's float approximation, max absolute error ~1e-6 at |x| ~ 15).

Where MLX's own ops are vectorised (Metal; Apple-silicon and other arm64 CPUs, whose CPU backend has SIMD
exp) they are kept: ``fast_math()`` is true only on an x86 CPU device. ``MLX_MIMI_FASTMATH=on|off`` forces
the choice (the tests run both). The two paths round differently, so codes may differ between them only at
near-ties (the README's determinism contract).
"""

from __future__ import annotations

import os
import platform

import mlx.core as mx
import mlx.nn as nn

ENV_VAR = "MLX_MIMI_FASTMATH"
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def fast_math() -> bool:
    """Whether the arithmetic versions are used now (decided at each call, or at trace time when compiled)."""
    forced = os.environ.get(ENV_VAR, "auto").lower()
    if forced in ("on", "1", "true"):
        return True
    if forced in ("off", "0", "false"):
        return False
    return _X86 and mx.default_device() == mx.cpu


# -- expm1 / exp for non-positive inputs: Cody-Waite range reduction, a degree-7 polynomial, 2^n from bits ---
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125  # ln 2 split in two so that n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = 1.428606765330187e-06
_ROUND = 12582912.0  # 1.5 * 2^23: (y + _ROUND) - _ROUND rounds y to an integer with plain adds (no floor call)
_EXPM1 = (1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040)  # expm1(r) = r + r^2 (1/2 + r (1/6 + ...))


def _expm1_nonpositive(t: mx.array) -> mx.array:
    """expm1(t) for t in [-87, 0]: t = n ln2 + r with |r| <= ln2 / 2, expm1(t) = 2^n expm1(r) + (2^n - 1).

    The expm1 form keeps full relative precision near 0 (exp(r) - 1 would not).
    """
    n = (t * _LOG2E + _ROUND) - _ROUND
    r = (t - n * _LN2_HI) - n * _LN2_LO
    p = _EXPM1[-1]
    for c in reversed(_EXPM1[:-1]):
        p = p * r + c
    p = (p * r) * r + r
    scale = mx.view((n.astype(mx.int32) + 127) << 23, mx.float32)  # 2^n, exact for n >= -126
    return scale * p + (scale - 1.0)


@mx.compile
def _elu_arith(x: mx.array) -> mx.array:
    return mx.maximum(x, _expm1_nonpositive(mx.maximum(mx.minimum(x, 0.0), -87.0)))


def elu(x: mx.array) -> mx.array:
    """ELU with alpha 1: max(x, expm1(min(x, 0))), since expm1(x) >= x everywhere.

    A maximum instead of a select: on MLX's CPU backend ``where`` costs 4x a ``maximum`` pass.
    """
    if fast_math() and x.dtype == mx.float32:
        return _elu_arith(x)
    return mx.maximum(x, mx.expm1(mx.minimum(x, 0)))


# -- GELU with a rational erf (Eigen's float erf: x P(x^2) / Q(x^2) on [-4, 4]) ------------------------------
_ERF_P = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
_ERF_Q = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)


@mx.compile
def _gelu_arith(x: mx.array) -> mx.array:
    z = mx.clip(x * 0.7071067811865476, -4.0, 4.0)
    z2 = z * z
    p = _ERF_P[0]
    for c in _ERF_P[1:]:
        p = p * z2 + c
    q = _ERF_Q[0]
    for c in _ERF_Q[1:]:
        q = q * z2 + c
    return (0.5 * x) * (1.0 + z * p / q)


def gelu(x: mx.array) -> mx.array:
    """Exact (erf) GELU, as the reference (not the tanh approximation)."""
    if fast_math() and x.dtype == mx.float32:
        return _gelu_arith(x)
    return nn.gelu(x)
