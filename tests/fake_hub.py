"""A local fake of the Hugging Face Hub's HTTP API: just what huggingface_hub's model downloads use.

Standard library only (``http.server`` in a daemon thread). Each repo holds one commit, reachable as ``main``
or by its commit hash, and serves its files itself (no redirect to a CDN, no Xet). Use it with ``pointed_at``::

    with FakeHub({"kyutai/mimi": {"config.json": b"{}", "model.safetensors": path}}) as hub, pointed_at(hub.endpoint):
        HfApi().list_repo_files("kyutai/mimi")
        assert hub.bytes_served("kyutai/mimi", "model.safetensors") == 0

Every request is recorded in ``hub.requests``. Errors carry the ``X-Error-Code`` header that huggingface_hub's
``hf_raise_for_status`` turns into ``RepositoryNotFoundError``, ``RevisionNotFoundError`` or
``RemoteEntryNotFoundError`` (an ``EntryNotFoundError``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Stored in Git LFS by the hub's default .gitattributes: served with X-Linked-Etag (sha256) and X-Linked-Size.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".npz", ".gguf")
_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
_TREE = re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CHUNK = 1 << 20


@dataclass
class _File:
    data: bytes | Path
    size: int
    git_oid: str  # sha1 of the git blob
    sha256: str
    lfs: bool

    @classmethod
    def of(cls, name: str, data: bytes | Path) -> _File:
        size = len(data) if isinstance(data, bytes) else Path(data).stat().st_size
        git, sha = hashlib.sha1(b"blob %d\0" % size), hashlib.sha256()
        for chunk in _chunks(data, 0, size):
            git.update(chunk)
            sha.update(chunk)
        return cls(data, size, git.hexdigest(), sha.hexdigest(), name.endswith(LFS_SUFFIXES))

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


def _chunks(data: bytes | Path, start: int, stop: int) -> Iterator[bytes]:
    if isinstance(data, bytes):
        for i in range(start, stop, _CHUNK):
            yield data[i : min(stop, i + _CHUNK)]
        return
    with open(data, "rb") as f:
        f.seek(start)
        while start < stop:
            chunk = f.read(min(_CHUNK, stop - start))
            if not chunk:
                raise OSError(f"{data} shrank while being served")
            start += len(chunk)
            yield chunk


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, stop) for a ``Range: bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` header; None: the whole file.

    Raises ValueError for an unsatisfiable range (answered 416)."""
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header or "")
    if not m or m.groups() == ("", ""):
        return None
    first, last = m.groups()
    if not first:
        start, stop = max(0, size - int(last)), size
    else:
        start, stop = int(first), min(size, int(last) + 1) if last else size
    if start >= stop:
        raise ValueError(header)
    return start, stop


class FakeHub:
    """The fake hub: ``repos`` maps a repo id to {file name in the repo: its bytes, or a local file to serve}."""

    def __init__(self, repos: dict[str, dict[str, bytes | Path]], revision: str = DEFAULT_COMMIT):
        self.revision = revision
        self.repos = {repo: {n: _File.of(n, data) for n, data in files.items()} for repo, files in repos.items()}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeHub:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.hub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def bytes_served(self, repo_id: str, filename: str) -> int:
        """Body bytes sent for this file, all revisions and requests together (HEAD: 0, ranged GET: the range)."""
        with self._lock:
            return sum(r["bytes_sent"] for r in self.requests if (r["repo_id"], r["filename"]) == (repo_id, filename))

    def _record(self, **request: Any) -> dict[str, Any]:
        request.update(bytes_sent=0, repo_id=None, filename=None)
        with self._lock:
            self.requests.append(request)
        return request


