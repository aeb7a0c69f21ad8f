"""The ``mimi`` command line: a package of small command modules on one group (app.py), no model logic here.

Every error is one line on stderr (``error: ...``) and exit code 1, usage errors included; ``--debug`` shows
tracebacks. Outputs are written atomically; an output that is also an input is refused before any work; in
a many-file run a bad file is reported and skipped, the others complete, and the exit code is 1.
"""

from . import convert, encode, info, live  # noqa: F401  (each registers its commands on the group)
from .app import main

__all__ = ["main"]
