"""The ``mimi`` command line: encode, decode, roundtrip, convert, stream, devices, info. No model logic here.

Every error is one line on stderr (``error: ...``) and exit code 1, usage errors included; ``--debug`` shows
tracebacks. Outputs are written atomically; an output that is also an input is refused before any work; in
a many-file run a bad file is reported and skipped, the others complete, and the exit code is 1.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
import warnings
from pathlib import Path

import click

from . import backend
from .errors import DeviceError
from .hub import DEFAULT_MODEL

EXPECTED_ERRORS = (ValueError, OSError, RuntimeError)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings (a quantized model on a CPU, ...) as one ``warning:`` line, like the errors."""
    click.echo(f"warning: {str(message).splitlines()[0]}", err=True)


def _one_line(exc: BaseException) -> str:
    msg = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    if isinstance(exc, OSError) and exc.errno == 28:
        msg = f"disk full: {msg}"
    return msg


class MimiGroup(click.Group):
    """Turns every expected error, usage errors included, into one line on stderr and exit code 1."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        warnings.showwarning = _warning_line
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:  # --help, --version
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(1)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except EXPECTED_ERRORS as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(1)


def _finite(ctx, param, value):
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
    return value


model_option = click.option(
    "--model", "-m", default=DEFAULT_MODEL, show_default=True, help="hub repo id, local folder or .safetensors file"
)
revision_option = click.option("--revision", default=None, help="hub revision (branch, tag or commit)")
codebooks_option = click.option(
    "-n", "--num-codebooks", type=click.IntRange(min=1), default=None, help="codebooks to keep (default: all)"
)
pcm16_option = click.option("--pcm16", is_flag=True, help="write 16-bit PCM instead of 32-bit float")


def files_command(output_help: str):
    """The options every many-files command shares: inputs, -o, --out-dir, --overwrite, --model, --revision."""

    def wrap(fn):
        for option in reversed(
            [
                click.argument("inputs", nargs=-1, required=True),
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


@click.group(cls=MimiGroup)
@click.option("--debug", is_flag=True, help="show tracebacks for errors")
@click.version_option(package_name="mlx-mimi", message="%(prog)s (mlx-mimi) %(version)s")
@click.pass_context
def main(ctx, debug):
    """Mimi neural audio codec (Kyutai) on MLX: audio <-> codes at 12.5 Hz."""
    ctx.obj = {"debug": debug}


def _load(model: str, revision: str | None = None, dtype: str | None = None):
    from .weights import load_model

    return load_model(model, dtype=dtype, revision=revision)


class _Run:
    """A many-file run: planned outputs, resume, per-file failures, and the summary at the end."""

    def __init__(self, inputs, output, out_dir, extensions, suffix, overwrite, keep, guard=None, extra=()):
        """``keep(out)``: an existing output that a re-run may skip; ``guard(out)`` raises for an existing output
        that must never be replaced (checked before any work); ``extra``: items from a manifest. ``-o`` must end in
        ``suffix``'s last part (``.safetensors`` for codes, ``.wav`` for audio)."""
        from .corpus import expand_inputs, plan_outputs

        if output and out_dir:
            raise click.UsageError("give -o/--output or --out-dir, not both")
        self.strict = False
        items, self.failures = expand_inputs(inputs, extensions)
        items += list(extra)
        if not items:
            more = f" (and {len(self.failures) - 1} more)" if self.failures[1:] else ""
            raise FileNotFoundError(self.failures[0] + more)
        for problem in self.failures:
            click.echo(f"error: {problem}", err=True)
        self.total = len(items) + len(self.failures)
        outputs = plan_outputs(items, output, out_dir, suffix)  # refuses clashes before any work
        kind = "." + suffix.rsplit(".", 1)[-1]
        if output and Path(output).suffix.lower() != kind:
            what = "a codes file" if kind == ".safetensors" else "WAV audio"
            raise click.UsageError(f"-o {output}: this command writes {what}; name the output *{kind}")
        self.todo = []
        self.bar = None
        skipped = 0
        for item, out in zip(items, outputs, strict=True):
            if out.exists() and guard is not None:
                try:
                    guard(out)
                except OSError as exc:
                    self.fail(item, exc)
                    continue
            if out.exists() and not overwrite and keep(out):
                skipped += 1
            else:
                self.todo.append((item, out))
        if skipped:
            click.echo(f"skipping {skipped} file(s) whose output exists (--overwrite to redo)", err=True)
        self.done = 0

    def fail(self, item, exc: BaseException) -> None:
        if self.strict:
            raise exc
        message = _one_line(exc)
        if not message.startswith(str(item.path)):
            message = f"{item.path}: {message}"
        self.failures.append(message)
        ctx = click.get_current_context(silent=True)
        if ctx is not None and (ctx.find_root().obj or {}).get("debug"):
            traceback.print_exception(exc)
        if self.bar is not None:
            self.bar.write(f"error: {message}", file=sys.stderr)
        else:
            click.echo(f"error: {message}", err=True)

    def progress(self, desc: str, unit: str = "file"):
        from tqdm import tqdm

        total = len(self.todo)
        self.bar = tqdm(
            total=total, desc=desc, unit=unit, file=sys.stderr, disable=total < 2 or not sys.stderr.isatty()
        )
        return self.bar

    def finish(self, verb: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.failures and self.total == 1:
            sys.exit(1)  # its one error line is already out
        if self.failures:
            click.echo(
                f"error: {len(self.failures)} of {self.total} input(s) failed, {self.done} {verb}; "
                f"first: {self.failures[0]}",
                err=True,
            )
            sys.exit(1)


def _batches(mimi, run: _Run, batch_seconds: float):
    """Length-bucketed batches of the pending inputs (corpus.plan_batches), probed from their headers."""
    from .corpus import plan_batches, probe

    clips, problems = probe([item for item, _ in run.todo], mimi.sample_rate)
    outputs = dict(run.todo)
    for item, error in problems:
        run.fail(item, error)
    batches = plan_batches(clips, int(batch_seconds * mimi.sample_rate))
    return [[(clip.item, outputs[clip.item]) for clip in batch] for batch in batches]


def _read_batch(mimi, run: _Run, batch):
    """[(item, out, pcm)] of a batch's readable clips; unreadable ones are reported (or raise with --strict)."""
    from .audio import read_audio

    out = []
    for item, target in batch:
        try:
            out.append((item, target, read_audio(item.path, mimi.sample_rate)))
        except (ValueError, OSError) as exc:
            run.fail(item, exc)
    return out


def _encode_files(mimi, run: _Run, num_codebooks: int, batch_seconds: float, desc: str, write) -> None:
    """Encode every pending input in length-bucketed batches and ``write(item, out, codes, n)`` each.

    ``encode_batch`` gives every clip the codes it gets alone (README: the determinism contract), so how
    the clips are batched changes no code."""
    import numpy as np

    batches = _batches(mimi, run, batch_seconds)
    bar = run.progress(desc)
    start, seconds = time.perf_counter(), 0.0
    for batch in batches:
        clips = _read_batch(mimi, run, batch)
        if not clips:
            continue
        codes = mimi.encode_batch([pcm for *_, pcm in clips], num_codebooks=num_codebooks)
        for row, (item, out, pcm) in zip(codes, clips, strict=True):
            try:
                write(item, out, np.array(row), len(pcm))
                run.done += 1
            except OSError as exc:
                run.fail(item, exc)
            seconds += len(pcm) / mimi.sample_rate
        bar.update(len(clips))
        bar.set_postfix_str(f"{seconds / max(time.perf_counter() - start, 1e-9):.1f} audio-s/s")


def _is_codes_file(path: Path) -> bool:
    from .codes import load_codes

    try:
        load_codes(path, codebook_size=1 << 31)
        return True
    except ValueError:
        return False


def _refuse_foreign(out: Path) -> None:
    """Never replace a .safetensors that is not a codes file (a model, say), even with --overwrite."""
    if out.exists() and not _is_codes_file(out):
        raise FileExistsError(f"{out} exists and is not a Mimi codes file: not replacing it (choose another -o)")


def _refuse_non_audio(out: Path) -> None:
    """Never replace a file that is not audio (a model, a codes file), even with --overwrite."""
    import soundfile as sf

    try:
        sf.info(str(out))
    except Exception:
        raise FileExistsError(f"{out} exists and is not an audio file: not replacing it (choose another -o)") from None


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
    from .corpus import AUDIO_EXTENSIONS, read_manifest

    if not inputs and not manifest:
        raise click.UsageError("give input files, folders or globs, or --manifest")
    extra = read_manifest(manifest) if manifest else []
    if dataset is not None:
        if output or out_dir:
            raise click.UsageError("--dataset writes shards: -o/--output and --out-dir do not apply")
        from .dataset import encode_dataset

        folder = Path(dataset)
        sys.exit(
            encode_dataset(
                inputs, extra, folder, num_codebooks, batch_seconds, strict=strict, overwrite=overwrite, **kw
            )
        )
    run = _Run(
        inputs, output, out_dir, AUDIO_EXTENSIONS, ".safetensors", overwrite, _is_codes_file, _refuse_foreign, extra
    )
    run.strict = strict
    if run.todo:
        from .codes import codes_file, save_codes

        mimi = _load(kw["model"], kw["revision"])
        k = mimi.check_num_codebooks(num_codebooks)

        def write(item, out, codes, n):
            save_codes(out, codes_file(mimi, codes, n, item.path.name))

        _encode_files(mimi, run, k, batch_seconds, "encode", write)
    run.finish("encoded")


@files_command("wav file")
@click.option("--length", type=click.IntRange(min=1), default=None, help="samples to keep (.npy codes carry none)")
@pcm16_option
def decode(inputs, output, out_dir, length, pcm16, overwrite, model, revision):
    """Codes files (.safetensors, or .npy of shape (K, F)) -> 24 kHz wav, trimmed to the original length.

    Without -o/--out-dir, x.safetensors is decoded to x.mimi.wav (never over the original x.wav).
    """
    from .codes import check_codes_fit, load_codes
    from .corpus import CODES_EXTENSIONS

    run = _Run(inputs, output, out_dir, CODES_EXTENSIONS, ".mimi.wav", overwrite, lambda out: True, _refuse_non_audio)
    if run.todo:
        mimi = _load(model, revision)
        bar = run.progress("decode")
        for item, out in run.todo:
            try:
                codes = load_codes(item.path, num_samples=length, codebook_size=mimi.config.codebook_size)
                warning = check_codes_fit(codes, item.path, mimi)
                if warning:
                    click.echo(f"warning: {warning}", err=True)
                _write_decoded(mimi, out, codes.codes, codes.num_samples, pcm16)
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
    from .corpus import AUDIO_EXTENSIONS

    run = _Run(inputs, output, out_dir, AUDIO_EXTENSIONS, ".mimi.wav", overwrite, lambda out: True, _refuse_non_audio)
    if run.todo:
        mimi = _load(model, revision)
        k = mimi.check_num_codebooks(num_codebooks)
        _encode_files(
            mimi, run, k, 120.0, "roundtrip", lambda item, out, codes, n: _write_decoded(mimi, out, codes, n, pcm16)
        )
    run.finish("written")


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
    from .convert import convert as run

    if encoder_only and decoder_only:
        raise click.UsageError("--encoder-only and --decoder-only exclude each other")
    if keep_float and quantize is None:
        raise click.UsageError("--keep-float applies with --quantize")
    if group_size and quantize is None:
        raise click.UsageError("--group-size applies with --quantize")
    keep = ",".join(keep_float) if keep_float else None
    out = run(
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
@click.option("--distill-dim", type=click.IntRange(min=1), default=1536, show_default=True, help="teacher width")
@revision_option
def nine_codebooks(model, output, seed, content_init, audio, distill_dim, revision):
    """Seed 003's variant: content (fresh) + prosody (Mimi codebook 0) + 7 acoustic (Mimi codebooks 1-7).

    \b
    mimi variant nine-codebooks kyutai/mimi -o mimi9/
    mimi encode talk.wav --model mimi9/      # (9, F) codes
    """
    from .convert import refuse_overwriting_source, write_converted
    from .hub import resolve
    from .variant import nine_codebooks as surgery
    from .weights import load_resolved

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
        import mlx.core as mx

        from .audio import read_audio
        from .corpus import AUDIO_EXTENSIONS, expand_inputs

        items, problems = expand_inputs(audio, AUDIO_EXTENSIONS)
        if problems or not items:
            raise click.UsageError(problems[0] if problems else "--audio names no audio file")
        latents = mx.concatenate([mimi.encode_latent(read_audio(i.path, mimi.sample_rate))[0] for i in items])
    built = surgery(mimi, seed=seed, content_init=content_init, latents=latents, distill_dim=distill_dim)
    write_converted(built, out)
    click.echo(f"wrote {out}: 9 codebooks (content, prosody, 7 acoustic) from {model}")


@main.command("train-heads")
@click.argument("model")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="folder of .npz clips")
@click.option("-o", "--checkpoints", required=True, type=click.Path(file_okay=False), help="checkpoint folder")
@click.option("--steps", type=click.IntRange(min=1), required=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True)
@click.option("--transplanted-lr", type=click.FloatRange(min=0, min_open=True), default=1e-5, show_default=True)
@click.option("--stages", default="content", show_default=True, help="comma list of content, prosody, acoustic")
@click.option("--commitment-weight", type=click.FloatRange(min=0), default=1.0, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def train_heads_command(model, data, checkpoints, steps, batch_size, lr, transplanted_lr, stages, **settings):
    """Train the variant's new heads on teacher features you provide; resumes from -o's latest checkpoint.

    Each clip in --data is an .npz with `teacher` (tokens, distill_dim) float features and `durations`
    (tokens,) frames per token, and either `audio` (T,) at 24 kHz or `latent` (F, 512) quantizer inputs.
    Clips are cut into equal-length windows of the shortest clip's frames and batched.
    """
    from .train import npz_batches, train_heads
    from .weights import load_model

    mimi = load_model(model)
    names = tuple(s.strip() for s in stages.split(",") if s.strip())

    def say(entry):
        click.echo(
            f"step {entry.step}: loss {entry.loss:.5f} (distill {entry.distill:.5f}, commitment "
            f"{entry.commitment:.5f}), content codes used {entry.codes_used}, alive {entry.alive}",
            err=True,
        )

    train_heads(
        mimi,
        npz_batches(mimi, Path(data), batch_size, settings["seed"]),
        steps=steps,
        lr=lr,
        transplanted_lr=transplanted_lr,
        stages=names,
        checkpoint_dir=checkpoints,
        log=say,
        **settings,
    )
    click.echo(f"checkpoints in {checkpoints} (latest: {(Path(checkpoints) / 'latest').read_text().strip()})")


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="codes file written as the stream goes")
@click.option("--input", "input_file", type=click.Path(dir_okay=False), help="a file instead of the microphone")
@click.option("--as-fast-as-possible", is_flag=True, help="with --input: no real-time pacing")
@click.option("--playback", is_flag=True, help="decode and play the reconstruction live")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    callback=_finite,
    default=None,
    help="stop after this many seconds",
)
@click.option("--device", default=None, help="input device (name or index, see `mimi devices`)")
@click.option("-n", "--num-codebooks", type=click.IntRange(min=1), default=None, help="default: 8, as Moshi")
@click.option("--save-audio", type=click.Path(dir_okay=False), help="also write the 24 kHz audio that was encoded")
@click.option("--quiet", is_flag=True, help="no status line")
@model_option
@revision_option
def stream(output, input_file, as_fast_as_possible, playback, duration, device, num_codebooks, save_audio, quiet, **kw):
    """Encode the microphone (or a file at real-time pace) live; Ctrl-C stops and finalises the file."""
    from . import mic
    from .corpus import same_file

    device = int(device) if device is not None and device.isdigit() else device
    if input_file and not (output or save_audio or playback):
        raise click.UsageError("--input needs -o (codes), --save-audio or --playback: nothing would be kept")
    if output and Path(output).suffix.lower() != ".safetensors":
        raise click.UsageError(f"-o {output}: stream writes a codes file; name the output *.safetensors")
    for out in (output, save_audio):
        if out and input_file and same_file(Path(out), Path(input_file)):
            raise click.UsageError(f"output {out} is also the input: refusing to overwrite it")
    if output and save_audio and same_file(Path(output), Path(save_audio)):
        raise click.UsageError("-o and --save-audio name the same file")
    if output and Path(output).exists() and not _is_codes_file(Path(output)):
        raise FileExistsError(f"{output} exists and is not a Mimi codes file: not replacing it")
    if input_file is None:
        mic.input_device(device)  # fail before loading the model when there is no microphone
    mimi = _load(kw["model"], kw["revision"])
    k = mimi.check_num_codebooks(8 if num_codebooks is None else num_codebooks)
    result = mic.run_live(
        mimi,
        mic.LiveSource(input_file, device, duration, realtime=not as_fast_as_possible),
        Path(output) if output else None,
        k,
        playback=playback,
        quiet=quiet,
        save_audio=Path(save_audio) if save_audio else None,
    )
    if output:
        click.echo(f"wrote {result.frames} frames x {k} codebooks ({result.seconds:.2f} s) to {output}", err=True)


