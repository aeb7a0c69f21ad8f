"""mlx-mimi: Kyutai's Mimi neural audio codec in MLX, with the PyTorch reference's codes."""

from . import backend as _backend

_backend.load_blas()  # before mlx.core is imported anywhere: see backend.py

from .config import MimiConfig  # noqa: E402
from .errors import (  # noqa: E402
    AudioError,
    CodesError,
    CodesFileError,
    ConfigError,
    DeviceError,
    MimiError,
    ModelNotFoundError,
    PerformanceWarning,
    WeightsError,
)
from .jodio import Jodio, JodioConfig  # noqa: E402
from .load import load_model  # noqa: E402
from .model import Mimi  # noqa: E402
from .schedule import Schedule, cpu_schedule, gpu_schedule  # noqa: E402
from .version import __version__  # noqa: E402

load = load_model


def __getattr__(name: str):
    # the 9-codebook variant's tools, imported on first use (mlx.optimizers is not needed to encode)
    if name == "train_heads":
        from .train import train_heads

        return train_heads
    if name == "nine_codebooks":
        from .variant import nine_codebooks

        return nine_codebooks
    raise AttributeError(f"module 'mlx_mimi' has no attribute {name!r}")


__all__ = [
    "AudioError",
    "CodesError",
    "CodesFileError",
    "ConfigError",
    "DeviceError",
    "Jodio",
    "JodioConfig",
    "Mimi",
    "MimiConfig",
    "MimiError",
    "ModelNotFoundError",
    "PerformanceWarning",
    "Schedule",
    "WeightsError",
    "__version__",
    "cpu_schedule",
    "gpu_schedule",
    "load",
    "load_model",
    "nine_codebooks",
    "train_heads",
]
