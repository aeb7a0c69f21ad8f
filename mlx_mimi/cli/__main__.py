"""``python -m mlx_mimi.cli``: the same as the ``mimi`` script."""

from . import main

main()