@main.command()
def devices():
    """List audio devices."""
    from .mic import list_devices

    listing = list_devices()
    if not listing.strip():
        raise DeviceError("no audio devices found (PortAudio lists none)")
    click.echo(listing)


@main.command()
@click.argument("model", required=False)
@revision_option
def info(model, revision):
    """Backend and BLAS in use; with MODEL, its architecture, codebooks and dtype."""
    import mlx_mimi  # noqa: F401  (the BLAS report needs mlx.core loaded)

    click.echo(f"mlx-mimi {mlx_mimi.__version__}")
    click.echo(f"backend: {backend.device_report()}")
    click.echo(f"BLAS: {backend.blas_report()}")
    if model is None:
        return
    mimi = _load(model, revision)
    c = mimi.config
    src = mimi.source
    click.echo(f"model: {src['model_id']} (layout {src['layout']}, dtype {str(mimi.dtype).split('.')[-1]})")
    click.echo(f"audio: {c.sampling_rate} Hz mono, frame {c.frame_size} samples, {c.frame_rate_hz:g} Hz frames")
    from .config import JodioConfig

    if isinstance(c, JodioConfig):
        _jodio_info(c)
    else:
        _mimi_info(c)
    halves = [h for h, on in (("encoder", c.has_encoder), ("decoder", c.has_decoder)) if on]
    click.echo(f"halves: {', '.join(halves)}")
    q = c.quantization
    if q:
        click.echo(f"quantized: {q['bits']}-bit affine, group size {q['group_size']}, {len(q['modules'])} layers")


