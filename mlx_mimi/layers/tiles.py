"""Running a stateful layer stack over time tiles: the state carries from tile to tile, as in streaming."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx


def in_tiles(
    fn: Callable,
    x: mx.array,
    state,
    tile_steps: int | None,
    final: bool = False,
    valid: mx.array | None = None,
    evaluate: bool = False,
):
    """``fn(x_tile, state[, final=..., valid=...])`` over x (B, T, C) in tiles of ``tile_steps`` steps (None: one
    tile), the state carried from tile to tile; each tile is a whole number of frames. ``final`` goes to the last
    tile. ``valid`` (B,) steps of each clip of a right-padded batch is split per tile, and the layer's valid output
    steps are summed (tiles are whole frames, so each tile's ceil(valid / stride) adds up to the whole call's).
    ``evaluate``: evaluate each tile as it is built (an evaluation point: the same values, computed sooner).
    Returns (y, state) or, with ``valid``, (y, state, valid output steps)."""
    size = x.shape[1] if tile_steps is None else tile_steps
    starts = list(range(0, x.shape[1], size)) or [0]
    outs, counts = [], []
    for start in starts:
        kw = {}
        if final:
            kw["final"] = start == starts[-1]
        if valid is not None:
            kw["valid"] = mx.clip(valid - start, 0, size)
        out = fn(x[:, start : start + size], state, **kw)
        if evaluate:
            mx.eval(out)
        outs.append(out[0])
        state = out[1]
        if valid is not None:
            counts.append(out[2])
    y = mx.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]
    if valid is None:
        return y, state
    return y, state, sum(counts[1:], counts[0])


def tile_steps(frames: int | None, steps_per_frame: int) -> int | None:
    """Steps in a tile of ``frames`` frames (None: no tiles)."""
    return None if frames is None else frames * steps_per_frame
