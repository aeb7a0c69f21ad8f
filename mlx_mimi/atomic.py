"""Atomic file writes: a temp file in the target's folder, renamed into place only once complete."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[str], None], keep_suffix: bool = True) -> Path:
    """Call ``write(tmp_path)`` then rename to ``path``; on any error the temp file is removed.

    The temp name keeps the target's suffix, so writers that pick a format from it (soundfile,
    ``mx.save_safetensors``) behave as for the final name; ``keep_suffix=False`` ends it in ``.partial`` instead
    (so that a glob for the final files, e.g. ``*.parquet``, can never pick up a temp file). An interrupted run
    never leaves a truncated file under the final name.
    The temp file is created with mode 0666 filtered by the process umask, as ``open()`` would create the
    target (``tempfile.mkstemp`` would make every output 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        suffix = path.suffix if keep_suffix else ""
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.partial{suffix}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    mode = os.stat(tmp).st_mode  # 0666 minus the umask, as the kernel applied it
    try:
        write(str(tmp))
        os.chmod(tmp, mode)  # some writers (safetensors) recreate the file 0600
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path