def _jodio_info(c) -> None:
    from .jodio import REPAIR

    click.echo("architecture: JODIO (seed 002's module dump; README, 'JODIO')")
    click.echo(
        f"codebooks: {c.num_quantizers} ({c.num_semantic_quantizers} semantic + {c.num_acoustic_quantizers} "
        f"acoustic, split, no projections) x {c.codebook_size} entries, {c.latent_dim}-d"
    )
    click.echo(
        f"encoder: SEANet {c.channels} ch strides {c.ratios} + {c.final_stride}, SiLU, transformer "
        f"{c.encoder_layers} layers d={c.latent_dim} {c.encoder_heads} heads, RMSNorm, window {c.attention_window}"
    )
    readings = (
        f"residual={str(c.residual).lower()}, input_lookahead={c.input_lookahead}, rope={str(c.rope).lower()} "
        f"({c.rope_layout}), mlp={c.mlp_activation}, norm_eps={c.norm_eps:g}, acoustic_input={c.acoustic_input}"
    )
    click.echo(f"readings: {readings}")
    if c.has_decoder:
        click.echo(f"decoder repair: {REPAIR}")
        click.echo(f"decoder output: F * {c.frame_size} - {c.decoder_delay} samples, zero-padded at the end")
    else:
        click.echo("decoder repair: none loaded (encoder only)")


def _mimi_info(c) -> None:
    if c.quantizer_topology == "chain":
        from .variant import STAGE_NAMES

        stages = ", ".join(f"{name} {n}" for name, n in zip(STAGE_NAMES, c.chain_stages, strict=False))
        wiring = f"in a chain: {stages}; distillation bridge to {c.distill_dim}-d teacher features"
    else:
        wiring = f"{c.num_semantic_quantizers} semantic + {c.num_acoustic_quantizers} acoustic, split"
    click.echo(f"codebooks: {c.num_quantizers} ({wiring}) x {c.codebook_size} entries, {c.codebook_dim}-d")
    click.echo(
        f"encoder: SEANet strides {c.seanet_ratios}, transformer {c.num_hidden_layers} layers d={c.hidden_size} "
        f"{c.num_attention_heads} heads, window {c.sliding_window} steps at {c.encoder_rate:g} Hz"
    )


if __name__ == "__main__":
    main()
