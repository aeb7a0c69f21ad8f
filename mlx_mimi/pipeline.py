"""The encode-many pipeline, one for every many-file output: plan the inputs into length-bucketed batches from their
headers, read each batch, encode it with ``encode_batch``, and hand every clip's codes to a callback; an input
that cannot be read goes to a failure callback and the others carry on. ``mimi encode`` / ``mimi roundtrip``
(files) and ``mimi encode --dataset`` (Parquet shards) differ only in their callbacks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .audio import read_audio
from .corpus import Clip, Item, plan_batches, probe
from .errors import AudioError


def plan(items: list[Item], sample_rate: int, batch_seconds: float) -> tuple[list[list[Clip]], list[tuple]]:
    """(batches, [(item, AudioError)] for the inputs whose headers cannot be read). Deterministic: the batches
    depend only on the clips' lengths and ids, never on how many processes share them."""
    clips, problems = probe(items, sample_rate)
    return plan_batches(clips, int(batch_seconds * sample_rate)), problems


def encode_batches(
    codec,
    batches: list[list[Clip]],
    num_codebooks: int,
    on_codes: Callable[[Item, np.ndarray, int], None],
    on_failure: Callable[[Item, BaseException], None],
    on_batch: Callable[[list[Clip], int], None] | None = None,
) -> None:
    """Encode every clip of ``batches``; ``on_codes(item, codes (K, F), num_samples)`` for each one encoded,
    ``on_failure(item, error)`` for each that cannot be read (raise there to stop), and ``on_batch(batch, read)``
    after each batch (``read``: how many of its clips were read). ``encode_batch`` gives every clip the codes it
    gets alone (README: the determinism contract), so how the clips are batched changes no code."""
    for batch in batches:
        read: list[tuple[Clip, np.ndarray]] = []
        for clip in batch:
            try:
                read.append((clip, read_audio(clip.item.path, codec.sample_rate)))
            except (AudioError, ValueError, OSError) as exc:
                on_failure(clip.item, exc)
        if read:
            codes = codec.encode_batch([pcm for _, pcm in read], num_codebooks=num_codebooks)
            for (clip, pcm), row in zip(read, codes, strict=True):
                on_codes(clip.item, np.array(row), len(pcm))
        if on_batch is not None:
            on_batch(batch, len(read))
