"""The CLI's promises outside the happy path, through the installed ``mimi`` script in a real subprocess:
never destroy a user's file, one error line and exit 1 for every failure (usage errors included), a bad file
in a many-file run skipped and summarised, validated numbers, umask-honouring outputs, and a live stream
that stops cleanly on Ctrl-C with a consistent codes file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from contract import assert_contract

import mlx_mimi
from mlx_mimi.codes import CodesFile, load_codes, save_codes

SR, FRAME = 24_000, 1920


def mimi(*args, cwd=None, umask: int | None = None, ok: bool | None = None, timeout=300) -> subprocess.CompletedProcess:
    exe = shutil.which("mimi") or pytest.fail("the `mimi` console script is not installed (pip install -e .)")
    p = subprocess.run(
        [exe, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )
    if ok is True:
        assert p.returncode == 0, p.stderr
    return p


def assert_one_line_error(p: subprocess.CompletedProcess, message: str) -> None:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in p.stderr and "Usage:" not in p.stderr


@pytest.fixture(scope="module")
def model_dir(converted_folder):
    return converted_folder


@pytest.fixture
def wav(tmp_path, speech_long) -> Path:
    path = tmp_path / "talk.wav"
    sf.write(path, speech_long[: 2 * SR + 100], SR, subtype="FLOAT")
    return path


def test_an_output_that_is_an_input_is_refused(model_dir, wav, tmp_path):
    before = wav.read_bytes()
    p = mimi("encode", wav, "-o", wav, "--overwrite", "--model", model_dir)
    assert_one_line_error(p, "is also an input")
    assert wav.read_bytes() == before
    codes = tmp_path / "talk.safetensors"
    mimi("encode", wav, "--model", model_dir, ok=True)
    before = codes.read_bytes()
    assert_one_line_error(mimi("decode", codes, "-o", codes, "--overwrite", "--model", model_dir), "is also an input")
    link = tmp_path / "link.wav"
    link.symlink_to(wav)  # another name for the same file
    assert_one_line_error(mimi("encode", wav, "-o", link, "--overwrite", "--model", model_dir), "is also an input")
    assert codes.read_bytes() == before and wav.exists()


def test_default_names_never_hit_the_original(model_dir, wav, tmp_path):
    before = wav.read_bytes()
    mimi("encode", wav, "--model", model_dir, ok=True)
    mimi("decode", tmp_path / "talk.safetensors", "--model", model_dir, ok=True)
    assert wav.read_bytes() == before
    assert sf.info(tmp_path / "talk.mimi.wav").frames == 2 * SR + 100
    mimi("roundtrip", wav, "--model", model_dir, ok=True)  # the same reconstruction name, also not the input
    assert wav.read_bytes() == before


def test_a_foreign_safetensors_is_never_replaced(model_dir, wav, tmp_path):
    """x.wav would encode to x.safetensors; if that is, say, a model checkpoint, it stays (even --overwrite)."""
    foreign = tmp_path / "talk.safetensors"
    shutil.copy(model_dir / "model.safetensors", foreign)
    before = foreign.stat().st_size
    assert_one_line_error(mimi("encode", wav, "--overwrite", "--model", model_dir), "is not a Mimi codes file")
    assert foreign.stat().st_size == before


def test_convert_refuses_its_own_source(model_dir, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    before = (copy / "model.safetensors").stat().st_mtime_ns
    assert_one_line_error(mimi("convert", copy, "-o", copy), "would overwrite its source")
    assert (copy / "model.safetensors").stat().st_mtime_ns == before


def test_out_dir_clashes_are_refused_up_front(model_dir, tmp_path, speech_long):
    for sub in ("d1", "d2"):
        (tmp_path / sub).mkdir()
        sf.write(tmp_path / sub / "x.wav", speech_long[:SR], SR)
    p = mimi(
        "encode",
        tmp_path / "d1" / "x.wav",
        tmp_path / "d2" / "x.wav",
        "--out-dir",
        tmp_path / "out",
        "--model",
        model_dir,
    )
    assert_one_line_error(p, "would both write")
    assert "rename one of them" in p.stderr and "use --out-dir" not in p.stderr  # --out-dir was given already
    assert not (tmp_path / "out").exists()
    sf.write(tmp_path / "d1" / "x.flac", speech_long[:SR], SR)  # x.wav and x.flac, side by side, default names
    p = mimi("encode", tmp_path / "d1", "--model", model_dir)
    assert_one_line_error(p, "would both write")
    assert "use --out-dir, or rename one of them" in p.stderr


def test_a_bad_file_is_skipped_and_summarised(model_dir, tmp_path, speech_long, model):
    good = []
    for i in range(4):
        path = tmp_path / f"c{i}.wav"
        sf.write(path, speech_long[i * SR : (i + 1) * SR], SR)  # equal lengths: read ahead into one batch
        good.append(path)
    bad = tmp_path / "c2.wav"
    bad.write_text("not audio")
    p = mimi("encode", *good, tmp_path / "missing.wav", "--model", model_dir)
    assert p.returncode == 1
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert any("missing.wav: no such file" in e for e in errors) and any("c2.wav: not a readable" in e for e in errors)
    assert errors[-1].startswith("error: 2 of 5 input(s) failed, 3 encoded")
    for path in good:
        out = path.with_suffix(".safetensors")
        if path == bad:
            assert not out.exists()
        else:
            pcm = sf.read(path, dtype="float32")[0]
            assert_contract(model, pcm, load_codes(out).codes[None], np.array(model.encode(pcm)), path.name)
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["encode"], "give input files, folders or globs, or --manifest"),
        (["encode", "x.wav", "--bogus"], "No such option"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        (["encode", "x.wav", "--batch-seconds", "0"], "Invalid value for '--batch-seconds'"),
        (["train-heads", "m", "--data", ".", "-o", "c", "--steps", "1", "--batch-size", "0"], "'--batch-size'"),
        (["encode", "x.wav", "-n", "0"], "--num-codebooks"),
        (["decode", "x.safetensors", "--length", "-5"], "--length"),
        (["decode", "x.safetensors", "--length", "0"], "--length"),
        (["stream", "--duration", "0"], "--duration"),
        (["stream", "--duration", "-1"], "--duration"),
        (["stream", "--duration", "inf"], "not a finite number"),
        (["stream", "--duration", "nan"], "not a finite number"),
        (["encode", "a.wav", "b.wav", "-o", "x.safetensors"], "-o/--output takes exactly one input"),
        (["convert", "m", "-o", "o", "--encoder-only", "--decoder-only"], "exclude each other"),
        (["convert", "m", "-o", "o", "--group-size", "32"], "--group-size applies with --quantize"),
        (["convert", "m", "-o", "o", "--keep-float", "encoder"], "--keep-float applies with --quantize"),
        (["encode", "a.wav", "-o", "out.wav"], "name the output *.safetensors"),
        (["decode", "x.safetensors", "-o", "model.safetensors"], "name the output *.wav"),
        (["roundtrip", "a.wav", "-o", "a.npy"], "name the output *.wav"),
        (["stream", "--input", "a.wav"], "--input needs -o (codes), --save-audio or --playback"),
        (["stream", "--input", "a.wav", "-o", "live.wav"], "name the output *.safetensors"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, args, message):
    for name in ("a.wav", "b.wav", "x.safetensors"):
        (tmp_path / name).write_bytes(b"")
    assert_one_line_error(mimi(*args, cwd=tmp_path), message)


def test_help_and_version_still_exit_zero():
    assert "encode" in mimi("--help", ok=True).stdout
    version = mimi("--version", ok=True).stdout
    assert "mlx-mimi" in version and mlx_mimi.__version__ in version, version


def _codes_file(path: Path, num_samples) -> Path:
    save_codes(path, CodesFile(np.zeros((8, 3), np.int64), num_samples=3 * FRAME))
    if num_samples is not None:  # rewrite the metadata as a foreign or damaged writer might have
        from safetensors.numpy import load_file, save_file

        meta = load_codes(path).metadata()
        meta["num_samples"] = str(num_samples)
        save_file(load_file(str(path)), str(path), metadata=meta)
    return path


@pytest.mark.parametrize(
    "num_samples, message", [("-5", "must be positive"), ("abc", "is not a number"), ("9999", "does not fit 3 frames")]
)
def test_codes_metadata_is_validated(model_dir, tmp_path, num_samples, message):
    path = _codes_file(tmp_path / "c.safetensors", num_samples)
    assert_one_line_error(mimi("decode", path, "-o", tmp_path / "c.wav", "--model", model_dir), message)
    assert not (tmp_path / "c.wav").exists()


def test_length_beyond_the_codes_is_an_error(model_dir, tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((8, 3), np.int64))
    p = mimi("decode", tmp_path / "c.npy", "--length", 3 * FRAME + 1, "--model", model_dir)
    assert_one_line_error(p, "outside 1..5760")
    mimi("decode", tmp_path / "c.npy", "--length", 100, "--model", model_dir, ok=True)
    assert sf.info(tmp_path / "c.mimi.wav").frames == 100


@pytest.mark.parametrize(
    "field, value, message",
    [("hidden_size", "512", "'hidden_size' has the wrong type"), ("upsampling_ratios", "abc", "wrong type")],
)
def test_malformed_config_is_one_line(model_dir, wav, tmp_path, field, value, message):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").symlink_to(model_dir / "model.safetensors")
    config = json.loads((model_dir / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    # a converted file embeds its config; a Hugging Face style folder reads config.json: make the file foreign
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(model_dir / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "mlx-mimi", "config": json.dumps(config)})
    assert_one_line_error(mimi("encode", wav, "-o", tmp_path / "x.safetensors", "--model", folder), message)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask(model_dir, wav, tmp_path, umask, mode):
    out = tmp_path / f"u{umask:o}.safetensors"
    mimi("encode", wav, "-o", out, "--model", model_dir, umask=umask, ok=True)
    assert stat.S_IMODE(out.stat().st_mode) == mode
    rt = tmp_path / f"u{umask:o}.wav"
    mimi("decode", out, "-o", rt, "--model", model_dir, umask=umask, ok=True)
    assert stat.S_IMODE(rt.stat().st_mode) == mode


def test_no_microphone_is_one_line(model_dir):
    assert_one_line_error(
        mimi("stream", "--device", "no-such-device-xyz", "--model", model_dir), "no audio input device"
    )


def test_stream_ctrl_c_keeps_a_consistent_file(model_dir, tmp_path, speech_long, model):
    """Ctrl-C at random moments of a real-time stream: the file always holds every frame its num_samples
    counts, and its codes are those of the audio it counts (vs offline encode of exactly that audio)."""
    path = tmp_path / "talk.wav"
    pcm = speech_long[: 12 * SR]
    sf.write(path, pcm, SR, subtype="FLOAT")
    exe = shutil.which("mimi")
    rng = np.random.default_rng(0)
    for trial in range(4):
        out = tmp_path / f"live{trial}.safetensors"
        proc = subprocess.Popen(
            [exe, "stream", "--input", str(path), "-o", str(out), "--model", str(model_dir), "--quiet", "-n", "8"],
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.0 + rng.uniform(0, 2.0))  # import + load + warm-up, then some real-time streaming
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        live = load_codes(out)  # validates num_samples against the frame count
        frames = live.codes.shape[1]
        assert (frames - 1) * FRAME < live.num_samples <= frames * FRAME
        heard = pcm[: live.num_samples]
        assert_contract(
            model, heard, live.codes[None], np.array(model.encode(heard, num_codebooks=8)), f"Ctrl-C {trial}"
        )
        assert f"wrote {frames} frames" in err


def test_stream_file_carries_the_encode_metadata(model_dir, wav, tmp_path):
    mimi("encode", wav, "-o", tmp_path / "off.safetensors", "-n", 8, "--model", model_dir, ok=True)
    p = mimi(
        "stream", "--input", wav, "--as-fast-as-possible", "-o", tmp_path / "live.safetensors", "--model", model_dir
    )
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines()[0].startswith("preparing") and any(
        line.startswith("listening") for line in p.stderr.splitlines()
    )
    live, off = load_codes(tmp_path / "live.safetensors"), load_codes(tmp_path / "off.safetensors")
    assert live.metadata() == off.metadata()
    assert mlx_mimi.load(model_dir).source["model_id"] == live.model


def test_decode_never_replaces_what_is_not_audio(model_dir, wav, tmp_path):
    """decode/roundtrip write WAV: a model file (or any non-audio file) in the output's place is never replaced,
    --overwrite or not; -o must name a .wav (so `-o dd/model.safetensors` is refused before any work)."""
    codes = tmp_path / "talk.safetensors"
    mimi("encode", wav, "-o", codes, "-n", 8, "--model", model_dir, ok=True)
    weights = model_dir / "model.safetensors"
    before = weights.read_bytes()
    p = mimi("decode", codes, "-o", weights, "--overwrite", "--model", model_dir)
    assert_one_line_error(p, "name the output *.wav")
    out = tmp_path / "out"
    out.mkdir()
    (out / "talk.mimi.wav").write_bytes(b"my notes, not audio")
    for command, source in (("decode", codes), ("roundtrip", wav)):
        p = mimi(command, source, "--out-dir", out, "--overwrite", "--model", model_dir)
        assert p.returncode == 1 and "is not an audio file: not replacing it" in p.stderr, p.stderr
        assert (out / "talk.mimi.wav").read_bytes() == b"my notes, not audio"
    assert weights.read_bytes() == before


def test_codes_decode_only_with_their_model(model_dir, model, wav, tmp_path):
    """Codes carry their model's codebooks fingerprint: another model's codebooks (the 9-codebook variant's, say)
    are refused with one line; the same model converted (another dtype) decodes them."""
    codes = tmp_path / "talk.safetensors"
    mimi("encode", wav, "-o", codes, "-n", 8, "--model", model_dir, ok=True)
    variant = tmp_path / "mimi9"
    mimi("variant", "nine-codebooks", model_dir, "-o", variant, ok=True)
    assert_one_line_error(
        mimi("decode", codes, "-o", tmp_path / "x.wav", "--model", variant), "made with other codebooks"
    )
    assert not (tmp_path / "x.wav").exists()
    half = tmp_path / "half"
    mimi("convert", model_dir, "-o", half, "--dtype", "float16", ok=True)
    mimi("decode", codes, "-o", tmp_path / "y.wav", "--model", half, ok=True)
    assert load_codes(codes).codebooks_fingerprint == model.codebooks_fingerprint()


def test_unusable_entries_in_a_folder_are_reported(model_dir, tmp_path, speech_long):
    """A broken symlink and a folder named like an audio file are failures in the summary, not dropped."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sf.write(corpus / "good.wav", speech_long[: SR // 2], SR)
    (corpus / "gone.wav").symlink_to(tmp_path / "deleted.wav")
    (corpus / "dir.wav").mkdir()
    p = mimi("encode", corpus, "--out-dir", tmp_path / "codes", "--model", model_dir)
    assert p.returncode == 1, p.stderr
    assert "gone.wav: a broken symbolic link" in p.stderr and "dir.wav: a folder, not a file" in p.stderr
    assert "2 of 3 input(s) failed, 1 encoded" in p.stderr
    assert (tmp_path / "codes" / "good.safetensors").is_file()


def test_missing_manifest_entry_says_so(model_dir, tmp_path, speech_long):
    sf.write(tmp_path / "here.wav", speech_long[: SR // 2], SR)
    (tmp_path / "list.txt").write_text("here.wav\nnot-here.wav\n")
    p = mimi("encode", "--manifest", tmp_path / "list.txt", "--out-dir", tmp_path / "codes", "--model", model_dir)
    assert p.returncode == 1 and "not-here.wav: no such file" in p.stderr, p.stderr
    assert "System error" not in p.stderr


def test_info_on_an_audio_file_is_one_line(wav):
    assert_one_line_error(mimi("info", wav), "not a model checkpoint")


def test_no_audio_devices_is_one_line(monkeypatch):
    """With no device at all (PortAudio lists none), `mimi devices` says so instead of printing a blank line."""
    import sounddevice as sd
    from click.testing import CliRunner

    from mlx_mimi.cli import main

    monkeypatch.setattr(sd, "query_devices", lambda *a, **k: sd.DeviceList())
    result = CliRunner().invoke(main, ["devices"])
    assert result.exit_code == 1 and "error: no audio devices found" in result.output, result.output


def test_quantized_models_say_they_are_slow_here(model_dir, wav, tmp_path):
    """On MLX's CPU backend quantized matmuls are ~10x slower than float32: convert and every later load say so
    (one warning line); converting a quantized model says it stays quantized."""
    q8 = tmp_path / "q8"
    p = mimi("convert", model_dir, "-o", q8, "--quantize", 8, ok=True)
    assert "warning: quantized matmuls run about 10x slower" in p.stderr, p.stderr
    p = mimi("encode", wav, "-o", tmp_path / "x.safetensors", "--model", q8, ok=True)
    assert "warning: quantized matmuls run about 10x slower" in p.stderr, p.stderr
    p = mimi("convert", q8, "-o", tmp_path / "again", ok=True)
    assert "stays quantized" in p.stderr, p.stderr
