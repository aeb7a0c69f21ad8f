"""The Parquet dataset of a corpus: encode in planned batches, write shards atomically, resume, split over ranks.

Layout of ``DIR``: ``shard-<rank>-<run>-<n>.parquet`` files, each written to a temp name and renamed when
complete (a crash loses at most the shard in progress), ``index.json`` (written once, by rank 0, after every
rank has finished: a collective, not polling the file system) and ``errors*.jsonl`` (inputs that could not be
read). Columns, one row per clip:

    id             string       path relative to the input root (or as the manifest writes it)
    num_samples    int64        original length at 24 kHz (decode, then keep this many samples)
    sample_rate    int32        24000
    num_codebooks  int16        K
    num_frames     int32        F = ceil(num_samples / 1920)
    codes          list<list<uint16>>   (K, F), codebook-major

Back to numpy: ``np.array(row["codes"], dtype=np.uint16)`` is the (K, F) array.

A dataset is one model, revision, codebook count and sample rate: every shard records them (with the model's
codebooks fingerprint) in its schema metadata. Re-running with the same settings skips clips whose ids are in
finished shards; a re-run with other settings is refused, naming the difference (``--overwrite`` starts the
dataset anew instead). Under ``mlx.launch`` every process plans the same
batches from the same sorted corpus and takes every size-th one; ids already done are agreed on by a
collective, so hosts need not share a folder (then each host keeps its own shards; copy them together).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .corpus import AUDIO_EXTENSIONS, expand_inputs
from .errors import MimiError
from .load import load_model
from .pipeline import encode_batches, plan
from .version import __version__

DATASET_FORMAT = "mimi-codes-parquet"
DATASET_VERSION = 1
INDEX = "index.json"


def _parquet():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MimiError('--dataset needs pyarrow: pip install "mlx-mimi[data]"') from exc
    return pa, pq


def shard_schema(metadata: dict[str, str]):
    pa, _ = _parquet()
    return pa.schema(
        [
            ("id", pa.string()),
            ("num_samples", pa.int64()),
            ("sample_rate", pa.int32()),
            ("num_codebooks", pa.int16()),
            ("num_frames", pa.int32()),
            ("codes", pa.list_(pa.list_(pa.uint16()))),  # (K, F), codebook-major
        ],
        metadata=metadata,
    )


# What makes a dataset one dataset: a re-run must match these (README, "Corpora").
SETTINGS = ("model", "revision", "codebooks_fingerprint", "num_codebooks", "sample_rate")


def _same_model(a: str, b: str) -> bool:
    """Two model references name the same model: equal strings, or local paths to the same place."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def existing_settings(folder: Path) -> dict[str, str] | None:
    """The settings the dataset in ``folder`` was written with (from its shards, else its index), or None for an
    empty folder. Raises MimiError where its shards disagree among themselves (a dataset mixed by an older
    mlx-mimi)."""
    _, pq = _parquet()
    seen: dict[tuple, str] = {}
    for shard in sorted(folder.glob("shard-*.parquet")):
        meta = {k.decode(): v.decode() for k, v in (pq.read_schema(shard).metadata or {}).items()}
        seen.setdefault(tuple(meta.get(k, "") for k in SETTINGS), shard.name)
    if len(seen) > 1:
        (a, first), (b, second) = list(seen.items())[:2]
        what = next(k for k, x, y in zip(SETTINGS, a, b, strict=True) if x != y)
        raise MimiError(
            f"{folder} mixes datasets: {first} has {what} {a[SETTINGS.index(what)]!r}, {second} "
            f"{b[SETTINGS.index(what)]!r}; use --overwrite to start it anew"
        )
    if seen:
        return dict(zip(SETTINGS, next(iter(seen)), strict=True))
    index = folder / INDEX
    if index.is_file():
        try:
            data = json.loads(index.read_text())
        except (OSError, ValueError) as exc:
            raise MimiError(f"{index}: not a readable dataset index ({exc})") from exc
        return {k: str(data.get(k, "")) for k in SETTINGS}
    return None


