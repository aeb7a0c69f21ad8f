"""Resolve a model reference (hub repo id, local folder or .safetensors file) to local files.

One rule picks Mimi's files from a list of file names, whether the list comes from a local folder, a cached
hub snapshot or the hub itself (before anything large is downloaded):

1. A ``config.json`` naming ``mimi_name`` is a Kyutai LM repo (moshi, stt, tts): Mimi is that file.
2. Otherwise a file with one of Kyutai's names for Mimi (``tokenizer-e351c8d8-checkpoint125.safetensors``,
   ``mimi-pytorch-e351c8d8@125.safetensors``) is Mimi, whatever else the repo holds (its
   ``model.safetensors`` is then a language model).
3. Otherwise a ``config.json`` with a Mimi ``codec_config`` (transformers' KyutaiSpeechToText and Csm) or
   ``audio_encoder_config`` (Moshi) is a combined checkpoint: Mimi is its ``codec_model.`` / ``audio_encoder.``
   tensors, in the shards ``model.safetensors.index.json`` names for them (or ``model.safetensors``); the language
   model's shards are neither downloaded nor read.
4. Otherwise ``model.safetensors`` with a Mimi ``config.json`` (Hugging Face layout, or mlx-mimi's own).
5. Otherwise the only ``.safetensors`` file, if its header (read without downloading the file) is a Mimi
   checkpoint.

Kyutai's files never come with a Mimi config: they are ``kyutai/mimi``'s architecture, the documented
default. A Hugging Face layout file without its config is an error (``load.load_model`` decides that).

The hub is probed once with a short timeout before any download: unreachable means the local cache
answers at once (as with ``HF_HUB_OFFLINE=1``), instead of huggingface_hub's minute of retries.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import HF, detect_layout, is_model_config, layout_of
from .errors import ConfigError, ModelNotFoundError, WeightsError

DEFAULT_MODEL = "kyutai/mimi"
KYUTAI_MIMI_FILES = ("tokenizer-e351c8d8-checkpoint125.safetensors", "mimi-pytorch-e351c8d8@125.safetensors")
KYUTAI_TOKENIZER_FILE = KYUTAI_MIMI_FILES[0]
HUB_TIMEOUT_ENV = "MLX_MIMI_HUB_TIMEOUT"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9_]$")


# transformers' speech models keep their Mimi under a prefix, with its config inside theirs:
# KyutaiSpeechToText / Csm as `codec_model` (codec_config), Moshi as `audio_encoder` (audio_encoder_config).
COMBINED = {"codec_config": "codec_model.", "audio_encoder_config": "audio_encoder."}
SHARD_INDEX = "model.safetensors.index.json"


@dataclass
class ResolvedModel:
    weights: Path  # the checkpoint file (the first shard, for a combined checkpoint)
    config: Path | None  # a Mimi config.json, or None (Kyutai's files, or a converted file that embeds it)
    model_id: str
    revision: str | None = None
    shards: list[Path] = field(default_factory=list)  # every file that holds the codec's tensors (default: weights)
    prefix: str = ""  # where the codec's tensors are in a combined checkpoint ("codec_model.")
    config_data: dict | None = None  # the codec's config inside a combined checkpoint's config.json

    def __post_init__(self) -> None:
        self.shards = self.shards or [self.weights]


@dataclass
class _Choice:
    """What ``_choose`` picked from a listing."""

    weights: list[str]
    config: str | None = None
    prefix: str = ""
    config_data: dict | None = None


@dataclass
class _Listing:
    """A repo's or folder's file names, with ways to read a small file and a safetensors header."""

    where: str
    files: list[str]
    read_json: Callable[[str], Any]
    header: Callable[[str], tuple[list[str], dict]]
    folder: Path | None = None  # where the files already are (a local folder or cached snapshot)


def _combined(listing: _Listing, config: Any) -> _Choice | None:
    """A transformers speech model's checkpoint with a Mimi inside: its config and the files holding its tensors
    (from the shard index: the language model's shards are never read), or None for anything else."""
    if not isinstance(config, dict):
        return None
    found = [
        (key, prefix)
        for key, prefix in COMBINED.items()
        if isinstance(config.get(key), dict)
        and is_model_config(config[key])
        and config[key].get("model_type", "mimi") == "mimi"
    ]
    if not found:
        return None
    key, prefix = found[0]
    codec = config[key]
    files = set(listing.files)
    if SHARD_INDEX in files:
        index = listing.read_json(SHARD_INDEX)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise WeightsError(f"{listing.where}: {SHARD_INDEX} has no weight_map")
        shards = sorted({str(f) for name, f in weight_map.items() if name.startswith(prefix)})
    else:
        shards = ["model.safetensors"] if "model.safetensors" in files else []
    if not shards:
        raise WeightsError(f"{listing.where}: config.json has a {key}, but no checkpoint file holds {prefix}* tensors")
    missing = [f for f in shards if f not in files]
    if missing:
        raise ModelNotFoundError(f"{listing.where}: the checkpoint's shard {missing[0]} is not there")
    return _Choice(shards, None, prefix, codec)


def _choose(listing: _Listing) -> _Choice:
    """The Mimi files of a listing, by the rules in the module docstring."""
    files = set(listing.files)
    config = listing.read_json("config.json") if "config.json" in files else None
    if isinstance(config, dict) and "mimi_name" in config:
        name = str(config["mimi_name"])
        if config.get("mimi_config_name"):
            raise WeightsError(
                f"{listing.where}: config.json names a custom Mimi config ({config['mimi_config_name']}), "
                "which mlx-mimi does not read"
            )
        if name not in files:
            raise ModelNotFoundError(f"{listing.where}: config.json names Mimi file {name!r}, which is not there")
        return _Choice([name])
    for name in KYUTAI_MIMI_FILES:
        if name in files:
            return _Choice([name])
    combined = _combined(listing, config)
    if combined is not None:
        return combined
    mimi_config = "config.json" if is_model_config(config) else None
    if "model.safetensors" in files and mimi_config:
        return _Choice(["model.safetensors"], mimi_config)
    candidates = (
        ["model.safetensors"]
        if "model.safetensors" in files
        else sorted(f for f in files if f.endswith(".safetensors"))
    )
    if not candidates:
        raise ModelNotFoundError(f"{listing.where}: no .safetensors file")
    if len(candidates) > 1:
        raise ModelNotFoundError(f"{listing.where}: several .safetensors files; name one: {', '.join(candidates)}")
    names, metadata = listing.header(candidates[0])
    try:
        detect_layout(names, metadata)
    except WeightsError:
        raise WeightsError(
            f"{listing.where}: {candidates[0]} is not a Mimi checkpoint (first tensors: {', '.join(sorted(names)[:3])})"
        ) from None
    return _Choice([candidates[0]], mimi_config)


def safetensors_header(path: Path) -> tuple[list[str], dict]:
    """Tensor names and metadata from a local .safetensors file's header, without reading the tensors."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error) as exc:
        raise WeightsError(f"cannot read {path}: not a safetensors file ({exc})") from exc
    metadata = header.pop("__metadata__", {}) or {}
    return list(header), metadata


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON config ({exc})") from exc


def _folder_listing(folder: Path, where: str) -> _Listing:
    return _Listing(
        where,
        sorted(p.name for p in folder.iterdir() if p.is_file()),
        lambda name: _read_json(folder / name),
        lambda name: safetensors_header(folder / name),
        folder,
    )


def _resolved(choice: _Choice, where, model_id: str, revision: str | None) -> ResolvedModel:
    """``where(name)``: the local path of a listed file (downloading it from the hub if need be)."""
    shards = [where(name) for name in choice.weights]
    config = where(choice.config) if choice.config else None
    return ResolvedModel(shards[0], config, model_id, revision, shards, choice.prefix, choice.config_data)


def _from_folder(folder: Path, model_id: str, revision: str | None = None) -> ResolvedModel:
    choice = _choose(_folder_listing(folder, str(folder)))
    return _resolved(choice, lambda name: folder / name, model_id, revision)


def _from_file(path: Path) -> ResolvedModel:
    if path.suffix.lower() != ".safetensors":
        raise ModelNotFoundError(
            f"{path}: not a model checkpoint (give a .safetensors file, a model folder or a hub repo id)"
        )
    sibling = path.parent / "config.json"
    config = sibling if sibling.is_file() and is_model_config(_read_json(sibling)) else None
    return ResolvedModel(path, config, str(path))


def _check_reference(model: Any) -> str:
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str):
        raise ModelNotFoundError(
            f"model must be a hub repo id, a folder or a .safetensors path, got {type(model).__name__} {model!r}"
        )
    if not model.strip():
        raise ModelNotFoundError("model reference is empty: give a hub repo id, a folder or a .safetensors path")
    return model


def _looks_local(ref: str) -> bool:
    """A reference that names a path: explicit path syntax, or a first component that exists here."""
    if ref.startswith((".", "/", "~")) or ref.endswith((".safetensors", ".json")) or "\\" in ref:
        return True
    first = ref.split("/", 1)[0]
    return ref.count("/") != 1 or Path(first).exists()


def resolve(model: Any = DEFAULT_MODEL, revision: str | None = None, cache_dir: str | None = None) -> ResolvedModel:
    """Local paths win; anything shaped like ``org/name`` whose ``org`` is not a local folder is a hub repo id."""
    ref = _check_reference(model)
    path = Path(ref).expanduser()
    if path.is_file():
        return _from_file(path)
    if path.is_dir():
        return _from_folder(path, str(path))
    if _looks_local(ref) or not _REPO_ID.match(ref):
        parent = path.parent
        what = "no such file or folder" if parent.is_dir() or str(parent) == "." else f"no such folder: {parent}"
        raise ModelNotFoundError(f"model {ref!r}: {what} (and not a hub repo id of the form org/name)")
    return _from_hub(ref, revision, cache_dir)


# -- the hub ----------------------------------------------------------------------------------------------
def _hub_timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(HUB_TIMEOUT_ENV, "3")))
    except ValueError:
        return 3.0


def hub_unreachable() -> str | None:
    """None if the hub answers within the timeout, else why not (offline mode, DNS, timeout ...)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=_hub_timeout())
    except Exception as exc:  # any transport error: DNS, refused, timeout, proxy
        return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return None


