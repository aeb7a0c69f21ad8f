"""The `mimi` CLI through click's runner, a real subprocess, and a real PortAudio device (PulseAudio null sink)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import IN_CI
from contract import assert_contract

import mlx_mimi
from mlx_mimi.cli import main
from mlx_mimi.codes import CodesFile, load_codes, save_codes

FRAME = 1920


@pytest.fixture(scope="module")
def model_dir(converted_folder):
    return converted_folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory, speech_long):
    """The same kind of speech in several formats, rates and channel counts."""
    folder = tmp_path_factory.mktemp("clips")
    a = speech_long[: 3 * 24_000 + 123]
    sf.write(folder / "a.wav", a, 24_000, subtype="FLOAT")
    import soxr

    b48 = soxr.resample(speech_long[24_000 * 5 : 24_000 * 8], 24_000, 48_000)
    sf.write(folder / "b.flac", np.stack([b48, 0.5 * b48], axis=1), 48_000)  # 48 kHz stereo flac
    sf.write(folder / "c.mp3", soxr.resample(speech_long[24_000 * 9 : 24_000 * 11], 24_000, 44_100), 44_100)
    sf.write(folder / "d.wav", speech_long[: 3 * 24_000 + 123] * 0.5, 24_000, subtype="PCM_16")  # same length as a
    return folder


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_encode_decode_roundtrip(model_dir, clips, tmp_path, model):
    codes_path = tmp_path / "a.safetensors"
    run("encode", clips / "a.wav", "-o", codes_path, "-n", 8, "--model", model_dir)
    codes = load_codes(codes_path)
    assert codes.codes.dtype == np.uint16 and codes.codes.shape == (8, -(-(3 * 24_000 + 123) // FRAME))
    assert codes.num_samples == 3 * 24_000 + 123 and codes.source == "a.wav" and codes.sample_rate == 24_000
    pcm = sf.read(clips / "a.wav", dtype="float32")[0]
    assert_contract(model, pcm, codes.codes[None], np.array(model.encode(pcm, num_codebooks=8)), "mimi encode")
    wav = tmp_path / "a_rt.wav"
    run("decode", codes_path, "-o", wav, "--model", model_dir)
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == 24_000 and len(audio) == 3 * 24_000 + 123  # trimmed to the original length
    expected = np.array(model.decode(codes.codes[None].astype(np.int64))).reshape(-1)[: len(audio)]
    np.testing.assert_allclose(audio, expected, atol=1e-6)
    rt = tmp_path / "rt16.wav"
    run("roundtrip", clips / "a.wav", "-o", rt, "-n", 8, "--pcm16", "--model", model_dir)
    assert sf.info(rt).subtype == "PCM_16" and sf.info(rt).frames == len(audio)


def test_many_files_formats_rates_and_resume(model_dir, clips, tmp_path, model):
    out = tmp_path / "codes"
    inputs = [clips / n for n in ("a.wav", "b.flac", "c.mp3", "d.wav")]
    r = run("encode", *inputs, "--out-dir", out, "--model", model_dir)
    assert sorted(p.name for p in out.iterdir()) == ["a.safetensors", "b.safetensors", "c.safetensors", "d.safetensors"]
    from mlx_mimi.audio import read_audio

    for name in ("b", "c", "d"):
        pcm = read_audio(clips / inputs[["a", "b", "c", "d"].index(name)].name)
        codes = load_codes(out / f"{name}.safetensors").codes[None]
        assert_contract(model, pcm, codes, np.array(model.encode(pcm)), f"mimi encode {name} (batched)")
    assert read_audio(clips / "b.flac").shape[0] == 3 * 24_000  # 48 kHz stereo -> 24 kHz mono
    # resume: existing outputs are skipped, not rewritten
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "c.safetensors").unlink()
    r = run("encode", *inputs, "--out-dir", out, "--model", model_dir)
    assert "skipping 3 file(s)" in r.output
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert after["a.safetensors"] == before["a.safetensors"] and "c.safetensors" in after
    run("encode", *inputs, "--out-dir", out, "--model", model_dir, "--overwrite")
    assert (out / "a.safetensors").stat().st_mtime_ns != before["a.safetensors"]
    assert not [p for p in out.iterdir() if ".partial" in p.name]


def test_npy_codes_and_convert(model_dir, tmp_path, model, model_folder):
    codes = np.random.default_rng(0).integers(0, 2048, (8, 10))
    np.save(tmp_path / "c.npy", codes)
    run("decode", tmp_path / "c.npy", "-o", tmp_path / "c.wav", "--length", 5000, "--model", model_dir)
    assert sf.info(tmp_path / "c.wav").frames == 5000
    run("convert", model_folder, "-o", tmp_path / "bf16", "--dtype", "bfloat16", "--encoder-only")
    info = run("info", tmp_path / "bf16").output
    assert "bfloat16" in info and "halves: encoder" in info and "decoder" not in info.split("halves:")[1]
    assert "BLAS:" in run("info").output


@pytest.mark.parametrize(
    "args, message",
    [
        (["encode", "{clips}/missing.wav", "-o", "{tmp}/x.safetensors"], "no such file"),
        (["encode", "{tmp}/notaudio.wav", "-o", "{tmp}/x.safetensors"], "not a readable audio file"),
        (["encode", "{tmp}/empty.wav", "-o", "{tmp}/x.safetensors"], "no audio"),
        (["encode", "{clips}/a.wav", "-o", "{tmp}/x.safetensors", "-n", "40"], "num_codebooks"),
        (["decode", "{tmp}/other.safetensors", "-o", "{tmp}/x.wav"], "is not 'mimi-codes'"),
        (["decode", "{tmp}/range.safetensors", "-o", "{tmp}/x.wav"], "out of range"),
        (["decode", "{tmp}/notaudio.wav", "-o", "{tmp}/x.wav"], "not a readable codes file"),
        (["encode", "{clips}/a.wav", "-o", "{tmp}/x.safetensors", "--model", "{tmp}/nomodel"], "no such file"),
    ],
)
def test_bad_inputs(model_dir, clips, tmp_path, args, message):
    (tmp_path / "notaudio.wav").write_text("this is not audio")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 24_000)
    from safetensors.numpy import save_file

    save_file({"codes": np.zeros((8, 3), np.uint16)}, str(tmp_path / "other.safetensors"), metadata={"format": "x"})
    save_codes(tmp_path / "range.safetensors", CodesFile(np.full((8, 3), 3000, np.int64), codebook_size=4096))
    args = [a.format(clips=clips, tmp=tmp_path) for a in args]
    if "--model" not in args:
        args += ["--model", str(model_dir)]
    r = run(*args, ok=False)
    assert r.exit_code == 1
    assert r.output.startswith("error: ") and message in r.output, r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "x.wav").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_debug_shows_traceback(model_dir, tmp_path):
    (tmp_path / "bad.wav").write_text("no")
    r = CliRunner().invoke(main, ["--debug", "encode", str(tmp_path / "bad.wav"), "--model", str(model_dir)])
    assert r.exit_code == 1 and "Traceback" in r.output


def test_stream_input_equals_encode(model_dir, clips, tmp_path):
    """`mimi stream --input` feeds the file through the streaming path; its codes equal `mimi encode`."""
    run("encode", clips / "b.flac", "-o", tmp_path / "off.safetensors", "-n", 8, "--model", model_dir)
    r = run(
        "stream",
        "--input",
        clips / "b.flac",
        "-o",
        tmp_path / "live.safetensors",
        "--as-fast-as-possible",
        "--model",
        model_dir,
    )
    assert "frames" in r.output and "RTF" in r.output
    live, off = load_codes(tmp_path / "live.safetensors"), load_codes(tmp_path / "off.safetensors")
    from mlx_mimi.audio import read_audio

    pcm = read_audio(clips / "b.flac")
    assert_contract(mlx_mimi.load(model_dir), pcm, live.codes[None], off.codes[None], "stream --input vs encode")
    assert live.metadata() == off.metadata() | {"source": "b.flac"}  # same rates, revision, codebook size ...


def test_subprocess_roundtrip(model_dir, clips, tmp_path):
    """The installed console script, as a user runs it."""
    exe = shutil.which("mimi") or pytest.fail("the `mimi` console script is not installed")
    out = tmp_path / "sub.wav"
    p = subprocess.run(
        [exe, "roundtrip", str(clips / "c.mp3"), "-o", str(out), "-n", "8", "--model", str(model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert sf.info(out).samplerate == 24_000
    p = subprocess.run(
        [exe, "decode", str(tmp_path / "nothing.safetensors"), "--model", str(model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1 and p.stderr.strip().startswith("error:") and "Traceback" not in p.stderr


def _pulse_ready() -> bool:
    if shutil.which("pactl") is None:
        return False
    return subprocess.run(["pactl", "info"], capture_output=True).returncode == 0


def test_microphone_through_a_real_device(model_dir, speech_long, tmp_path):
    """A PulseAudio null sink's monitor is the input device: speech played into the sink is encoded live.

    The device path resamples (24 -> 48 kHz sink -> device rate -> 24 kHz) and quantises to 16 bits, with
    an unknown start offset, so codes cannot equal the offline codes of the original file. Instead:
    (1) the audio the stream saw (--save-audio) correlates strongly with the played speech, proving the
    signal went through the device; (2) the live codes equal offline `encode` of exactly that audio.
    """
    if not _pulse_ready():
        if IN_CI:
            pytest.fail("CI must run the microphone test: PulseAudio is not running (.ci/pulse.sh)")
        pytest.skip("no PulseAudio server (start one as .ci/pulse.sh does)")
    speech = speech_long[: 4 * 24_000]
    played = tmp_path / "played.wav"
    sf.write(played, speech, 24_000, subtype="PCM_16")
    codes_path, heard_path = tmp_path / "mic.safetensors", tmp_path / "heard.wav"
    env = dict(os.environ, PULSE_SINK="mimi_sink")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlx_mimi.cli",
            "stream",
            "-o",
            str(codes_path),
            "--duration",
            "8",
            "--save-audio",
            str(heard_path),
            "-n",
            "8",
            "--model",
            str(model_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # wait until the stream says it is listening (model loaded, step compiled, device open): not a fixed sleep
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if line.startswith("listening") or not line:
            break
    assert lines[-1].startswith("listening"), "".join(lines)
    subprocess.run(["paplay", "--device=mimi_sink", str(played)], check=True, timeout=30)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, "".join(lines) + err
    heard = sf.read(heard_path, dtype="float32")[0]
    assert len(heard) > 6 * 24_000
    # align: the capture may start a few ms into the speech (negative lag) or before it
    corr = np.correlate(heard, speech, mode="full")
    lag = int(np.argmax(np.abs(corr))) - (len(speech) - 1)
    segment = heard[max(lag, 0) : lag + len(speech)]
    played_part = speech[max(-lag, 0) : max(-lag, 0) + len(segment)]
    assert len(segment) > 0.9 * len(speech), (lag, len(segment))
    rho = float(np.dot(segment, played_part) / (np.linalg.norm(segment) * np.linalg.norm(played_part) + 1e-12))
    print(f"device capture: lag {lag / 24_000:.3f} s, correlation with the played speech {rho:.4f}")
    assert rho > 0.95
    live = load_codes(codes_path)
    assert live.num_samples == len(heard)
    model = mlx_mimi.load(model_dir)
    offline = np.array(model.encode(heard, num_codebooks=8))
    assert_contract(model, heard, live.codes[None], offline, "live microphone codes vs offline encode of what it heard")


def test_devices_and_playback(model_dir, clips, tmp_path):
    """`mimi devices` lists the PulseAudio devices; --playback decodes live through a real output device."""
    if not _pulse_ready():
        if IN_CI:
            pytest.fail("CI must run the audio device tests: PulseAudio is not running (.ci/pulse.sh)")
        pytest.skip("no PulseAudio server")
    env = dict(os.environ, PULSE_SINK="mimi_sink")
    p = subprocess.run([sys.executable, "-m", "mlx_mimi.cli", "devices"], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and ("pulse" in p.stdout or "default" in p.stdout), p.stdout + p.stderr
    out = tmp_path / "played.safetensors"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_mimi.cli",
            "stream",
            "--input",
            str(clips / "a.wav"),
            "--as-fast-as-possible",
            "--playback",
            "-o",
            str(out),
            "--quiet",
            "--model",
            str(model_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert load_codes(out).codes.shape[0] == 8
