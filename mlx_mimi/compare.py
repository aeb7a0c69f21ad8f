"""Comparing two sets of codes under the determinism contract (README): identical rates and near-ties.

Two computations of the same codes that differ only in float rounding (another CPU or BLAS, a batched or
chunked pass, another implementation) may pick different centroids where two are nearly equidistant from the
residual. The contract accepts a difference when, in every frame where codes differ, the first differing code
of each residual chain is such a near-tie (the distance gap between the two choices is below ``tol`` of the
residual's norm, in float64), and every later code of that chain is a near-optimal choice for the residual it
leaves (the chain follows from the flip). On long speech the rates must also hold: at least
``MIN_IDENTICAL`` of all codes identical and at most ``MAX_FRAMES_TOUCHED`` of frames with any difference.
Decoded audio of the same codes must agree within ``AUDIO_ATOL``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NEAR_TIE = 1e-4  # relative distance gap that float32 rounding of a latent (~1e-6 relative) can flip
MIN_IDENTICAL = 0.995
MAX_FRAMES_TOUCHED = 0.005
AUDIO_ATOL = 1e-5


@dataclass
class Chain:
    """One residual chain of a quantizer: codebooks ``first ..`` searched in turn from ``proj @ latent``.

    In the chain topology (the 9-codebook variant) a stage's chain continues into the next stage: ``then``
    reads ``latent - out_proj @ (sum of this stage's chosen entries)``, so a flip in one stage propagates
    into the codes of the stages after it, and is judged as one chain.
    """

    first: int  # index of its first codebook in the code array
    proj: np.ndarray  # (vq_dim, hidden) input projection applied to the latent, float64
    books: list[np.ndarray]  # (codebook_size, vq_dim) float64 each
    out_proj: np.ndarray | None = None  # (hidden, vq_dim): this stage's output projection, where ``then`` follows
    then: Chain | None = None

    def levels(self) -> int:
        return len(self.books) + (self.then.levels() if self.then is not None else 0)

    def walk(self, latent: np.ndarray, codes):
        """(level, residual, codebook) for each level ``codes`` reaches: what each code was searched from."""
        stage, level = self, 0
        while stage is not None:
            residual = stage.proj @ latent
            chosen = np.zeros_like(residual)
            for book in stage.books:
                if level >= len(codes):
                    return
                yield level, residual, book
                residual = residual - book[codes[level]]
                chosen = chosen + book[codes[level]]
                level += 1
            if stage.then is not None:
                latent = latent - stage.out_proj @ chosen
            stage = stage.then


def chains_of(model) -> list[Chain]:
    """The residual chains of an mlx-mimi model's quantizer, in float64."""
    quantizer = model.quantizer

    def chain(path, first: int) -> Chain:
        books = np.array(path.codebooks).astype(np.float64)
        if "input_proj" not in path:  # codebooks without projections (JODIO): the latent itself
            eye = np.eye(books.shape[-1])
            return Chain(first, eye, list(books), eye)
        out_proj = np.array(path.output_proj).astype(np.float64)
        return Chain(first, np.array(path.input_proj).astype(np.float64), list(books), out_proj)

    if model.config.quantizer.topology == "chain":
        stages, first = [], 0
        for stage in quantizer.stages:
            stages.append(chain(stage, first))
            first += len(stages[-1].books)
        for stage, following in zip(stages, stages[1:], strict=False):
            stage.then = following
        return [stages[0]]
    semantic = chain(quantizer.semantic, 0)
    acoustic = chain(quantizer.acoustic, model.config.num_semantic_quantizers)
    if getattr(quantizer, "acoustic_reads_residual", False):  # a JODIO reading: one chain through both
        semantic.then = acoustic
        return [semantic]
    return [semantic, acoustic]


@dataclass
class Agreement:
    identical: float  # share of identical codes
    frames_touched: float  # share of (clip, frame) pairs with at least one differing code
    groups: dict[str, float]  # identical share per codebook group
    first_differences: int  # differing chains (one per chain and frame)
    worst_gap: float  # largest relative gap among first differences
    violations: list[tuple] = field(default_factory=list)  # (clip, codebook, frame, relative gap, why)
    frames: int = 0

    def near_ties_only(self) -> bool:
        return not self.violations

    def rates_hold(self) -> bool:
        return self.identical >= MIN_IDENTICAL and self.frames_touched <= MAX_FRAMES_TOUCHED

    def summary(self) -> str:
        groups = ", ".join(f"{name} {rate:.5f}" for name, rate in self.groups.items())
        return (
            f"identical {self.identical:.5f} ({groups}); frames touched {self.frames_touched:.5f} of {self.frames}; "
            f"{self.first_differences} first differences, worst gap {self.worst_gap:.2e}; "
            f"{len(self.violations)} violations {self.violations[:3]}"
        )


def groups_of(num_codebooks: int, num_semantic: int = 1) -> dict[str, slice]:
    """Codebook groups reported separately: semantic, acoustic 2-8, acoustic 9-32."""
    out = {f"semantic ({num_semantic})": slice(0, num_semantic)}
    if num_codebooks > num_semantic:
        out[f"acoustic {num_semantic + 1}-{min(num_codebooks, 8)}"] = slice(num_semantic, 8)
    if num_codebooks > 8:
        out[f"acoustic 9-{num_codebooks}"] = slice(8, num_codebooks)
    return out


def _dist(residual: np.ndarray, entry: np.ndarray) -> float:
    return float(np.linalg.norm(residual - entry))


def _check_chain(a, b, latent, chain: Chain, tol: float, where: tuple) -> tuple[float, list[tuple]]:
    """Judge one differing chain: (relative gap of the first difference, violations)."""
    problems = []
    for j, residual, book in chain.walk(latent, a):
        if a[j] == b[j]:
            continue
        norm = max(np.linalg.norm(residual), 1e-30)
        gap = abs(_dist(residual, book[a[j]]) - _dist(residual, book[b[j]])) / norm
        if gap > tol:
            problems.append((*where[:1], chain.first + j, where[1], gap, "first difference is not a near-tie"))
        for codes in (a, b):  # each side's rest of the chain must follow from its own choice
            for j2, rest, book2 in chain.walk(latent, codes):
                if j2 <= j:
                    continue
                dists = np.linalg.norm(book2 - rest, axis=1)
                excess = (dists[codes[j2]] - dists.min()) / max(np.linalg.norm(rest), 1e-30)
                if excess > tol:
                    problems.append((where[0], chain.first + j2, where[1], excess, "does not follow from the flip"))
        return gap, problems
    return 0.0, problems


def agreement(
    a: np.ndarray, b: np.ndarray, latent: np.ndarray, chains: list[Chain], tol: float = NEAR_TIE
) -> Agreement:
    """Compare codes ``a`` and ``b`` (B, K, F) given the latent (B, F, hidden) they were searched from."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"code arrays differ in shape: {a.shape} vs {b.shape}")
    clips, k, frames = a.shape
    same = a == b
    touched = ~same.all(axis=1)  # (B, F)
    worst, firsts, violations = 0.0, 0, []
    for clip, frame in zip(*np.nonzero(touched), strict=True):
        x = latent[clip, frame].astype(np.float64)
        for chain in chains:
            stop = min(k, chain.first + chain.levels())
            if chain.first >= stop or same[clip, chain.first : stop, frame].all():
                continue
            span = slice(chain.first, stop)
            gap, problems = _check_chain(
                a[clip, span, frame], b[clip, span, frame], x, chain, tol, (int(clip), int(frame))
            )
            firsts += 1
            worst = max(worst, gap)
            violations.extend(problems)
    num_semantic = len(chains[0].books) if chains else 1
    groups = {name: float(same[:, s].mean()) for name, s in groups_of(k, num_semantic).items() if same[:, s].size}
    return Agreement(
        identical=float(same.mean()),
        frames_touched=float(touched.mean()),
        groups=groups,
        first_differences=firsts,
        worst_gap=worst,
        violations=violations,
        frames=clips * frames,
    )
