"""The many-file run of ``encode``, ``decode`` and ``roundtrip``: planned outputs, resume, guards that never
replace a user's file, per-file failures and the summary at the end; encoding goes through the one pipeline."""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import click
import soundfile as sf

from ..audio import write_wav
from ..codes import load_codes
from ..corpus import expand_inputs, plan_outputs
from ..pipeline import encode_batches, plan
from .app import is_debug, one_line


class FileRun:
    """A many-file run: planned outputs, resume, per-file failures, and the summary at the end."""

    def __init__(self, inputs, output, out_dir, extensions, suffix, overwrite, keep, guard=None, extra=()):
        """``keep(out)``: an existing output that a re-run may skip; ``guard(out)`` raises for an existing output
        that must never be replaced (checked before any work); ``extra``: items from a manifest. ``-o`` must end in
        ``suffix``'s last part (``.safetensors`` for codes, ``.wav`` for audio)."""
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
        message = one_line(exc)
        if not message.startswith(str(item.path)):
            message = f"{item.path}: {message}"
        self.failures.append(message)
        if is_debug():
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


def encode_files(mimi, run: FileRun, num_codebooks: int, batch_seconds: float, desc: str, write) -> None:
    """Encode every pending input in length-bucketed batches (pipeline.py) and ``write(item, out, codes, n)``
    each; a file that cannot be read or written is a failure of the run, the others carry on."""
    outputs = dict(run.todo)
    batches, problems = plan([item for item, _ in run.todo], mimi.sample_rate, batch_seconds)
    for item, error in problems:
        run.fail(item, error)
    bar = run.progress(desc)
    start, seconds = time.perf_counter(), 0.0

    def on_codes(item, codes, n) -> None:
        nonlocal seconds
        try:
            write(item, outputs[item], codes, n)
            run.done += 1
        except OSError as exc:
            run.fail(item, exc)
        seconds += n / mimi.sample_rate

    def on_batch(batch, read: int) -> None:
        if read:
            bar.update(read)
            bar.set_postfix_str(f"{seconds / max(time.perf_counter() - start, 1e-9):.1f} audio-s/s")

    encode_batches(mimi, batches, num_codebooks, on_codes, run.fail, on_batch)


def is_codes_file(path: Path) -> bool:
    try:
        load_codes(path, codebook_size=1 << 31)
        return True
    except ValueError:
        return False


def refuse_foreign(out: Path) -> None:
    """Never replace a .safetensors that is not a codes file (a model, say), even with --overwrite."""
    if out.exists() and not is_codes_file(out):
        raise FileExistsError(f"{out} exists and is not a Mimi codes file: not replacing it (choose another -o)")


def refuse_non_audio(out: Path) -> None:
    """Never replace a file that is not audio (a model, a codes file), even with --overwrite."""
    try:
        sf.info(str(out))
    except Exception:
        raise FileExistsError(f"{out} exists and is not an audio file: not replacing it (choose another -o)") from None


def write_decoded(mimi, out, codes, num_samples: int | None, pcm16: bool) -> None:
    """Decode (K, F) codes and write the wav, trimmed to the original length when it is known."""
    audio = mimi.decode(codes[None]).reshape(-1)
    write_wav(
        out, audio[:num_samples] if num_samples is not None else audio, mimi.sample_rate, "PCM_16" if pcm16 else "FLOAT"
    )