def check_settings(folder: Path, existing: dict[str, str], wanted: dict[str, str]) -> None:
    """MimiError naming the first setting in which this run differs from the dataset already in ``folder``."""
    for key in SETTINGS:
        have, want = existing.get(key, ""), wanted[key]
        if key == "model" and _same_model(have, want):
            continue
        if key == "codebooks_fingerprint" and not have:  # written before fingerprints existed
            continue
        if have != want:
            name = {"codebooks_fingerprint": "model codebooks", "num_codebooks": "codebooks (-n)"}.get(key, key)
            raise MimiError(
                f"{folder} holds a dataset with {name} {have or 'none'!r}; this run has {want or 'none'!r}: a dataset "
                "is one model, revision, codebook count and sample rate (use another --dataset folder, or "
                "--overwrite to start it anew)"
            )


def clear_dataset(folder: Path) -> None:
    """Remove what a dataset run writes (shards, index, error lists, temp files); nothing else in the folder."""
    for pattern in ("shard-*.parquet", INDEX, "errors*.jsonl", ".shard-*.partial"):
        for path in folder.glob(pattern):
            path.unlink()


def finished_ids(folder: Path) -> set[str]:
    """Ids of the clips in the dataset's finished shards (shards are written atomically: a shard file exists
    only complete)."""
    if not folder.is_dir():
        return set()
    _, pq = _parquet()
    done: set[str] = set()
    for shard in sorted(folder.glob("shard-*.parquet")):
        done.update(pq.read_table(shard, columns=["id"]).column("id").to_pylist())
    return done


class ShardWriter:
    """Buffers rows and writes them as Parquet shards of about ``rows`` rows or ``max_bytes`` of codes."""

    def __init__(self, folder: Path, rank: int, metadata: dict[str, str], rows: int, max_bytes: int):
        import secrets

        self.folder, self.rank, self.rows, self.max_bytes = folder, rank, rows, max_bytes
        self.schema = shard_schema(metadata)
        self.token = secrets.token_hex(4)  # shards of this run never collide with another run's
        self.buffer: list[tuple[str, int, np.ndarray]] = []
        self.bytes = 0
        self.written: list[dict] = []
        self.sample_rate = int(metadata["sample_rate"])

    def add(self, clip_id: str, num_samples: int, codes: np.ndarray) -> None:
        self.buffer.append((clip_id, num_samples, codes.astype(np.uint16)))
        self.bytes += codes.size * 2
        if len(self.buffer) >= self.rows or self.bytes >= self.max_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        pa, pq = _parquet()
        ks = [c.shape[0] for _, _, c in self.buffer]
        fs = [c.shape[1] for _, _, c in self.buffer]
        inner = np.concatenate([[0], np.cumsum(np.repeat(fs, ks))]).astype(np.int32)
        outer = np.concatenate([[0], np.cumsum(ks)]).astype(np.int32)
        values = pa.array(np.concatenate([c.reshape(-1) for _, _, c in self.buffer]), pa.uint16())
        codes = pa.ListArray.from_arrays(pa.array(outer), pa.ListArray.from_arrays(pa.array(inner), values))
        table = pa.Table.from_arrays(
            [
                pa.array([i for i, _, _ in self.buffer], pa.string()),
                pa.array([n for _, n, _ in self.buffer], pa.int64()),
                pa.array([self.sample_rate] * len(self.buffer), pa.int32()),
                pa.array(ks, pa.int16()),
                pa.array(fs, pa.int32()),
                codes,
            ],
            schema=self.schema,
        )
        name = f"shard-{self.rank:03d}-{self.token}-{len(self.written):05d}.parquet"
        atomic_write(self.folder / name, lambda tmp: pq.write_table(table, tmp), keep_suffix=False)
        seconds = sum(n for _, n, _ in self.buffer) / self.sample_rate
        self.written.append({"file": name, "rows": len(self.buffer), "audio_seconds": round(seconds, 3)})
        self.buffer, self.bytes = [], 0


