"""``mimi info``: the version, backend and BLAS, and a model's architecture, codebooks and dtype."""

from __future__ import annotations

import click

from .. import backend
from ..schedule import device_report
from ..version import __version__
from .app import load, main, revision_option


@main.command()
@click.argument("model", required=False)
@revision_option
def info(model, revision):
    """Backend and BLAS in use; with MODEL, its architecture, codebooks and dtype."""
    click.echo(f"mlx-mimi {__version__}")
    click.echo(f"backend: {device_report()}")
    click.echo(f"BLAS: {backend.blas_report()}")
    if model is None:
        return
    mimi = load(model, revision)
    c = mimi.config
    src = mimi.source
    click.echo(f"model: {src['model_id']} (layout {src['layout']}, dtype {str(mimi.dtype).split('.')[-1]})")
    click.echo(f"audio: {c.sampling_rate} Hz mono, frame {c.frame_size} samples, {c.frame_rate_hz:g} Hz frames")
    for line in mimi.describe():
        click.echo(line)
    halves = [h for h, on in (("encoder", c.has_encoder), ("decoder", c.has_decoder)) if on]
    click.echo(f"halves: {', '.join(halves)}")
    q = c.quantization
    if q:
        click.echo(f"quantized: {q['bits']}-bit affine, group size {q['group_size']}, {len(q['modules'])} layers")
