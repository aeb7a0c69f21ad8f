"""The near-tie checker itself (mlx_mimi/compare.py), on a synthetic quantizer: it accepts real near-ties and
their consequences, and rejects anything else. (On this machine the model comparisons are often bit-identical,
so without these tests the checker's rejections would never be exercised.)"""

from __future__ import annotations

import numpy as np

from mlx_mimi.compare import NEAR_TIE, Chain, agreement

DIM, VQ, SIZE, LEVELS = 16, 8, 64, 4


def quantizer(seed: int = 0) -> list[Chain]:
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((VQ, DIM)) / np.sqrt(DIM)
    books = [rng.standard_normal((SIZE, VQ)) * 0.5**j for j in range(LEVELS)]
    return [Chain(0, proj, books)]


def search(residual: np.ndarray, books, start: int = 0, forced: dict | None = None) -> list[int]:
    codes = []
    for j, book in enumerate(books[start:], start):
        code = (forced or {}).get(j, int(np.linalg.norm(book - residual, axis=1).argmin()))
        codes.append(code)
        residual = residual - book[code]
    return codes


def near_tie_latent(chains: list[Chain], rng) -> tuple[np.ndarray, int, int]:
    """A latent whose first-level residual is equidistant (to ~1e-9) from two centroids: (latent, c1, c2)."""
    chain = chains[0]
    book = chain.books[0]
    x = rng.standard_normal(DIM)
    r = chain.proj @ x
    order = np.argsort(np.linalg.norm(book - r, axis=1))
    c1, c2 = int(order[0]), int(order[1])
    # move r onto the bisecting hyperplane of c1 and c2, then lift the change back to the latent
    normal = book[c2] - book[c1]
    midpoint = (book[c1] + book[c2]) / 2
    target = r - ((r - midpoint) @ normal) / (normal @ normal) * normal
    x = x + np.linalg.lstsq(chain.proj, target - r, rcond=None)[0]
    return x, c1, c2


def test_accepts_a_near_tie_and_its_consequences():
    chains = quantizer()
    rng = np.random.default_rng(1)
    x, c1, c2 = near_tie_latent(chains, rng)
    r = chains[0].proj @ x
    a = search(r, chains[0].books, forced={0: c1})
    b = search(r, chains[0].books, forced={0: c2})  # the flip, and the rest of the chain following from it
    result = agreement(np.array(a)[None, :, None], np.array(b)[None, :, None], x[None, None], chains)
    assert result.near_ties_only(), result.summary()
    assert result.first_differences == 1 and result.frames_touched == 1.0
    assert result.worst_gap < NEAR_TIE


def test_rejects_a_flip_that_is_not_a_near_tie():
    chains = quantizer()
    x = np.random.default_rng(2).standard_normal(DIM)
    r = chains[0].proj @ x
    a = search(r, chains[0].books)
    wrong = int(np.argsort(np.linalg.norm(chains[0].books[0] - r, axis=1))[SIZE // 2])  # a middling centroid
    b = search(r, chains[0].books, forced={0: wrong})
    result = agreement(np.array(a)[None, :, None], np.array(b)[None, :, None], x[None, None], chains)
    assert not result.near_ties_only()
    assert result.violations[0][4] == "first difference is not a near-tie"


def test_rejects_a_chain_that_does_not_follow_the_flip():
    chains = quantizer()
    rng = np.random.default_rng(3)
    x, c1, c2 = near_tie_latent(chains, rng)
    r = chains[0].proj @ x
    a = search(r, chains[0].books, forced={0: c1})
    b = search(r, chains[0].books, forced={0: c2})
    b[2] = (b[2] + 7) % SIZE  # a later code that is not the nearest for b's residual
    result = agreement(np.array(a)[None, :, None], np.array(b)[None, :, None], x[None, None], chains)
    # level 2 is the bad code; level 3, searched for the residual the original level 2 left, no longer fits either
    assert [(v[1], v[4]) for v in result.violations] == [
        (2, "does not follow from the flip"),
        (3, "does not follow from the flip"),
    ]


def test_rates():
    chains = quantizer()
    rng = np.random.default_rng(4)
    frames = 400
    latent = rng.standard_normal((1, frames, DIM))
    a = np.array([search(chains[0].proj @ latent[0, f], chains[0].books) for f in range(frames)]).T[None]
    b = a.copy()
    b[0, 3, 10] = (b[0, 3, 10] + 1) % SIZE  # one differing code out of 1600, in one frame out of 400
    result = agreement(a, b, latent, chains)
    assert result.identical == 1 - 1 / (LEVELS * frames)
    assert result.frames_touched == 1 / frames
    assert result.rates_hold()
    b[0, 3, :5] = (b[0, 3, :5] + 1) % SIZE  # 6 frames of 400 touched: 1.5% > 0.5%
    assert not agreement(a, b, latent, chains).rates_hold()