class _Handler(http.server.BaseHTTPRequestHandler):
    """One request. HTTP/1.0: the connection closes after each answer, so no pooled connection outlives the hub."""

    server_version = "FakeHub/1.0"

    def log_message(self, *args: Any) -> None:  # no per-request line on stderr
        pass

    @property
    def hub(self) -> FakeHub:
        return self.server.hub  # type: ignore[attr-defined]

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        path = urlsplit(self.path).path
        self.record = self.hub._record(method=self.command, path=self.path, range=self.headers.get("Range"))
        if path in ("", "/"):
            return self._send(200, b"fake hub\n", {"Content-Type": "text/plain"})
        if self.command == "GET" and (m := _TREE.match(path)):
            return self._tree(unquote(m["repo"]), unquote(m["rev"]), unquote(m["path"] or "").strip("/"))
        if m := _RESOLVE.match(path):
            return self._resolve(unquote(m["repo"]), unquote(m["rev"]), unquote(m["path"]))
        self._send(404, b'{"error": "Not Found"}', {"Content-Type": "application/json"})

    def _repo(self, repo_id: str, revision: str) -> dict[str, _File] | None:
        """The repo's files at revision, or None once a RepoNotFound / RevisionNotFound error is sent."""
        if repo_id not in self.hub.repos:
            self._error("RepoNotFound", "Repository not found")
        elif revision not in ("main", self.hub.revision):
            self._error("RevisionNotFound", f"Invalid rev id: {revision}")
        else:
            return self.hub.repos[repo_id]
        return None

    def _tree(self, repo_id: str, revision: str, folder: str) -> None:
        """``GET /api/models/{repo_id}/tree/{revision}[/{folder}]?recursive=...``: ``HfApi.list_repo_tree`` and
        ``list_repo_files`` (which asks ``recursive=True``). One page: no ``Link: <...>; rel="next"`` header."""
        files = self._repo(repo_id, revision)
        if files is None:
            return
        recursive = parse_qs(urlsplit(self.path).query).get("recursive", ["false"])[-1].lower() in ("true", "1")
        prefix = f"{folder}/" if folder else ""
        folders = {"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)}
        if folder and folder not in folders:
            return self._error("EntryNotFound", f"{folder} does not exist on {revision}")
        entries = []
        for name in sorted(folders | set(files)):
            if not name.startswith(prefix) or (not recursive and "/" in name[len(prefix) :]):
                continue
            if name in folders:
                oid = hashlib.sha1(name.encode()).hexdigest()
                entries.append({"type": "directory", "oid": oid, "size": 0, "path": name})
                continue
            f = files[name]
            entry = {"type": "file", "oid": f.git_oid, "size": f.size, "path": name}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entries.append(entry)
        self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"})

    def _resolve(self, repo_id: str, revision: str, filename: str) -> None:
        """``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}``: ``hf_hub_download`` (its metadata HEAD, then
        the GET of the file) and ``HfApi.parse_safetensors_file_metadata`` (GETs with ``Range: bytes=a-b``)."""
        self.record.update(repo_id=repo_id, filename=filename)
        files = self._repo(repo_id, revision)
        if files is None:
            return
        if filename not in files:
            return self._error("EntryNotFound", f"{filename} does not exist on {revision}")
        f = files[filename]
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{f.etag}"',
            "X-Repo-Commit": self.hub.revision,
        }
        if f.lfs:
            headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})
        try:
            span = _byte_range(self.headers.get("Range"), f.size)
        except ValueError:
            return self._send(416, b"", {**headers, "Content-Range": f"bytes */{f.size}"})
        if span is None:
            return self._send(200, _chunks(f.data, 0, f.size), headers, f.size)
        start, stop = span
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{f.size}"
        self._send(206, _chunks(f.data, start, stop), headers, stop - start)

    def _error(self, code: str, message: str) -> None:
        """404 with the ``X-Error-Code`` that ``hf_raise_for_status`` maps to a huggingface_hub error class."""
        headers = {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}
        if code == "EntryNotFound":
            headers["X-Repo-Commit"] = self.hub.revision  # lets hf_hub_download cache the file's absence
        self._send(404, json.dumps({"error": message}).encode(), headers)

    def _send(self, status: int, body: bytes | Iterator[bytes], headers: dict[str, str], length: int = -1) -> None:
        chunks = [body] if isinstance(body, bytes) else body
        length = len(body) if isinstance(body, bytes) else length
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(length)}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        # Counted before sending, so that a client holding the whole body also sees it in hub.requests.
        self.record["bytes_sent"] = length
        sent = 0
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:  # the client went away: count what it got
            self.record["bytes_sent"] = sent


@contextlib.contextmanager
def pointed_at(endpoint: str) -> Iterator[str]:
    """Point huggingface_hub at ``endpoint`` (and out of offline mode) for the duration; restore on exit.

    huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once, at import, into ``constants``; everything
    else reads ``constants`` at call time except the download URL template (built from ``ENDPOINT`` at import and
    used by ``hf_hub_url``) and the module-level ``HfApi`` behind ``huggingface_hub.list_repo_files`` & co. An
    ``HfApi()`` takes ``constants.ENDPOINT`` when constructed: construct it inside the block.
    """
    from huggingface_hub import constants, hf_api

    endpoint = endpoint.rstrip("/")
    patches = [
        (constants, "ENDPOINT", endpoint),
        (constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"),
        (constants, "HF_HUB_OFFLINE", False),
        (hf_api.api, "endpoint", endpoint),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield endpoint
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
