"""Drop-ins for the other Mimi packages' Python APIs, on mlx-mimi: ``import mlx_mimi.compat.rustymimi as rustymimi``
or ``import mlx_mimi.compat.moshi_mlx as moshi_mlx`` runs a script written for them unchanged."""
