"""Activations: MLX's own and arithmetic equivalents that an x86 CPU runs faster (the caller's schedule picks),
and the large ELUs split over two streams (``elu_halves``).

Why: MLX's x86 CPU backend evaluates ``exp``/``expm1``/``erf`` one element at a time through libm, and the two
SEANets evaluate ~7 M ELUs per audio second each. Written in plain arithmetic and compiled, MLX fuses them into
C++ kernels that it compiles at run time; three facts of that path shape the formulas below (MLX 0.32, x86):
- a fused kernel holds at most 11 dependent ops (``max_compile_depth``): a longer chain is cut into several
  kernels, each writing its intermediates to memory;
- ``maximum``/``minimum``/``clip``/``where`` carry a NaN branch or a bool that keeps the compiler from
  vectorising the whole fused loop ("control flow in loop"): one ``minimum`` makes a 10-op kernel 20x slower;
- ``view`` (a bit cast, as in 2^n from exponent bits) is not fusable and splits the kernel around it.
So ELU is built from ``abs``, +, *, / only, in three vectorised kernels: 1.7 ms for a 15360 x 64 decoder-sized
tensor vs 3.2-4.7 ms for the earlier bit-cast polynomial and 11.5 ms for MLX's own ``expm1`` (AMD EPYC, MLX
0.32.4). Accuracy: within 3.8 ulp of float64 ``expm1`` on [-40, 0] (mean 0.5 ulp), relative precision kept
near 0, exactly x for x > 0. GELU's rational erf (Eigen's float approximation) is 3.6 ns per element.

Where MLX's own ops are vectorised (Metal; Apple-silicon and other arm64 CPUs, whose CPU backend has SIMD
exp) they are kept: the caller's ``Schedule.fast_math`` (mlx_mimi/schedule.py) picks the path, true only on an x86
CPU device unless ``MLX_MIMI_FASTMATH=on|off`` forces it (the tests run both). The two paths round differently, so
codes may differ between them only at near-ties (the README's determinism contract).
"""

from __future__ import annotations

import math
import threading

import mlx.core as mx

from ..compiled import per_thread

# -- ELU's expm1 for x <= 0: clamp, a polynomial at x / 16, four doublings expm1(2u) = expm1(u) (expm1(u) + 2) --
_CLAMP = -32.0  # expm1(x) rounds to -1 below about -17.3: any x below the clamp gives -1
_DOUBLINGS = 4
# q(u) = (expm1(u) - u) / u^2 on [_CLAMP / 16, 0] = [-2, 0], a degree-7 Chebyshev fit (numpy, float64)
_Q = (
    0.4999999973982994,
    0.16666657189134082,
    0.04166582421965481,
    0.008330177894283117,
    0.0013827915754783657,
    0.00019177602515685116,
    2.062405826963877e-05,
    1.2709455090396278e-06,
)


def _estrin(c: tuple, u: mx.array, u2: mx.array, u4: mx.array) -> mx.array:
    """c[0] + c[1] u + ... + c[7] u^7 in Estrin's form: depth 6 instead of Horner's 14 (see the fusion limit)."""
    pairs = [c[i] + c[i + 1] * u for i in range(0, 8, 2)]
    return (pairs[0] + pairs[1] * u2) + (pairs[2] + pairs[3] * u2) * u4


@per_thread
def _elu_arith(x: mx.array) -> mx.array:
    h = x * 0.5  # halves first: x - |x| would overflow beyond 1.7e38
    ah = mx.abs(h)
    t = h - ah  # min(x, 0), exact
    z = t * (1.0 / _CLAMP) - 1.0  # positive only below the clamp
    # min(x, 0) / 16, clamped: inside the clamp z + |z| is exactly 0 and the divisor exactly 2
    u = (t * (2.0 / 2**_DOUBLINGS)) / ((z + 2.0) + mx.abs(z))
    u2 = u * u
    m = u + u2 * _estrin(_Q, u, u2, u2 * u2)  # expm1(u), full relative precision near 0
    for _ in range(_DOUBLINGS):
        m = m * (m + 2.0)
    return (h + ah) + m  # relu(x) + expm1(min(x, 0)): each term is exactly 0 where the other acts


def elu(x: mx.array, fast: bool = False) -> mx.array:
    """ELU with alpha 1: max(x, expm1(min(x, 0))) (expm1(x) >= x everywhere; a maximum pass costs a quarter of a
    ``where`` on MLX's CPU backend). ``fast``: the arithmetic version (float32 only), NaN for infinite inputs."""
    if fast and x.dtype == mx.float32:
        return _elu_arith(x)
    return mx.maximum(x, mx.expm1(mx.minimum(x, 0)))


