"""The ``mimi`` command group and its error policy: every expected error, usage errors included, is one line on
stderr (``error: ...``) and exit code 1; ``--debug`` shows tracebacks; Python warnings are one ``warning:`` line.
The options several commands share live here too."""

from __future__ import annotations

import math
import sys
import traceback
import warnings

import click

from ..hub import DEFAULT_MODEL
from ..load import load_model

EXPECTED_ERRORS = (ValueError, OSError, RuntimeError)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings (a quantized model on a CPU, ...) as one ``warning:`` line, like the errors."""
    click.echo(f"warning: {str(message).splitlines()[0]}", err=True)


def one_line(exc: BaseException) -> str:
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
            click.echo(f"error: {one_line(exc)}", err=True)
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


def load(model: str, revision: str | None = None, dtype: str | None = None):
    return load_model(model, dtype=dtype, revision=revision)


def is_debug() -> bool:
    ctx = click.get_current_context(silent=True)
    return ctx is not None and bool((ctx.find_root().obj or {}).get("debug"))
