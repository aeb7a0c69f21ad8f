"""The one place mlx-mimi calls ``mx.compile``: compiled functions that see the current weights, one per thread.

Two facts of ``mx.compile`` (MLX 0.32) shape this module:

- **Arrays that are not arguments are constants.** A compiled function that reads a model's weights from the
  model keeps the weights of its first trace: change a codebook in place (training, a resumed checkpoint,
  ``quantize`` after use, ``model.update``) and it still computes with the old one. ``WeightsCompiled`` passes
  the model's weights in as an argument at every call, and the traced code runs on a structural copy of the
  model that holds those arguments, so the model itself is never touched by a trace (other threads may use it
  meanwhile) and every call sees the weights the model holds at that moment.
- **Compile caches are per thread and die with the thread.** MLX keeps one compile cache per OS thread; its
  entries hold Python objects, and the cache is destroyed after the Python thread has finished. If the
  interpreter is exiting at that moment, taking the GIL to release them ends the thread inside a C++
  destructor: ``terminate called without an active exception``, exit code 134, for any script that used a
  compiled function in a worker thread (reproduced with plain MLX 0.32.4: README, "Threads"). Here every
  compiled object belongs to one thread (``threading.local``): when a thread finishes, Python drops its
  compiled objects in that thread, while it still holds the GIL, and MLX erases their entries then, so the
  cache is empty when the thread's C++ state is destroyed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn


def weights_of(obj: Any) -> Any:
    """The tree of arrays of a module (nested dicts and lists, as ``Module.parameters()``), built faster."""
    if isinstance(obj, mx.array):
        return obj
    if isinstance(obj, dict):
        return {k: weights_of(v) for k, v in obj.items() if isinstance(v, (mx.array, dict, list))}
    if isinstance(obj, list):
        return [weights_of(v) for v in obj]
    return None


def with_weights(obj: Any, tree: Any) -> Any:
    """A structural copy of a module whose arrays are those of ``tree`` (``weights_of``'s shape); the module is
    not modified. Modules are copied shallowly (their plain attributes shared), arrays replaced."""
    if isinstance(obj, mx.array):
        return tree
    if isinstance(obj, nn.Module):
        new = obj.__class__.__new__(obj.__class__)
        new.__dict__.update(obj.__dict__)
        for key, value in obj.items():
            dict.__setitem__(new, key, with_weights(value, tree[key]) if key in tree else value)
        return new
    if isinstance(obj, dict):
        return {k: with_weights(v, tree[k]) if k in tree else v for k, v in obj.items()}
    if isinstance(obj, list):
        return [with_weights(v, t) for v, t in zip(obj, tree, strict=True)]
    return obj


class PerThread:
    """``mx.compile(fn)``, compiled separately in each thread that calls it (see the module docstring)."""

    def __init__(self, fn: Callable, shapeless: bool = False):
        self._fn = fn
        self._shapeless = shapeless
        self._local = threading.local()

    def __call__(self, *args):
        compiled = getattr(self._local, "compiled", None)
        if compiled is None:
            compiled = self._local.compiled = mx.compile(self._fn, shapeless=self._shapeless)
        return compiled(*args)


def per_thread(fn: Callable | None = None, *, shapeless: bool = False):
    """Decorator form of ``PerThread``: ``@per_thread`` or ``@per_thread(shapeless=True)``."""
    if fn is None:
        return lambda f: PerThread(f, shapeless)
    return PerThread(fn, shapeless)


class WeightsCompiled:
    """``fn(module, *args)`` compiled, with ``module``'s current weights passed in at every call.

    Inside the trace ``fn`` receives a structural copy of the module holding the traced weights. Non-array
    arguments (ints, strings, None) are part of the compiled function's key, as ``mx.compile`` makes them.
    ``parts``: the module's children whose weights ``fn`` reads (default: all); only those are passed.
    ``traces`` counts how often ``fn`` was traced (once per thread and input signature, and again after the
    weights change shape or structure, as quantization does).
    """

    def __init__(self, module: nn.Module, fn: Callable, parts: tuple[str, ...] | None = None):
        self._module = module
        self._fn = fn
        self._parts = parts
        self._local = threading.local()
        self._lock = threading.Lock()
        self.traces = 0

    def _traced(self, weights, *args):
        with self._lock:
            self.traces += 1  # Python runs here only while mx.compile traces
        return self._fn(with_weights(self._module, weights), *args)

    def compiled(self) -> Callable:
        """A new compiled object of this function (its caller keeps it in one thread)."""
        return mx.compile(self._traced)

    def __call__(self, *args):
        compiled = getattr(self._local, "compiled", None)
        if compiled is None:
            compiled = self._local.compiled = self.compiled()
        return compiled(self.weights(), *args)

    def weights(self) -> dict:
        if self._parts is None:
            return weights_of(self._module)
        return {name: weights_of(self._module[name]) for name in self._parts if name in self._module}


class CompiledLRU(WeightsCompiled):
    """``WeightsCompiled`` with one compiled object per key (e.g. an input shape), at most ``size`` per thread:
    an evicted one releases its traces. For calls whose shapes vary without bound (last chunks of any length)."""

    def __init__(self, module: nn.Module, fn: Callable, size: int = 16):
        super().__init__(module, fn)
        self._size = size

    def __call__(self, key: Any, *args):
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        compiled = cache.pop(key, None) or self.compiled()
        cache[key] = compiled
        while len(cache) > self._size:
            cache.popitem(last=False)
        return compiled(self.weights(), *args)
