"""Corpus tokenization: exact variable-length batches (encode_batch/decode_batch), the Parquet dataset,
resume after a crash, and two processes under mlx.launch."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import reference
import soundfile as sf
from conftest import IN_CI, require
from contract import assert_audio_contract, assert_contract

import mlx_mimi
from mlx_mimi import MimiError

FRAME, SR = 1920, 24_000
# lengths that are and are not multiples of the frame, from one sample to minutes; every batch below mixes
# them, so a clip's partial last frame computed from the batch's padding would change its codes
LENGTHS = [1, 1919, 1920, 1921, 7 * FRAME + 5, 32 * FRAME - 1, 32 * FRAME + 1, 40_000, 100_000, 150 * FRAME + 777]


@pytest.fixture(scope="module")
def clips(speech_minute):
    return [np.roll(speech_minute, -i * 9_973)[:n] for i, n in enumerate(LENGTHS)]


@pytest.fixture(scope="module")
def single(model, clips):
    return [np.array(model.encode(c))[0] for c in clips]


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 10, 16])
def test_encode_batch_equals_single(model, clips, single, batch):
    """Any mix of lengths and batch sizes: each clip's codes equal encoding it alone (contract; measured rates)."""
    rng = np.random.default_rng(batch)
    order = rng.permutation(len(clips))
    picked = [int(i) for i in order[: min(batch, len(clips))]]
    if batch == 16:  # more clips than lengths: repeats in the batch
        picked = [int(i) for i in rng.integers(0, len(clips), 16)]
    codes = model.encode_batch([clips[i] for i in picked])
    same = 0
    for i, c in zip(picked, codes, strict=True):
        c = np.array(c)
        assert c.shape == (32, -(-LENGTHS[i] // FRAME)) and c.dtype == np.int32
        assert_contract(model, clips[i], c[None], single[i][None], f"B={batch}, clip of {LENGTHS[i]} samples")
        same += np.array_equal(c, single[i])
    print(f"B={batch}: {same}/{len(picked)} clips bit-identical to encoding alone")


def test_the_batch_padding_never_reaches_a_clip(model, clips, single, monkeypatch):
    """Right-padded with loud noise instead of zeros, every clip still gets its codes alone: each strided
    layer pads a clip's partial last block by that clip's own rule. Without the rule the noise reaches the
    clips' last frames (so the batch tests above would catch a padding bug)."""
    import mlx.core as mx

    from mlx_mimi.layers.conv import CausalConv1d

    picked = [4, 7, 9, 2]  # 7 frames + 5 samples, 40000 samples, 150 frames + 777, whole frames
    lengths = [len(clips[i]) for i in picked]
    batch = np.random.default_rng(0).standard_normal((len(picked), max(lengths))).astype(np.float32)
    for row, i in enumerate(picked):
        batch[row, : lengths[row]] = clips[i]

    def run():
        schedule = dataclasses.replace(model.current_schedule(), chunk_frames=32)
        codes = model._run_encoder(mx.array(batch)[:, :, None], schedule, model._codes_fn(32), lengths=lengths)
        return np.array(codes.transpose(0, 2, 1))

    codes = run()
    for row, i in enumerate(picked):
        frames = single[i].shape[1]
        assert_contract(model, clips[i], codes[row : row + 1, :, :frames], single[i][None], f"noise-padded, {i}")
    monkeypatch.setattr(CausalConv1d, "_pad_after", lambda self, x, valid: x)
    leaked = run()
    changed = [i for row, i in enumerate(picked) if not np.array_equal(leaked[row, :, : single[i].shape[1]], single[i])]
    assert set(changed) == {4, 7}, changed  # partial last frames followed by padding (9 is the longest: none)


def test_decode_batch_equals_single(model, single):
    codes = [single[i][:8] for i in (0, 3, 4, 9, 7)]
    audio = model.decode_batch(codes)
    for c, a in zip(codes, audio, strict=True):
        alone = np.array(model.decode(c[None])).reshape(-1)
        assert a.shape == (c.shape[1] * FRAME,)
        assert_audio_contract(np.array(a), alone, f"decode_batch, {c.shape[1]} frames")


def test_encode_batch_matches_transformers(model, hf_reference, clips):
    require("torch", "transformers")
    import torch

    from mlx_mimi.compare import agreement

    hf_model, _ = hf_reference
    picked = [clips[i] for i in (3, 4, 7, 9)]
    for pcm, codes in zip(picked, model.encode_batch(picked), strict=True):
        with torch.no_grad():
            x = torch.from_numpy(pcm)[None, None]
            ref = hf_model.encode(x).audio_codes.numpy()
            latent = hf_model.encoder(x).latents.numpy().transpose(0, 2, 1)
        result = agreement(np.array(codes)[None], ref, latent, reference.hf_chains(hf_model))
        print(f"encode_batch vs transformers, {len(pcm)} samples: {result.summary()}")
        assert result.near_ties_only() and result.identical >= 0.999


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 100), np.float32), "list of"),
        ([], "no clips"),
        ([np.zeros(10, np.float32), np.zeros(0, np.float32)], "clip 1: audio is empty"),
        ([np.zeros(10, np.float32), np.array([np.nan], np.float32)], "clip 1: audio contains NaN"),
        ([np.zeros((2, 10), np.float32)], r"clip 0: audio must have shape \(T,\)"),
        ([np.zeros(10, np.int16)], "clip 0: audio must be floating point"),
    ],
)
def test_encode_batch_bad_input(model, bad, message):
    with pytest.raises(MimiError, match=message):
        model.encode_batch(bad)


