"""``mimi stream`` (microphone or a file at real-time pace -> codes, live) and ``mimi devices``."""

from __future__ import annotations

from pathlib import Path

import click

from .. import mic
from ..corpus import same_file
from ..errors import DeviceError
from ..mic import list_devices
from .app import _finite, load, main, model_option, revision_option
from .files import is_codes_file


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
    if output and Path(output).exists() and not is_codes_file(Path(output)):
        raise FileExistsError(f"{output} exists and is not a Mimi codes file: not replacing it")
    if input_file is None:
        mic.input_device(device)  # fail before loading the model when there is no microphone
    mimi = load(kw["model"], kw["revision"])
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
    listing = list_devices()
    if not listing.strip():
        raise DeviceError("no audio devices found (PortAudio lists none)")
    click.echo(listing)
