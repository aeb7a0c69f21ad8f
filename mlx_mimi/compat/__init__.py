"""Drop-ins for the other Mimi packages' Python APIs, on mlx-mimi: ``import mlx_mimi.compat.rustymimi as rustymimi``
or ``import mlx_mimi.compat.moshi_mlx as moshi_mlx`` runs a script written for them unchanged."""

import sys
from importlib import import_module

from ..errors import MimiError

PACKAGES = ("rustymimi", "moshi_mlx")


def install(*names: str) -> None:
    """Make ``import rustymimi`` / ``import moshi_mlx`` (and ``from moshi_mlx import models``) give the drop-ins, for
    scripts you would rather not edit: ``mlx_mimi.compat.install()`` before they import (default: both)."""
    for name in names or PACKAGES:
        if name not in PACKAGES:
            raise MimiError(f"no drop-in for {name!r}; there are: {', '.join(PACKAGES)}")
        module = import_module(f"{__name__}.{name}")
        sys.modules[name] = module
        if name == "moshi_mlx":
            sys.modules["moshi_mlx.models"] = module.models
