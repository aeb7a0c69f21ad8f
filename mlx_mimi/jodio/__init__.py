"""JODIO, the second codec (seed 002's module dump): config, layers, checkpoint layout, model."""

from .config import JodioConfig
from .model import Jodio

__all__ = ["Jodio", "JodioConfig"]
