"""The package version, on the lowest floor: the package face and the dataset writer both read it."""

__version__ = "0.1.0"