def test_decode_batch_bad_input(model):
    with pytest.raises(MimiError, match="clip 1: 4 codebooks where clip 0 has 8"):
        model.decode_batch([np.zeros((8, 3), np.int64), np.zeros((4, 3), np.int64)])
    with pytest.raises(MimiError, match="clip 0: codes out of range"):
        model.decode_batch([np.full((8, 3), 5000)])


# -- the dataset command ------------------------------------------------------------------------------------
def mimi_exe() -> str:
    return shutil.which("mimi") or pytest.fail("the `mimi` console script is not installed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """~20 espeak clips of 0.3-6 s in nested folders, mixed formats, plus one file that is not audio."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(7)
    for i in range(20):
        folder = root / ("a" if i % 3 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        pcm = reference.speech(float(rng.uniform(0.3, 6.0)), seed=100 + i)
        if i % 4 == 0:
            sf.write(folder / f"clip{i:02d}.flac", pcm, SR)
        else:
            sf.write(folder / f"clip{i:02d}.wav", pcm, SR, subtype="FLOAT")
    (root / "a" / "broken.wav").write_text("not audio")
    return root


def read_dataset(folder: Path) -> dict[str, tuple[int, np.ndarray]]:
    import pyarrow.parquet as pq

    rows = {}
    for shard in sorted(folder.glob("shard-*.parquet")):
        table = pq.read_table(shard).to_pylist()
        for row in table:
            assert row["id"] not in rows, f"{row['id']} twice"
            codes = np.array(row["codes"], dtype=np.uint16)
            assert codes.shape == (row["num_codebooks"], row["num_frames"])
            rows[row["id"]] = (row["num_samples"], codes)
    return rows


def run_dataset(corpus: Path, out: Path, model_dir: Path, *extra, launch: int = 0, port=32323, check=True, **kw):
    cmd = [mimi_exe(), "encode", str(corpus), "--dataset", str(out), "-n", "8", "--model", str(model_dir), *extra]
    if launch:
        launcher = shutil.which("mlx.launch") or pytest.fail("mlx.launch is not installed")
        cmd = [launcher, "-n", str(launch), "-p", str(port), "--", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    if check and launch:  # mlx.launch exits 0 whatever its ranks do, reports their exit codes, and stops the
        # others once one exits non-zero (all ranks have finished by then: the command's last step is a barrier)
        assert "exited with code 1" in p.stderr, p.stderr  # the corpus has one non-audio file
    elif check:
        assert p.returncode == 1, p.stderr  # the corpus holds one file that is not audio
    return p


@pytest.fixture(scope="module")
def single_process(corpus, converted_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset") / "out"
    p = run_dataset(corpus, out, converted_folder, "--shard-rows", "6", "--batch-seconds", "8")
    return out, p


def test_dataset(single_process, corpus, model):
    out, p = single_process
    assert "error: 1 input(s) could not be encoded" in p.stderr
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and errors[0]["id"] == "a/broken.wav"
    rows = read_dataset(out)
    audio = sorted(str(f.relative_to(corpus)) for f in corpus.rglob("clip*"))
    assert sorted(rows) == audio  # ids: paths relative to the input root
    index = json.loads((out / "index.json").read_text())
    assert index["clips"] == 20 and len(index["shards"]) == 4 and index["errors"] == 1 and index["ranks"] == 1
    assert index["num_codebooks"] == 8 and index["model"] and index["mlx_mimi_version"] == mlx_mimi.__version__
    from mlx_mimi.audio import read_audio

    total = 0.0
    for clip_id, (num_samples, codes) in rows.items():
        pcm = read_audio(corpus / clip_id)
        assert num_samples == len(pcm)
        total += len(pcm) / SR
        assert_contract(model, pcm, codes[None].astype(np.int64), np.array(model.encode(pcm, 8)), clip_id)
    assert abs(index["audio_seconds"] - total) < 0.01
    assert not list(out.glob(".*")) and not list(out.glob("*.partial"))


def test_dataset_reads_with_pandas_and_datasets(single_process):
    out, _ = single_process
    require("datasets")
    import datasets
    import pandas as pd

    frame = pd.concat(pd.read_parquet(f) for f in sorted(out.glob("shard-*.parquet")))
    row = frame.iloc[0]
    assert np.stack(row["codes"]).shape == (8, row["num_frames"])
    ds = datasets.load_dataset("parquet", data_files=str(out / "*.parquet"), split="train")
    assert len(ds) == 20
    assert np.array(ds[0]["codes"], dtype=np.uint16).shape == (8, ds[0]["num_frames"])


def test_dataset_resumes_after_a_crash(corpus, converted_folder, tmp_path, single_process):
    """Killed once a shard exists, then re-run: no clip twice, none missing, the same codes."""
    out = tmp_path / "out"
    cmd = [mimi_exe(), "encode", str(corpus), "--dataset", str(out), "-n", "8", "--model", str(converted_folder)]
    # small batches, so that the kill lands between two of them
    proc = subprocess.Popen(
        [*cmd, "--shard-rows", "3", "--batch-seconds", "8"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not list(out.glob("shard-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = read_dataset(out)
    assert 0 < len(partial) < 20, len(partial)
    assert not (out / "index.json").exists()
    p = run_dataset(corpus, out, converted_folder, "--shard-rows", "3", "--batch-seconds", "8")
    assert "wrote 20 clips" in p.stderr, p.stderr
    rows = read_dataset(out)
    reference_rows = read_dataset(single_process[0])
    assert sorted(rows) == sorted(reference_rows)
    for clip_id, (n, codes) in rows.items():
        assert n == reference_rows[clip_id][0]
        # the re-run batches the remaining clips differently: the contract (here: measured identical)
        assert (codes == reference_rows[clip_id][1]).mean() >= 0.995, clip_id


def test_two_processes_with_mlx_launch(corpus, converted_folder, tmp_path, single_process):
    """mlx.launch -n 2 on localhost: disjoint shares of one batch plan; the union is the single-process
    dataset (same ids, and codes bit for bit: the same plan gives each clip the same batch); the index is
    written once, after both have finished."""
    if shutil.which("mlx.launch") is None:
        if IN_CI:
            pytest.fail("CI must run the mlx.launch test")
        pytest.skip("mlx.launch not installed")
    out = tmp_path / "out"
    p = run_dataset(corpus, out, converted_folder, "--shard-rows", "6", "--batch-seconds", "8", launch=2)
    rows = read_dataset(out)
    reference_rows = read_dataset(single_process[0])
    assert sorted(rows) == sorted(reference_rows)
    for clip_id, (n, codes) in rows.items():
        np.testing.assert_array_equal(codes, reference_rows[clip_id][1])
        assert n == reference_rows[clip_id][0]
    ranks = {name.split("-")[1] for name in os.listdir(out) if name.startswith("shard-")}
    assert ranks == {"000", "001"}, ranks
    index = json.loads((out / "index.json").read_text())
    assert index["ranks"] == 2 and index["clips"] == 20 and index["errors"] == 1
    assert sorted(s["file"] for s in index["shards"]) == sorted(f.name for f in out.glob("shard-*.parquet"))
    assert p.stderr.count("wrote 20 clips") == 1  # rank 0 alone writes the index

    # killed halfway, then re-run with two processes again: completes without duplicates
    out2 = tmp_path / "out2"
    launcher = shutil.which("mlx.launch")
    cmd = [
        launcher,
        "-n",
        "2",
        "-p",
        "34323",
        "--",
        mimi_exe(),
        "encode",
        str(corpus),
        "--dataset",
        str(out2),
        "-n",
        "8",
    ]
    cmd += ["--model", str(converted_folder), "--shard-rows", "2", "--batch-seconds", "8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(out2.glob("shard-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(["pkill", "-9", "-f", str(out2)], check=False)  # the ranks the launcher started
    time.sleep(0.5)
    assert 0 < len(read_dataset(out2)) < 20
    run_dataset(corpus, out2, converted_folder, "--shard-rows", "2", "--batch-seconds", "8", launch=2, port=35323)
    assert sorted(read_dataset(out2)) == sorted(reference_rows)


def test_manifests_and_strict(corpus, converted_folder, tmp_path):
    files = sorted(corpus.rglob("clip*"))[:4]
    (tmp_path / "list.txt").write_text("# clips\n" + "\n".join(str(f) for f in files) + "\n")
    (tmp_path / "list.csv").write_text("path,id\n" + "\n".join(f"{f},x{i}" for i, f in enumerate(files)) + "\n")
    (tmp_path / "list.jsonl").write_text("".join(json.dumps({"path": str(f)}) + "\n" for f in files))
    for name, ids in (
        ("list.txt", sorted(str(f) for f in files)),
        ("list.csv", [f"x{i}" for i in range(4)]),
        ("list.jsonl", sorted(str(f) for f in files)),
    ):
        out = tmp_path / name.replace(".", "_")
        p = subprocess.run(
            [mimi_exe(), "encode", "--manifest", str(tmp_path / name), "--dataset", str(out), "-n", "4"]
            + ["--model", str(converted_folder)],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, p.stderr
        assert sorted(read_dataset(out)) == sorted(ids)
    p = run_dataset(corpus, tmp_path / "strict", converted_folder, "--strict", check=False)
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "broken.wav" in p.stderr and not (tmp_path / "strict" / "index.json").exists()


def test_per_file_outputs_from_folders(corpus, converted_folder, tmp_path, model):
    """Without --dataset: codes files under --out-dir mirror the folders; the bad file is skipped, reported."""
    out = tmp_path / "codes"
    p = subprocess.run(
        [mimi_exe(), "encode", str(corpus), "--out-dir", str(out), "-n", "8", "--model", str(converted_folder)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1 and "broken.wav" in p.stderr and "1 of 21 input(s) failed, 20 encoded" in p.stderr
    from mlx_mimi.codes import load_codes

    written = sorted(str(f.relative_to(out)) for f in out.rglob("*.safetensors"))
    assert written == sorted(str(f.relative_to(corpus).with_suffix(".safetensors")) for f in corpus.rglob("clip*"))
    from mlx_mimi.audio import read_audio

    first = sorted(corpus.rglob("clip*"))[0]
    codes = load_codes(out / first.relative_to(corpus).with_suffix(".safetensors"))
    pcm = read_audio(first)
    assert_contract(model, pcm, codes.codes[None], np.array(model.encode(pcm, 8)), "per-file output")


def test_dataset_reruns_with_other_settings_are_refused(
    corpus, converted_folder, model_folder, tmp_path, single_process
):
    """A dataset is one model, revision, codebook count and sample rate: a re-run with another -n or --model is
    one error line naming the difference and changes nothing (new inputs included); --overwrite starts anew."""
    out = tmp_path / "out"
    shutil.copytree(single_process[0], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    extra = tmp_path / "more"
    extra.mkdir()
    sf.write(extra / "new.wav", reference.speech(1.0, seed=900), SR)
    for args, difference in (
        (["-n", "4"], "codebooks (-n) '8'; this run has '4'"),
        (["-n", "8", "--model", str(model_folder)], "holds a dataset with model"),
    ):
        cmd = [mimi_exe(), "encode", str(corpus), str(extra), "--dataset", str(out), "--model", str(converted_folder)]
        p = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=600)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 1 and len(lines) == 1 and difference in lines[0], p.stderr
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    cmd = [
        mimi_exe(),
        "encode",
        str(extra),
        "--dataset",
        str(out),
        "-n",
        "4",
        "--overwrite",
        "--model",
        str(converted_folder),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    rows = read_dataset(out)
    assert list(rows) == ["new.wav"] and rows["new.wav"][1].shape[0] == 4
    index = json.loads((out / "index.json").read_text())
    assert index["num_codebooks"] == 4 and index["clips"] == 1 and not list(out.glob("errors*"))


def test_dataset_progress_bar_ends_at_its_total(corpus, converted_folder, tmp_path):
    """The progress bar (shown on a terminal) counts exact samples: it ends at 100% with no clamping warning."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal has a width
    cmd = [mimi_exe(), "encode", str(corpus), "--dataset", str(tmp_path / "out"), "-n", "2"]
    proc = subprocess.Popen([*cmd, "--model", str(converted_folder)], stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process has exited
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=600)
    os.close(leader)
    text = b"".join(chunks).decode(errors="replace")
    assert "100%|" in text and "clamping" not in text and "<-" not in text, text[-2000:]