def _from_hub(repo_id: str, revision: str | None, cache_dir: str | None) -> ResolvedModel:
    offline = hub_unreachable()
    listing = (
        _cached_listing(repo_id, revision, cache_dir, offline)
        if offline
        else _hub_listing(repo_id, revision, cache_dir)
    )
    choice = _choose(listing)
    if offline and not choice.prefix:
        _check_cached_choice(listing, repo_id, choice.weights[0], choice.config, offline)
    if listing.folder is not None:
        folder = listing.folder
        return _resolved(choice, lambda name: folder / name, repo_id, revision)
    from huggingface_hub import hf_hub_download

    def fetch(name: str) -> Path:
        try:
            return Path(hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir))
        except Exception as exc:
            raise ModelNotFoundError(f"cannot download {name} from {repo_id!r}: {_first_line(exc)}") from exc

    return _resolved(choice, fetch, repo_id, revision)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]


def _hub_listing(repo_id: str, revision: str | None, cache_dir: str | None) -> _Listing:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi()
    try:
        files = api.list_repo_files(repo_id, revision=revision)
    except GatedRepoError as exc:
        raise ModelNotFoundError(f"hub repo {repo_id!r} is gated: accept its terms and log in (hf auth login)") from exc
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(f"no hub repo {repo_id!r} (or it is private: log in with hf auth login)") from exc
    except RevisionNotFoundError as exc:
        raise ModelNotFoundError(f"hub repo {repo_id!r} has no revision {revision!r}") from exc
    except Exception as exc:
        raise ModelNotFoundError(f"cannot list hub repo {repo_id!r}: {_first_line(exc)}") from exc

    def read_json(name: str) -> Any:
        try:
            path = Path(hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir))
        except Exception as exc:  # gated, HTTP errors: one line naming the repo and file
            raise ModelNotFoundError(f"cannot download {name} from {repo_id!r}: {_first_line(exc)}") from exc
        return _read_json(path)

    def header(name: str) -> tuple[list[str], dict]:
        try:
            meta = api.parse_safetensors_file_metadata(repo_id, name, revision=revision)
        except Exception as exc:
            raise WeightsError(f"cannot read the header of {name} in {repo_id!r}: {_first_line(exc)}") from exc
        return list(meta.tensors), dict(meta.metadata or {})

    return _Listing(f"hub repo {repo_id}", files, read_json, header)


def _cached_listing(repo_id: str, revision: str | None, cache_dir: str | None, why: str) -> _Listing:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True))
    except Exception as exc:
        raise ModelNotFoundError(
            f"model {repo_id!r} is not in the local cache and the hub cannot be reached ({why})"
        ) from exc
    return _folder_listing(folder, f"{folder} (cached {repo_id}, hub unreachable: {why})")


def _check_cached_choice(listing: _Listing, repo_id: str, weights: str, config: str | None, why: str) -> None:
    """A cached Hugging Face layout file without its config.json: the download was partial, never a guess."""
    if config is None and layout_of(*listing.header(weights)) == HF:
        raise ModelNotFoundError(f"the cached {repo_id!r} lacks its config.json and the hub cannot be reached ({why})")
