"""``mimi encode`` (files or a Parquet dataset), ``mimi decode`` and ``mimi roundtrip``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..codes import check_codes_fit, codes_file, load_codes, save_codes
from ..corpus import AUDIO_EXTENSIONS, CODES_EXTENSIONS, read_manifest
from ..dataset import encode_dataset
from .app import _finite, codebooks_option, files_command, load, main, model_option, pcm16_option, revision_option
from .files import FileRun, encode_files, is_codes_file, refuse_foreign, refuse_non_audio, write_decoded


@main.command()
@click.argument("inputs", nargs=-1)
@click.option("--manifest", type=click.Path(dir_okay=False), help="inputs listed in a file: paths, or CSV/JSONL")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="codes file (.safetensors) for one input")
@click.option("--out-dir", type=click.Path(file_okay=False), help="folder for the codes files of many inputs")
@click.option("--dataset", type=click.Path(file_okay=False), help="write a Parquet dataset here instead")
@codebooks_option
@click.option(
    "--batch-seconds",
    type=click.FloatRange(min=0, min_open=True),
    callback=_finite,
    default=120.0,
    show_default=True,
    help="padded audio per batch (a memory bound)",
)
@click.option("--shard-rows", type=click.IntRange(min=1), default=10_000, show_default=True, help="rows per shard")
@click.option(
    "--shard-mb", type=click.FloatRange(min=0, min_open=True), default=256.0, show_default=True, help="codes per shard"
)
@click.option("--strict", is_flag=True, help="stop at the first input that cannot be read")
@click.option("--overwrite", is_flag=True, help="redo outputs that already exist (--dataset: start it anew)")
@model_option
@revision_option
def encode(inputs, manifest, output, out_dir, dataset, num_codebooks, batch_seconds, strict, overwrite, **kw):
    """Audio files, folders (recursive) or globs (any format, rate, channels) -> codes files or a dataset.

    \b
    mimi encode talk.wav                          # -> talk.safetensors
    mimi encode corpus/ --out-dir codes/          # one codes file per clip, mirroring the folders
    mimi encode corpus/ --dataset out/ -n 32      # Parquet shards + index.json; re-run to resume
    mlx.launch -n 2 -- mimi encode corpus/ --dataset out/ -n 32   # the same over 2 processes/hosts
    """
    if not inputs and not manifest:
        raise click.UsageError("give input files, folders or globs, or --manifest")
    extra = read_manifest(manifest) if manifest else []
    if dataset is not None:
        if output or out_dir:
            raise click.UsageError("--dataset writes shards: -o/--output and --out-dir do not apply")
        folder = Path(dataset)
        sys.exit(
            encode_dataset(
                inputs, extra, folder, num_codebooks, batch_seconds, strict=strict, overwrite=overwrite, **kw
            )
        )
    run = FileRun(
        inputs, output, out_dir, AUDIO_EXTENSIONS, ".safetensors", overwrite, is_codes_file, refuse_foreign, extra
    )
    run.strict = strict
    if run.todo:
        mimi = load(kw["model"], kw["revision"])
        k = mimi.check_num_codebooks(num_codebooks)

        def write(item, out, codes, n):
            save_codes(out, codes_file(mimi, codes, n, item.path.name))

        encode_files(mimi, run, k, batch_seconds, "encode", write)
    run.finish("encoded")


@files_command("wav file")
@click.option("--length", type=click.IntRange(min=1), default=None, help="samples to keep (.npy codes carry none)")
@pcm16_option
def decode(inputs, output, out_dir, length, pcm16, overwrite, model, revision):
    """Codes files (.safetensors, or .npy of shape (K, F)) -> 24 kHz wav, trimmed to the original length.

    Without -o/--out-dir, x.safetensors is decoded to x.mimi.wav (never over the original x.wav).
    """
    run = FileRun(inputs, output, out_dir, CODES_EXTENSIONS, ".mimi.wav", overwrite, lambda out: True, refuse_non_audio)
    if run.todo:
        mimi = load(model, revision)
        bar = run.progress("decode")
        for item, out in run.todo:
            try:
                codes = load_codes(item.path, num_samples=length, codebook_size=mimi.config.codebook_size)
                warning = check_codes_fit(codes, item.path, mimi)
                if warning:
                    click.echo(f"warning: {warning}", err=True)
                write_decoded(mimi, out, codes.codes, codes.num_samples, pcm16)
                run.done += 1
            except (ValueError, OSError) as exc:
                run.fail(item, exc)
            bar.update(1)
    run.finish("decoded")


@files_command("wav file")
@codebooks_option
@pcm16_option
def roundtrip(inputs, output, out_dir, num_codebooks, pcm16, overwrite, model, revision):
    """Audio -> codes -> audio (x.wav -> x.mimi.wav): hear what Mimi keeps at a given number of codebooks."""
    run = FileRun(inputs, output, out_dir, AUDIO_EXTENSIONS, ".mimi.wav", overwrite, lambda out: True, refuse_non_audio)
    if run.todo:
        mimi = load(model, revision)
        k = mimi.check_num_codebooks(num_codebooks)
        encode_files(
            mimi, run, k, 120.0, "roundtrip", lambda item, out, codes, n: write_decoded(mimi, out, codes, n, pcm16)
        )
    run.finish("written")