def shard_summaries(folder: Path, sample_rate: int) -> list[dict]:
    """{file, rows, audio_seconds} for every finished shard in the folder (read from the shards themselves)."""
    _, pq = _parquet()
    out = []
    for shard in sorted(folder.glob("shard-*.parquet")):
        table = pq.read_table(shard, columns=["num_samples"])
        out.append(
            {
                "file": shard.name,
                "rows": table.num_rows,
                "audio_seconds": round(sum(table.column("num_samples").to_pylist()) / sample_rate, 3),
            }
        )
    return out


# -- several processes (mlx.launch) ------------------------------------------------------------------------------
class Ranks:
    """This process's place among the processes of an ``mlx.launch`` run (a single process: rank 0 of 1).

    The batch plan is the same in every process; rank r takes batches r, r + size, r + 2 size, ...
    """

    def __init__(self):
        import mlx.core as mx

        self.group = mx.distributed.init()
        self.rank, self.size = self.group.rank(), self.group.size()

    def barrier(self) -> None:
        if self.size > 1:
            import mlx.core as mx

            mx.eval(mx.distributed.all_sum(mx.array([1.0]), group=self.group))

    def gather_json(self, value) -> list:
        """Every rank's ``value`` (JSON-serialisable), in rank order, on every rank (a collective)."""
        import json

        if self.size == 1:
            return [value]
        import mlx.core as mx

        data = np.frombuffer(json.dumps(value).encode(), np.uint8)
        lengths = mx.distributed.all_gather(mx.array([len(data)], dtype=mx.int32), group=self.group)
        width = int(mx.max(lengths).item())
        padded = np.zeros(width, np.uint8)
        padded[: len(data)] = data
        rows = np.array(mx.distributed.all_gather(mx.array(padded), group=self.group)).reshape(self.size, width)
        return [json.loads(bytes(rows[r, : int(n)])) for r, n in enumerate(np.array(lengths))]

    def share(self, batches: list) -> list:
        return batches[self.rank :: self.size]


def _dataset_ids_unique(items) -> None:
    seen: dict[str, Path] = {}
    for item in items:
        if item.id in seen and seen[item.id] != item.path:
            raise MimiError(f"{seen[item.id]} and {item.path} would both be id {item.id!r}: give their common folder")
        seen[item.id] = item.path


