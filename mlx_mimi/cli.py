"""The ``mimi`` command line: encode, decode, roundtrip, convert, stream, devices, info. No model logic here."""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import click

from . import backend
from .hub import DEFAULT_MODEL

EXPECTED_ERRORS = (ValueError, FileNotFoundError, OSError, RuntimeError)


class MimiGroup(click.Group):
    """Turns expected errors into one line on stderr and exit code 1 (``--debug`` shows the traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except EXPECTED_ERRORS as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            if isinstance(exc, OSError) and exc.errno == 28:
                msg = f"disk full: {msg}"
            click.echo(f"error: {msg}", err=True)
            sys.exit(1)


model_option = click.option(
    "--model", "-m", default=DEFAULT_MODEL, show_default=True, help="hub repo id, local folder or .safetensors file"
)
revision_option = click.option("--revision", default=None, help="hub revision (branch, tag or commit)")


def files_command(output_help: str):
    """The options every many-files command shares: inputs, -o, --out-dir, --overwrite, --model, --revision."""

    def wrap(fn):
        for option in reversed(
            [
                click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False)),
                click.option("-o", "--output", type=click.Path(dir_okay=False), help=f"{output_help} for one input"),
                click.option("--out-dir", type=click.Path(file_okay=False), help="folder for the outputs of many"),
                click.option("--overwrite", is_flag=True, help="redo outputs that already exist"),
                model_option,
                revision_option,
            ]
        ):
            fn = option(fn)
        return main.command()(fn)

    return wrap


pcm16_option = click.option("--pcm16", is_flag=True, help="write 16-bit PCM instead of 32-bit float")


@click.group(cls=MimiGroup)
@click.option("--debug", is_flag=True, help="show tracebacks for errors")
@click.version_option(package_name="mlx-mimi")
@click.pass_context
def main(ctx, debug):
    """Mimi neural audio codec (Kyutai) on MLX: audio <-> codes at 12.5 Hz."""
    ctx.obj = {"debug": debug}


def _load(model: str, revision: str | None = None, dtype: str | None = None):
    from .weights import load_model

    return load_model(model, dtype=dtype, revision=revision)


def _outputs(inputs: tuple[str, ...], output: str | None, out_dir: str | None, suffix: str) -> list[Path]:
    missing = [i for i in inputs if not Path(i).is_file()]
    if missing:  # before loading any model
        raise FileNotFoundError(
            f"{missing[0]}: no such file" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    if output and out_dir:
        raise click.UsageError("give -o/--output or --out-dir, not both")
    if output:
        if len(inputs) != 1:
            raise click.UsageError("-o/--output takes one input; use --out-dir for several")
        return [Path(output)]
    if out_dir:
        return [Path(out_dir) / (Path(i).stem + suffix) for i in inputs]
    return [Path(i).with_suffix(suffix) for i in inputs]


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="file", file=sys.stderr, disable=total < 2 and not sys.stderr.isatty())


def _pending(inputs, outputs, overwrite: bool):
    """(input, output) pairs still to do: an existing output is kept unless --overwrite (resumable runs)."""
    todo = [(i, o) for i, o in zip(inputs, outputs, strict=True) if overwrite or not o.exists()]
    skipped = len(inputs) - len(todo)
    if skipped:
        click.echo(f"skipping {skipped} file(s) whose output exists (--overwrite to redo)", err=True)
    return todo


def _plan(inputs, output, out_dir, suffix: str, overwrite: bool, model: str, revision: str | None):
    """(input, output) pairs still to do, and the model, loaded only when there is work."""
    todo = _pending(inputs, _outputs(inputs, output, out_dir, suffix), overwrite)
    return todo, (_load(model, revision) if todo else None)


def _encode_files(mimi, todo, num_codebooks: int, batch_size: int, desc: str, write):
    """Read, encode (batching clips of equal length) and hand each result to ``write(inp, out, codes, n)``."""
    import numpy as np

    from .audio import read_audio

    bar = _progress(len(todo), desc)
    start, seconds = time.perf_counter(), 0.0
    i = 0
    while i < len(todo):
        group = [(todo[i], read_audio(todo[i][0]))]
        while len(group) < batch_size and i + len(group) < len(todo):
            nxt = todo[i + len(group)]
            pcm = read_audio(nxt[0])
            if len(pcm) != len(group[0][1]):  # only equal lengths batch without changing any code
                break
            group.append((nxt, pcm))
        codes = np.array(mimi.encode(np.stack([pcm for _, pcm in group]), num_codebooks=num_codebooks))
        for row, ((inp, out), pcm) in zip(codes, group, strict=True):
            write(inp, out, row, len(pcm))
            seconds += len(pcm) / mimi.sample_rate
        i += len(group)
        bar.update(len(group))
        bar.set_postfix_str(f"{seconds / max(time.perf_counter() - start, 1e-9):.1f} audio-s/s")
    bar.close()


def _write_codes_file(mimi, out, inp, codes, n):
    from .codes import CodesFile, save_codes

    src = mimi.source
    save_codes(
        out,
        CodesFile(
            codes,
            num_samples=n,
            sample_rate=mimi.sample_rate,
            frame_rate=mimi.frame_rate,
            model=str(src["model_id"]),
            revision=str(src["revision"] or ""),
            source=Path(inp).name,
        ),
        mimi.config.codebook_size,
    )


@files_command("codes file (.safetensors)")
@click.option("-n", "--num-codebooks", type=int, default=None, help="1..32 (default: all)")
@click.option("--batch-size", type=int, default=8, show_default=True, help="clips of equal length per batch")
def encode(inputs, output, out_dir, num_codebooks, batch_size, overwrite, model, revision):
    """Audio files (any format, rate, channels) -> codes files."""
    todo, mimi = _plan(inputs, output, out_dir, ".safetensors", overwrite, model, revision)
    if not todo:
        return
    k = mimi.check_num_codebooks(num_codebooks)
    _encode_files(
        mimi,
        todo,
        k,
        max(1, batch_size),
        "encode",
        lambda inp, out, codes, n: _write_codes_file(mimi, out, inp, codes, n),
    )


@files_command("wav file")
@click.option("--length", type=int, default=None, help="samples to keep (for .npy codes, which carry none)")
@pcm16_option
def decode(inputs, output, out_dir, length, pcm16, overwrite, model, revision):
    """Codes files (.safetensors, or .npy of shape (K, F)) -> 24 kHz wav, trimmed to the original length."""
    from .codes import load_codes

    todo, mimi = _plan(inputs, output, out_dir, ".wav", overwrite, model, revision)
    if not todo:
        return
    bar = _progress(len(todo), "decode")
    for inp, out in todo:
        codes = load_codes(inp, num_samples=length, codebook_size=mimi.config.codebook_size)
        _write_decoded(mimi, out, codes.codes, codes.num_samples, pcm16)
        bar.update(1)
    bar.close()


@files_command("wav file")
@click.option("-n", "--num-codebooks", type=int, default=None, help="1..32 (default: all)")
@pcm16_option
def roundtrip(inputs, output, out_dir, num_codebooks, pcm16, overwrite, model, revision):
    """Audio -> codes -> audio: hear what Mimi keeps at a given number of codebooks."""
    todo, mimi = _plan(inputs, output, out_dir, ".mimi.wav", overwrite, model, revision)
    if not todo:
        return
    k = mimi.check_num_codebooks(num_codebooks)

    _encode_files(mimi, todo, k, 8, "roundtrip", lambda inp, out, codes, n: _write_decoded(mimi, out, codes, n, pcm16))


def _write_decoded(mimi, out, codes, num_samples: int | None, pcm16: bool) -> None:
    """Decode (K, F) codes and write the wav, trimmed to the original length when it is known."""
    from .audio import write_wav

    audio = mimi.decode(codes[None]).reshape(-1)
    write_wav(
        out, audio[:num_samples] if num_samples is not None else audio, mimi.sample_rate, "PCM_16" if pcm16 else "FLOAT"
    )


@main.command()
@click.argument("model", default=DEFAULT_MODEL)
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
@click.option("--encoder-only", is_flag=True, help="keep only what encoding needs")
@click.option("--decoder-only", is_flag=True, help="keep only what decoding needs")
@revision_option
def convert(model, output, dtype, encoder_only, decoder_only, revision):
    """Rewrite a checkpoint (any layout) in mlx-mimi's layout: faster to load."""
    from .convert import convert as run

    if encoder_only and decoder_only:
        raise click.UsageError("--encoder-only and --decoder-only exclude each other")
    out = run(model, output, dtype=dtype, encoder=not decoder_only, decoder=not encoder_only, revision=revision)
    click.echo(f"wrote {out / 'model.safetensors'} and {out / 'config.json'}")


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="codes file written as the stream goes")
@click.option("--input", "input_file", type=click.Path(dir_okay=False), help="a file instead of the microphone")
@click.option("--as-fast-as-possible", is_flag=True, help="with --input: no real-time pacing")
@click.option("--playback", is_flag=True, help="decode and play the reconstruction live")
@click.option("--duration", type=float, default=None, help="stop after this many seconds")
@click.option("--device", default=None, help="input device (name or index, see `mimi devices`)")
@click.option("-n", "--num-codebooks", type=int, default=None, help="1..32 (default: 8, as Moshi)")
@click.option("--save-audio", type=click.Path(dir_okay=False), help="also write the 24 kHz audio that was encoded")
@click.option("--quiet", is_flag=True, help="no status line")
@model_option
@revision_option
def stream(
    output,
    input_file,
    as_fast_as_possible,
    playback,
    duration,
    device,
    num_codebooks,
    save_audio,
    quiet,
    model,
    revision,
):
    """Encode the microphone (or a file at real-time pace) live; Ctrl-C stops and finalises the file."""
    from . import mic

    device = int(device) if device is not None and device.isdigit() else device
    if input_file is None:
        mic.input_device(device)  # fail before loading the model when there is no microphone
    mimi = _load(model, revision)
    k = mimi.check_num_codebooks(8 if num_codebooks is None else num_codebooks)
    status = mic.LiveStatus()
    if input_file is not None:
        chunks = mic.file_chunks(input_file, realtime=not as_fast_as_possible)
        if duration is not None:
            chunks = _limit(chunks, duration)
        source = Path(input_file).name
    else:
        chunks = mic.mic_chunks(device, duration, status)
        source = "microphone"
    codes = mic.run_live(
        mimi,
        chunks,
        status,
        Path(output) if output else None,
        k,
        playback=playback,
        source=source,
        quiet=quiet,
        save_audio=Path(save_audio) if save_audio else None,
    )
    if output:
        click.echo(f"wrote {codes.shape[-1]} frames x {k} codebooks to {output}", err=True)


