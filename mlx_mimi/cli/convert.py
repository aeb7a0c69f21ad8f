"""``mimi convert`` (any layout -> mlx-mimi's, optionally quantized), ``mimi variant nine-codebooks`` and
``mimi train-heads``."""

from __future__ import annotations

from pathlib import Path

import click
import mlx.core as mx

from ..audio import read_audio
from ..convert import convert as convert_model
from ..convert import refuse_overwriting_source, write_converted
from ..corpus import AUDIO_EXTENSIONS, expand_inputs
from ..hub import DEFAULT_MODEL, resolve
from ..load import load_resolved
from ..train import npz_batches, train_heads
from ..variant import nine_codebooks as surgery
from .app import load, main, revision_option


@main.command()
@click.argument("model", default=DEFAULT_MODEL)
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
@click.option("--encoder-only", is_flag=True, help="keep only what encoding needs")
@click.option("--decoder-only", is_flag=True, help="keep only what decoding needs")
@click.option("--quantize", type=click.Choice(["2", "3", "4", "5", "6", "8"]), default=None, help="bits per weight")
@click.option("--group-size", type=click.Choice(["32", "64", "128"]), default=None, help="with --quantize (default 64)")
@click.option(
    "--keep-float",
    multiple=True,
    help="layers (or prefixes) kept float; default: encoder,decoder (the SEANets); 'none' quantizes all",
)
@revision_option
def convert(model, output, dtype, encoder_only, decoder_only, quantize, group_size, keep_float, revision):
    """Rewrite a checkpoint (any layout) in mlx-mimi's layout: faster to load, optionally quantized."""
    if encoder_only and decoder_only:
        raise click.UsageError("--encoder-only and --decoder-only exclude each other")
    if keep_float and quantize is None:
        raise click.UsageError("--keep-float applies with --quantize")
    if group_size and quantize is None:
        raise click.UsageError("--group-size applies with --quantize")
    keep = ",".join(keep_float) if keep_float else None
    out = convert_model(
        model,
        output,
        dtype=dtype,
        encoder=not decoder_only,
        decoder=not encoder_only,
        revision=revision,
        quantize=int(quantize) if quantize else None,
        group_size=int(group_size or 64),
        keep_float=keep,
    )
    size = (out / "model.safetensors").stat().st_size / 1e6
    click.echo(f"wrote {out / 'model.safetensors'} ({size:.0f} MB) and {out / 'config.json'}")


@main.group()
def variant():
    """Build a Mimi variant from a Mimi checkpoint (any layout)."""


@variant.command("nine-codebooks")
@click.argument("model", default=DEFAULT_MODEL)
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="for everything fresh")
@click.option(
    "--content-init",
    type=click.Choice(["random", "kmeans"]),
    default="random",
    show_default=True,
    help="the fresh content codebook: the seed library's random init, or k-means on --audio latents",
)
@click.option("--audio", multiple=True, help="with --content-init kmeans: audio files, folders or globs")
@click.option(
    "--content-projection",
    is_flag=True,
    help="give the content head 256-d projections (default: a 512-d codebook on the latent, as the seed writes it)",
)
@revision_option
def nine_codebooks(model, output, seed, content_init, audio, content_projection, revision):
    """Seed 003's variant: content (fresh) + prosody (Mimi codebook 0) + 7 acoustic (Mimi codebooks 1-7).

    \b
    mimi variant nine-codebooks kyutai/mimi -o mimi9/
    mimi encode talk.wav --model mimi9/      # (9, F) codes
    """
    if audio and content_init != "kmeans":
        raise click.UsageError("--audio applies with --content-init kmeans")
    if content_init == "kmeans" and not audio:
        raise click.UsageError("--content-init kmeans needs --audio")
    out = Path(output)
    resolved = resolve(model, revision=revision)
    refuse_overwriting_source(model, resolved, out)
    mimi = load_resolved(resolved)
    latents = None
    if audio:
        items, problems = expand_inputs(audio, AUDIO_EXTENSIONS)
        if problems or not items:
            raise click.UsageError(problems[0] if problems else "--audio names no audio file")
        latents = mx.concatenate([mimi.encode_latent(read_audio(i.path, mimi.sample_rate))[0] for i in items])
    built = surgery(mimi, seed=seed, content_init=content_init, latents=latents, content_projection=content_projection)
    write_converted(built, out)
    click.echo(f"wrote {out}: 9 codebooks (content, prosody, 7 acoustic) from {model}")


POSITIVE = click.FloatRange(min=0, min_open=True)


@main.command("train-heads")
@click.argument("model")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="folder of .npz clips")
@click.option("-o", "--checkpoints", required=True, type=click.Path(file_okay=False), help="checkpoint folder")
@click.option("--steps", type=click.IntRange(min=1), required=True, help="optimizer steps")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="clips per micro-batch")
@click.option("--accumulate", type=click.IntRange(min=1), default=1, show_default=True, help="micro-batches per step")
@click.option("--content-lr", type=POSITIVE, default=1e-4, show_default=True, help="head 0")
@click.option("--prosody-lr", type=POSITIVE, default=1e-4, show_default=True, help="head 1")
@click.option("--acoustic-lr", type=POSITIVE, default=1e-5, show_default=True, help="heads 2-8")
@click.option("--bridge-lr", type=POSITIVE, default=1e-4, show_default=True, help="proj_qwen, proj_wavlm")
@click.option("--heads", default="content,prosody,acoustic", show_default=True, help="the heads that train")
@click.option("--distill-dim", type=click.IntRange(min=1), default=1536, show_default=True, help="teacher width")
@click.option("--wavlm-dim", type=click.IntRange(min=1), default=1024, show_default=True, help="wavlm target width")
@click.option("--wavlm-weight", type=click.FloatRange(min=0), default=1.0, show_default=True, help="loss B's weight")
@click.option("--commitment-weight", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def train_heads_command(model, data, checkpoints, steps, batch_size, heads, **settings):
    """Train the variant's heads on teacher features you provide (seed 003's recipe); resumes from -o's latest.

    Each clip in --data is an .npz with `teacher` (tokens, distill_dim) float features and `durations`
    (tokens,) frames per token, either `audio` (T,) at 24 kHz or `latent` (F, 512) quantizer inputs, and
    optionally `wavlm` (F, wavlm_dim) targets (loss B). Clips are cut into equal-length windows of the shortest
    clip's frames and batched; each optimizer step takes --accumulate micro-batches of --batch-size clips.
    """
    mimi = load(model)
    names = tuple(s.strip() for s in heads.split(",") if s.strip())

    def say(entry):
        wavlm = f", wavlm {entry.wavlm:.5f}" if entry.wavlm else ""
        click.echo(
            f"step {entry.step}: loss {entry.loss:.5f} (distill {entry.distill:.5f}{wavlm}, commitment "
            f"{entry.commitment:.5f}), content codes used {entry.codes_used}, alive {entry.alive}",
            err=True,
        )

    train_heads(
        mimi,
        npz_batches(mimi, Path(data), batch_size, settings["seed"]),
        steps=steps,
        heads=names,
        checkpoint_dir=checkpoints,
        log=say,
        **settings,
    )
    click.echo(f"checkpoints in {checkpoints} (latest: {(Path(checkpoints) / 'latest').read_text().strip()})")
