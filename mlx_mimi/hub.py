"""Resolve a model reference (hub repo id, local folder or .safetensors file) to local files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "kyutai/mimi"
# Kyutai's own repos (moshi, stt, tts) ship Mimi as this file, with no config.json.
KYUTAI_TOKENIZER_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"


class ModelNotFoundError(FileNotFoundError):
    """The model reference names no local file, folder or reachable/cached hub repository."""


@dataclass
class ResolvedModel:
    weights: Path
    config: Path | None
    model_id: str
    revision: str | None = None


def _from_folder(folder: Path, model_id: str, revision: str | None = None) -> ResolvedModel:
    config = folder / "config.json"
    if (folder / "model.safetensors").is_file():
        return ResolvedModel(folder / "model.safetensors", config if config.is_file() else None, model_id, revision)
    files = sorted(folder.glob("*.safetensors"))
    if len(files) == 1:
        return ResolvedModel(files[0], config if config.is_file() else None, model_id, revision)
    if not files:
        raise ModelNotFoundError(f"no .safetensors file in {folder}")
    raise ModelNotFoundError(f"several .safetensors files in {folder}; name one: {', '.join(f.name for f in files)}")


def _optional(fetch, name: str) -> Path | None:
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return fetch(name)
    except EntryNotFoundError:
        return None


def resolve(
    model: str | Path = DEFAULT_MODEL, revision: str | None = None, cache_dir: str | None = None
) -> ResolvedModel:
    """Local paths win; anything else is a hub repo id fetched (or found in the cache) by huggingface_hub.

    ``HF_HUB_OFFLINE=1`` and ``HF_HOME``/``HF_HUB_CACHE`` are honoured by huggingface_hub itself.
    """
    path = Path(model).expanduser()
    if path.is_file():
        config = path.parent / "config.json"
        return ResolvedModel(path, config if config.is_file() else None, str(path))
    if path.is_dir():
        return _from_folder(path, str(path))
    repo_id = str(model)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/")) or repo_id.endswith(".safetensors"):
        raise ModelNotFoundError(f"model {repo_id!r} is neither a local file or folder nor a hub repo id")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    def fetch(name: str) -> Path:
        return Path(hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir))

    try:
        try:
            weights = fetch("model.safetensors")
            config = _optional(fetch, "config.json")
        except EntryNotFoundError:  # also raised offline when the file is not cached
            weights, config = fetch(KYUTAI_TOKENIZER_FILE), None
    except LocalEntryNotFoundError as exc:
        raise ModelNotFoundError(
            f"model {repo_id!r} is not in the local cache and the hub cannot be reached (offline, or HF_HUB_OFFLINE=1)"
        ) from exc
    except Exception as exc:  # RepositoryNotFoundError, GatedRepoError, HTTP errors ...
        raise ModelNotFoundError(f"cannot fetch model {repo_id!r}: {exc}".splitlines()[0]) from exc
    return ResolvedModel(weights, config, repo_id, revision)
