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
    """Audio that cannot be encoded: an unreadable file, or samples of the wrong shape, dtype or values (NaN),
    or none at all."""


class CodesError(MimiError):
    """Codes that cannot be decoded: the wrong shape, dtype, codebook count or values out of range."""


class CodesFileError(CodesError):
    """A codes file that is unreadable, from another format, or holds invalid codes."""


class DeviceError(MimiError, RuntimeError):
    """No usable audio device, or the device failed mid-stream."""


class PerformanceWarning(UserWarning):
    """A setting that works but runs much slower on this device than the user may expect."""
