"""The arithmetic activations x86 CPUs use (layers/activations.py) against float64 references, and the CPU's
shared RoPE table (layers/transformer.py) against MLX's own rope."""

from __future__ import annotations

import math
import threading

import mlx_mimi  # noqa: F401  (first: OpenBLAS before mlx.core)

import mlx.core as mx  # isort: skip
import numpy as np
import pytest

from mlx_mimi.layers.activations import (
    _elu_arith,
    _exp_nonpositive,
    _gelu_arith,
    elu,
    elu_halves,
    masked_softmax,
)
from mlx_mimi.layers.transformer import rope_table, rotate_half, window_mask

# FMA contraction (a wheel built for AVX2 JIT-compiles with -mfma) rounds differently: margins above what
# this machine measures (ELU 3.7 ulp, exp 1.6 ulp)
ELU_ULP, EXP_ULP = 8.0, 4.0


def _ulps(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(got.astype(np.float64) - ref) / np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)


def test_elu_matches_expm1_in_float64():
    neg = -np.logspace(-30, 1.6, 200_000)
    x = np.concatenate([neg, np.linspace(-40, 40, 100_001), np.logspace(-30, 30, 1000)]).astype(np.float32)
    got = np.array(_elu_arith(mx.array(x)))
    ref = np.where(x > 0, x.astype(np.float64), np.expm1(np.minimum(x, 0).astype(np.float64)))
    ulps = _ulps(got, ref)
    assert ulps.max() <= ELU_ULP and ulps.mean() <= 1.0, (ulps.max(), ulps.mean())
    assert (got[x > 0] == x[x > 0]).all()  # the positive side is x itself, bit for bit
    tail = np.array(_elu_arith(mx.array([-17.5, -32.0, -33.0, -1e6, -3e38], dtype=mx.float32)))
    assert (tail == -1.0).all()
    assert math.isnan(float(_elu_arith(mx.array([float("nan")]))[0]))


def test_exp_of_nonpositive_arguments_matches_float64():
    t = np.concatenate([-np.logspace(-30, 1.9, 200_000), np.linspace(-80, 0, 100_001)]).astype(np.float32)
    got = np.array(_exp_nonpositive(mx.array(t)))
    ulps = _ulps(got, np.exp(t.astype(np.float64)))
    assert ulps.max() <= EXP_ULP, ulps.max()
    floor = np.array(_exp_nonpositive(mx.array([-80.0, -1e30, -float("inf")], dtype=mx.float32)))
    assert (floor == floor[0]).all() and abs(floor[0] / np.exp(-80.0) - 1) < 1e-6  # clamped: no denormal, no NaN


def test_masked_softmax_matches_float64_softmax():
    rng = np.random.default_rng(0)
    for pos in (0, 500):  # a stream's start (keys before it masked) and a full window
        scores = (rng.standard_normal((1, 8, 64, 313)) * 4).astype(np.float32)
        mask = np.array(window_mask(mx.array([pos]), 64, 249))
        got = np.array(masked_softmax(mx.array(scores), mx.array(mask), fast=True))
        s = np.where(mask, scores.astype(np.float64), -np.inf)
        ref = np.exp(s - s.max(-1, keepdims=True))
        ref /= ref.sum(-1, keepdims=True)
        own = np.array(mx.softmax(mx.where(mx.array(mask), mx.array(scores), -mx.inf), axis=-1, precise=True))
        assert (got[np.broadcast_to(~mask, got.shape)] == 0).all()
        # no further from float64 than MLX's own softmax (its float32 sum and division dominate)
        assert np.abs(got - ref).max() <= 1.5 * np.abs(own - ref).max() + 1e-7


def test_gelu_matches_erf_in_float64():
    x = np.concatenate([np.linspace(-12, 12, 200_001), -np.logspace(-20, 2, 1000)]).astype(np.float32)
    got = np.array(_gelu_arith(mx.array(x))).astype(np.float64)
    xd = x.astype(np.float64)
    ref = 0.5 * xd * (1 + np.array([math.erf(v / math.sqrt(2)) for v in xd]))
    assert np.abs(got - ref).max() <= 2e-6 * np.maximum(np.abs(xd), 1).max() / 12


@pytest.mark.parametrize("pos, steps", [(0, 2), (500, 64), (123_456, 7)])
def test_shared_rope_table_is_mlx_rope_bit_for_bit(pos, steps):
    """The CPU's one-table RoPE (layers/transformer.py) is MLX's CPU rope arithmetic, op for op: the same bits,
    here on q and k of a (3, B, H, L, D) q|k|v view as the attention takes them."""
    qkv = mx.random.normal((steps, 2, 3, 8, 64), key=mx.random.key(pos)).transpose(2, 1, 3, 0, 4)
    offset = mx.array([pos, pos], dtype=mx.int32)  # one position per row (B = 2)
    with mx.stream(mx.cpu):
        got = rotate_half(qkv[:2], *rope_table(offset, steps, 64, 10_000.0))
        for i in range(2):
            want = mx.fast.rope(qkv[i], 64, traditional=False, base=10_000.0, scale=1.0, offset=offset)
            assert mx.array_equal(got[i], want).item()


def test_elu_halves_are_elu_bit_for_bit_in_any_thread():
    """The CPU's two-stream ELU (layers/activations.py) computes every element as ``elu``, in the thread that
    asks (MLX streams belong to threads: the second stream is thread-local)."""
    x = mx.random.normal((1, 15360, 64), key=mx.random.key(3)) * 4
    results = []

    def run():
        with mx.stream(mx.cpu):
            for fast in (False, True):
                parts = elu_halves(x, fast=fast, split=True)
                results.append((len(parts), mx.array_equal(mx.concatenate(parts, axis=1), elu(x, fast)).item()))

    run()
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert results == [(2, True)] * 4
    assert len(elu_halves(x, fast=True, split=False)) == 1  # the GPU schedule keeps one kernel


def test_rows_have_their_own_positions():
    """Per-row positions (a batched stream whose rows restarted at different times): each row's RoPE and window
    are those of a stream of its own."""
    qkv = mx.random.normal((7, 2, 3, 8, 64), key=mx.random.key(9)).transpose(2, 1, 3, 0, 4)
    pos = mx.array([0, 300], dtype=mx.int32)
    with mx.stream(mx.cpu):
        got = rotate_half(qkv[:2], *rope_table(pos, 7, 64, 10_000.0))
        batched = mx.fast.rope(qkv[0], 64, traditional=False, base=10_000.0, scale=1.0, offset=pos)
        for row in range(2):
            one = mx.fast.rope(qkv[0][row : row + 1], 64, traditional=False, base=10_000.0, scale=1.0, offset=pos[row])
            assert (
                mx.array_equal(got[0][row : row + 1], one).item() and mx.array_equal(batched[row : row + 1], one).item()
            )
    mask = np.array(window_mask(pos, 7, 249))
    for row in range(2):
        np.testing.assert_array_equal(mask[row], np.array(window_mask(pos[row : row + 1], 7, 249))[0])
    assert mask[0, 0, 0, :249].sum() == 0 and mask[1, 0, 0, :249].all()  # row 0 starts fresh, row 1 sees its past