def _limit(chunks, seconds: float):
    left = int(seconds * 24_000)
    for chunk in chunks:
        if left <= 0:
            return
        yield chunk[:left]
        left -= len(chunk)


@main.command()
def devices():
    """List audio devices."""
    from .mic import list_devices

    click.echo(list_devices())


@main.command()
@click.argument("model", required=False)
@revision_option
def info(model, revision):
    """Backend and BLAS in use; with MODEL, its architecture, codebooks and dtype."""
    click.echo(f"mlx-mimi {__import__('mlx_mimi').__version__}")
    click.echo(f"backend: {backend.device_report()}")
    click.echo(f"BLAS: {backend.blas_report()}")
    if model is None:
        return
    mimi = _load(model, revision)
    c = mimi.config
    src = mimi.source
    click.echo(f"model: {src['model_id']} (layout {src['layout']}, dtype {str(mimi.dtype).split('.')[-1]})")
    click.echo(f"audio: {c.sampling_rate} Hz mono, frame {c.frame_size} samples, {c.frame_rate_hz:g} Hz frames")
    click.echo(
        f"codebooks: {c.num_quantizers} ({c.num_semantic_quantizers} semantic + "
        f"{c.num_acoustic_quantizers} acoustic) x {c.codebook_size} entries, {c.codebook_dim}-d"
    )
    click.echo(
        f"encoder: SEANet strides {c.seanet_ratios}, transformer {c.num_hidden_layers} layers d={c.hidden_size} "
        f"{c.num_attention_heads} heads, window {c.sliding_window} steps at {c.encoder_rate:g} Hz"
    )
    halves = [h for h, on in (("encoder", c.has_encoder), ("decoder", c.has_decoder)) if on]
    click.echo(f"halves: {', '.join(halves)}")


if __name__ == "__main__":
    main()
