"""Inputs for the many-file commands: expand files, folders and globs; plan outputs safely.

Every input gets an id: its path relative to the root it was found under (the folder given, the static
prefix of a glob, or just the file name for a file given by name). Outputs under ``--out-dir`` mirror the
ids, so ``d1/x.wav`` and ``d2/x.wav`` under two different roots are the only way two outputs can clash,
and clashes are refused before any work, as is any output that is also an input.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import MimiError

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
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            if not found:
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
        else:
            problems.append(f"{arg}: no such file")
    return items, problems


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
            raise MimiError(f"{by_output[key].path} and {item.path} would both write {out}: use --out-dir or rename")
        by_output[key] = item
    inputs = [item.path for item in items]
    for out in outputs:
        clash = next((p for p in inputs if same_file(p, out)), None)
        if clash is not None:
            raise MimiError(f"output {out} is also an input: refusing to overwrite it")
    return outputs


def _with_suffix(path: Path, suffix: str) -> Path:
    return path.with_name(path.stem + suffix) if path.suffix else path.with_name(path.name + suffix)