# -- ELU in two halves on two CPU streams ------------------------------------------------------------------
# MLX's CPU backend runs an elementwise kernel on one thread (its stream's), while matmuls use every BLAS
# thread. The ELUs in front of the SEANets' convs are split in two halves along time, one on a second CPU
# stream: both run at once, and the conv's own concatenation (state + input) joins them, so nothing is copied
# twice. Each element is computed as before: the same bits. Measured on the AMD EPYC (2 cores): ELU + concat
# of a 15360 x 64 tile 3.05 -> 2.07 ms. Below ``SPLIT_MIN_ELEMENTS`` the hand-off between the streams costs
# more than it saves; a GPU runs one kernel over the whole tensor anyway (``Schedule.split_elementwise``).
SPLIT_MIN_ELEMENTS = 1 << 18
# MLX streams belong to the thread that made them: a thread-local stream is a distinct stream in every thread
# that uses it (made on first use there), so the model stays usable from any thread.
_second_stream: list = []
_second_stream_lock = threading.Lock()


def _second_cpu_stream() -> mx.ThreadLocalStream:
    with _second_stream_lock:
        if not _second_stream:
            _second_stream.append(mx.new_thread_local_stream(mx.cpu))
        return _second_stream[0]


def elu_halves(x: mx.array, fast: bool = False, split: bool = False) -> list[mx.array]:
    """ELU of x (B, T, C) as a list of time pieces (their concatenation along axis 1 is ``elu(x)``), for a
    consumer that concatenates anyway (a causal conv: state + input). ``split``: large ones in two halves."""
    if not (split and x.size >= SPLIT_MIN_ELEMENTS and x.shape[1] >= 2):
        return [elu(x, fast)]
    half = x.shape[1] // 2
    with mx.stream(_second_cpu_stream()):
        first = elu(x[:, :half], fast)
    return [first, elu(x[:, half:], fast)]


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


@per_thread
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


def gelu(x: mx.array, fast: bool = False) -> mx.array:
    """Exact (erf) GELU, as the reference (not the tanh approximation); ``fast``: the rational erf (float32)."""
    if fast and x.dtype == mx.float32:
        return _gelu_arith(x)
    return _gelu_erf(x)


# MLX's own activations (``nn.gelu``, ``nn.silu``) are compiled once per process, which leaves entries in every
# thread's compile cache (compiled.py): the same formulas, compiled per thread.
@per_thread(shapeless=True)
def _gelu_erf(x: mx.array) -> mx.array:
    return x * (1 + mx.erf(x / math.sqrt(2))) / 2


@per_thread(shapeless=True)
def silu(x: mx.array) -> mx.array:
    """x * sigmoid(x), as ``nn.silu``."""
    return x * mx.sigmoid(x)


# -- exp for the attention softmax (arguments <= 0): 2^n exp(r), Cody-Waite reduction, 2^n from exponent bits --
# Here the bit cast (not fusable) is affordable: a softmax holds 64 x 313 scores per head, cache-resident.
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125  # ln 2 in two parts: n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = 1.428606765330187e-06
_ROUND = 12582912.0  # 1.5 * 2^23: (y + _ROUND) - _ROUND rounds y to an integer with adds only
_EXP = (1.0, 1.0, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040)  # exp(r), |r| <= ln 2 / 2: 8 terms


@per_thread
def _exp_nonpositive(t: mx.array) -> mx.array:
    """exp(t) for t <= 0 within ~1 ulp; t below -80 (and -inf) gives exp(-80) ~ 1.8e-35, never a denormal."""
    t = mx.maximum(t, -80.0)
    n = (t * _LOG2E + _ROUND) - _ROUND
    r = (t - n * _LN2_HI) - n * _LN2_LO
    r2 = r * r
    p = _estrin(_EXP, r, r2, r2 * r2)
    return mx.view((n.astype(mx.int32) + 127) << 23, mx.float32) * p


def masked_softmax(scores: mx.array, mask: mx.array, fast: bool = False) -> mx.array:
    """Softmax over the last axis of the keys ``mask`` (bool, broadcast) allows; the rest get exactly 0.

    ``fast`` (x86 CPUs): with MLX's own softmax 1.9 of the 2.4 ms of one layer's attention over a 64-step chunk
    went to its scalar exp (AMD EPYC); this exp is ~5x faster at the same accuracy.
    """
    if not (fast and scores.dtype == mx.float32):
        return mx.softmax(mx.where(mask, scores, -mx.inf), axis=-1, precise=True)
    scores = mx.where(mask, scores, -mx.inf)  # masked keys must not reach exp above the row's maximum
    e = _exp_nonpositive(scores - mx.max(scores, axis=-1, keepdims=True)) * mask
    return e / mx.sum(e, axis=-1, keepdims=True)