def encode_dataset(
    inputs,
    extra,
    folder: Path,
    num_codebooks: int | None,
    batch_seconds: float,
    strict: bool,
    model: str,
    revision: str | None,
    shard_rows: int,
    shard_mb: float,
    overwrite: bool = False,
) -> int:
    """The ``mimi encode --dataset`` run of this process; returns the exit code (1 if any input failed).

    A folder that holds a dataset of other settings is refused (``overwrite``: its dataset files are removed first).
    """
    _parquet()
    ranks = Ranks()
    if strict and ranks.size > 1:
        raise MimiError("--strict stops one process, not the others of an mlx.launch run: use it in a single process")
    items, problems = expand_inputs(inputs, AUDIO_EXTENSIONS)
    items += list(extra)
    if not items:
        raise FileNotFoundError(problems[0] if problems else "no inputs")
    _dataset_ids_unique(items)
    errors = [{"id": p.split(":")[0], "error": p} for p in problems] if ranks.rank == 0 else []
    folder.mkdir(parents=True, exist_ok=True)
    mimi = load_model(model, revision=revision)
    k = mimi.check_num_codebooks(num_codebooks)
    source = mimi.source
    settings = {
        "model": str(source["model_id"]),
        "revision": str(source.get("revision") or ""),
        "codebooks_fingerprint": mimi.codebooks_fingerprint(),
        "num_codebooks": str(k),
        "sample_rate": str(mimi.sample_rate),
    }
    if overwrite:
        if ranks.rank == 0:
            clear_dataset(folder)
        ranks.barrier()  # nobody reads the folder before it is cleared
    existing = existing_settings(folder)
    if existing is not None:
        check_settings(folder, existing, settings)  # the same verdict on every rank: they read the same shards
    done = set().union(*map(set, ranks.gather_json(sorted(finished_ids(folder)))))
    ranks.barrier()  # every rank has read the folder before anyone writes to it
    todo = [item for item in items if item.id not in done]
    planned, unreadable = plan(todo, mimi.sample_rate, batch_seconds)
    if ranks.rank == 0:
        errors += [{"id": item.id, "path": str(item.path), "error": str(error)} for item, error in unreadable]
    if strict and (problems or unreadable):  # the same on every rank: all probe the whole corpus
        raise MimiError((problems + [str(error) for _, error in unreadable])[0])
    batches = ranks.share(planned)
    metadata = {
        "format": DATASET_FORMAT,
        "format_version": str(DATASET_VERSION),
        **settings,
        "frame_rate": str(mimi.frame_rate),
        "codebook_size": str(mimi.config.codebook_size),
        "mlx_mimi_version": __version__,
    }
    writer = ShardWriter(folder, ranks.rank, metadata, shard_rows, int(shard_mb * 2**20))
    bar = _progress(sum(c.samples for batch in batches for c in batch), mimi.sample_rate, ranks)

    def on_failure(item, exc: BaseException) -> None:
        if strict:
            raise exc
        errors.append({"id": item.id, "path": str(item.path), "error": str(exc).splitlines()[0]})
        bar.write(f"error: {item.path}: {str(exc).splitlines()[0]}", file=sys.stderr)

    def on_codes(item, codes: np.ndarray, num_samples: int) -> None:
        writer.add(item.id, num_samples, codes)

    def on_batch(batch, read: int) -> None:
        bar.update(sum(c.samples for c in batch))

    encode_batches(mimi, batches, k, on_codes, on_failure, on_batch)
    writer.flush()
    bar.close()
    _write_errors(folder, ranks, errors)
    # every rank reports what it sees; rank 0 writes the index once all have finished
    views = ranks.gather_json({"shards": shard_summaries(folder, mimi.sample_rate), "errors": len(errors)})
    failures = sum(v["errors"] for v in views)
    if ranks.rank == 0:
        shards = {s["file"]: s for view in views for s in view["shards"]}
        index = {
            **{key: metadata[key] for key in ("format", "model", "revision", "codebooks_fingerprint")},
            "mlx_mimi_version": __version__,
            "format_version": DATASET_VERSION,
            "sample_rate": mimi.sample_rate,
            "frame_rate": mimi.frame_rate,
            "codebook_size": mimi.config.codebook_size,
            "num_codebooks": k,
            "shards": [shards[name] for name in sorted(shards)],
            "clips": sum(s["rows"] for s in shards.values()),
            "audio_seconds": round(sum(s["audio_seconds"] for s in shards.values()), 3),
            "errors": failures,
            "ranks": ranks.size,
        }
        atomic_write(folder / INDEX, lambda tmp: Path(tmp).write_text(json.dumps(index, indent=2) + "\n"))
        print(
            f"wrote {index['clips']} clips ({index['audio_seconds'] / 3600:.2f} h) in {len(shards)} shards to {folder}",
            file=sys.stderr,
        )
        if failures:
            print(f"error: {failures} input(s) could not be encoded; see {folder}/errors*.jsonl", file=sys.stderr)
    # mlx.launch terminates the other ranks as soon as one exits non-zero: nobody leaves before the index exists
    ranks.barrier()
    return 1 if failures else 0


def _progress(total_samples: int, sample_rate: int, ranks: Ranks):
    """A bar counted in samples (exact integers: the updates add up to the total) and shown in audio seconds."""
    from tqdm import tqdm

    return tqdm(
        total=total_samples,
        unit="audio-s",
        unit_scale=1 / sample_rate,
        desc="encode" if ranks.size == 1 else f"rank {ranks.rank}/{ranks.size}",
        file=sys.stderr,
        disable=ranks.rank != 0 or not sys.stderr.isatty(),
    )


def _write_errors(folder: Path, ranks: Ranks, errors: list[dict]) -> None:
    name = "errors.jsonl" if ranks.size == 1 else f"errors-rank{ranks.rank:03d}.jsonl"
    path = folder / name
    if errors:
        text = "".join(json.dumps(e) + "\n" for e in errors)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text), keep_suffix=False)
    elif path.exists():
        path.unlink()  # a clean re-run clears the previous run's errors
