"""Inputs of the many-file commands: files, folders, globs and manifests; safe outputs; batch plans.

Every input gets an id: its path relative to the root it was found under (the folder given, the static
prefix of a glob, the file name for a file given by name, or the path as a manifest writes it). Outputs
under ``--out-dir`` mirror the ids, and clashes are refused before any work, as is any output that is also
an input. Clips are planned into length-bucketed batches once, deterministically, from their headers.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import AudioError, MimiError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif", ".au", ".caf", ".w64", ".m4a")
CODES_EXTENSIONS = (".safetensors", ".npy")


@dataclass(frozen=True)
class Item:
    path: Path  # the input file
    id: str  # its path relative to the root it was found under, with "/" separators


def _has_glob(arg: str) -> bool:
    return any(c in arg for c in "*?[")


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _has_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def expand_inputs(args: list[str] | tuple[str, ...], extensions: tuple[str, ...]) -> tuple[list[Item], list[str]]:
    """(items, problems): files as given, folders walked recursively for ``extensions``, globs expanded.

    A name that matches nothing is a problem (reported by the caller), not an exception: the other inputs
    still run. Duplicates (the same file reached twice) are kept once.
    """
    items: list[Item] = []
    problems: list[str] = []
    seen: set[str] = set()

    def add(path: Path, item_id: str) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            items.append(Item(path, item_id))

    for arg in args:
        path = Path(arg).expanduser()
        if path.is_file():
            add(path, path.name)
        elif path.is_dir():
            named = sorted(p for p in path.rglob("*") if p.suffix.lower() in extensions)
            found = [p for p in named if p.is_file()]
            problems += [f"{p}: {_not_a_file(p)}" for p in named if not p.is_file()]
            if not named:
                problems.append(f"{arg}: no {'/'.join(e.lstrip('.') for e in extensions[:4])}... files in this folder")
            for p in found:
                add(p, p.relative_to(path).as_posix())
        elif _has_glob(arg):
            root = _glob_root(arg)
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(arg), recursive=True) if Path(p).is_file())
            if not found:
                problems.append(f"{arg}: matches no file")
            for p in found:
                add(p, p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name)
        elif path.is_symlink() or path.exists():
            problems.append(f"{arg}: {_not_a_file(path)}")
        else:
            problems.append(f"{arg}: no such file")
    return items, problems


def _not_a_file(path: Path) -> str:
    """Why a path named like an input file cannot be read as one."""
    if path.is_symlink() and not path.exists():
        return f"a broken symbolic link (to {os.readlink(path)})"
    if path.is_dir():
        return "a folder, not a file"
    return "not a regular file"


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (hard links and symlinks included); False if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def plan_outputs(items: list[Item], output: str | None, out_dir: str | None, suffix: str) -> list[Path]:
    """One output path per item; raises MimiError on a clash or an output that is also an input."""
    if output is not None:
        if len(items) != 1:
            raise MimiError("-o/--output takes exactly one input; use --out-dir for several")
        outputs = [Path(output)]
    elif out_dir is not None:
        outputs = [Path(out_dir) / _with_suffix(Path(item.id), suffix) for item in items]
    else:
        outputs = [_with_suffix(item.path, suffix) for item in items]
    by_output: dict[str, Item] = {}
    for item, out in zip(items, outputs, strict=True):
        key = os.path.realpath(out)
        if key in by_output:
            fix = "rename one of them" if out_dir is not None else "use --out-dir, or rename one of them"
            raise MimiError(f"{by_output[key].path} and {item.path} would both write {out}: {fix}")
        by_output[key] = item
    inputs = [item.path for item in items]
    for out in outputs:
        clash = next((p for p in inputs if same_file(p, out)), None)
        if clash is not None:
            raise MimiError(f"output {out} is also an input: refusing to overwrite it")
    return outputs


def _with_suffix(path: Path, suffix: str) -> Path:
    return path.with_name(path.stem + suffix) if path.suffix else path.with_name(path.name + suffix)


# -- manifests ----------------------------------------------------------------------------------------------
def read_manifest(path: str | Path) -> list[Item]:
    """A list of inputs: one path per line (``#`` comments), or CSV / JSONL with a ``path`` column (and an
    optional ``id``). Relative paths are relative to the manifest's folder; ids default to the path as written.
    """
    import csv
    import json

    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MimiError(f"{path}: cannot read the manifest ({exc})") from exc
    entries: list[tuple[str, str | None]] = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MimiError(f"{path}:{n}: not JSON ({exc})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("path"), str):
                raise MimiError(f'{path}:{n}: each line needs a "path" string')
            entries.append((row["path"], row.get("id")))
    elif path.suffix.lower() in (".csv", ".tsv"):
        rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
        if not rows or "path" not in rows[0]:
            raise MimiError(f"{path}: a CSV manifest needs a header with a 'path' column")
        entries = [(row["path"], row.get("id") or None) for row in rows if row.get("path")]
    else:
        entries = [(line.strip(), None) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    items = []
    for entry, item_id in entries:
        file = Path(entry).expanduser()
        items.append(Item(file if file.is_absolute() else path.parent / file, str(item_id or Path(entry).as_posix())))
    return items


# -- planning -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clip:
    item: Item
    samples: int  # its length at the model's sample rate, from the file header (before resampling)


def probe(items: list[Item], sample_rate: int) -> tuple[list[Clip], list[tuple[Item, AudioError]]]:
    """Lengths from the audio headers (no decoding): (clips, [(item, error)] for the unreadable ones)."""
    import soundfile as sf

    clips, problems = [], []
    for item in items:
        if not item.path.is_file():  # libsndfile would only say "System error."
            missing = not (item.path.exists() or item.path.is_symlink())
            problems.append((item, AudioError(f"{item.path}: {'no such file' if missing else _not_a_file(item.path)}")))
            continue
        try:
            info = sf.info(str(item.path))
        except Exception as exc:  # soundfile raises several types for non-audio files
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            error = AudioError(f"{item.path}: not a readable audio file ({reason})")
            error.__cause__ = exc  # keeps the traceback for --debug
            problems.append((item, error))
            continue
        if info.frames <= 0:
            problems.append((item, AudioError(f"{item.path}: the file holds no audio (0 samples)")))
        else:
            clips.append(Clip(item, max(1, round(info.frames * sample_rate / info.samplerate))))
    return clips, problems


def plan_batches(clips: list[Clip], max_samples: int) -> list[list[Clip]]:
    """Length-bucketed batches, deterministically: clips sorted by (length, id), cut so that each batch's
    padded size (clips x its longest clip) stays under ``max_samples`` (a memory bound, not a clip count).
    The plan depends only on the clips, never on how many processes share it."""
    batches: list[list[Clip]] = []
    for clip in sorted(clips, key=lambda c: (c.samples, c.item.id)):
        if batches and (len(batches[-1]) + 1) * clip.samples <= max_samples:
            batches[-1].append(clip)
        else:
            batches.append([clip])
    return batches
