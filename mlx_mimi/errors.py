"""The exceptions mlx-mimi raises: one base class, so callers can catch every expected failure at once."""

from __future__ import annotations


class MimiError(ValueError):
    """Bad input to mlx-mimi: wrong shape, dtype, values, arguments or configuration."""


class ConfigError(MimiError):
    """A config.json (or config dict) whose fields have the wrong type or an impossible value."""


class WeightsError(MimiError):
    """A checkpoint that does not fit the model: missing, unexpected or mis-shaped tensors."""


class ModelNotFoundError(MimiError, FileNotFoundError):
    """The model reference names no local file, folder, or reachable/cached hub repository."""


class AudioError(MimiError):
    """An audio file that cannot be read or holds no usable audio."""


class CodesFileError(MimiError):
    """A codes file that is unreadable, from another format, or holds invalid codes."""


class DeviceError(MimiError, RuntimeError):
    """No usable audio device, or the device failed mid-stream."""
