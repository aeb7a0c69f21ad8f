"""Asserting the determinism contract (README, mlx_mimi/compare.py) in tests."""

from __future__ import annotations

import numpy as np

from mlx_mimi.compare import AUDIO_ATOL, agreement, chains_of


def assert_contract(model, pcm, a, b, label: str, rates: bool = False, latent=None):
    """Codes a and b (B, K, F) of ``pcm`` differ only by near-ties (and, with ``rates``, by few enough).

    ``rates`` is for long speech (the contract states its rates on 60 s): on a short clip one touched frame
    is already more than 0.5% of frames.
    """
    a, b = np.asarray(a), np.asarray(b)
    if latent is None:
        latent = np.array(model.encode_latent(pcm))
    result = agreement(a, b, latent, chains_of(model))
    print(f"{label}: {result.summary()}{' (bit-identical)' if np.array_equal(a, b) else ''}")
    assert result.near_ties_only(), f"{label}: {result.summary()}"
    if rates:
        assert result.rates_hold(), f"{label}: {result.summary()}"
    return result


def assert_audio_contract(a, b, label: str) -> float:
    err = float(np.abs(np.asarray(a) - np.asarray(b)).max())
    print(f"{label}: audio max abs difference {err:.2e}")
    assert err <= AUDIO_ATOL, f"{label}: audio differs by {err:.2e} > {AUDIO_ATOL}"
    return err
