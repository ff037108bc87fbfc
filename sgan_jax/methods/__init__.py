"""The GAN-based semi-supervised methods, one module each, found by `config.method`."""

# `config.method = "x"` runs sgan_jax/methods/x.py's METHOD: adding a module adds a method, and
# nothing else lists them.

import functools
import importlib
import pkgutil

from sgan_jax.methods.base import Method
from sgan_jax.runs.errors import ConfigError

# Modules of this package that are libraries of the methods, not methods.
_LIBRARIES = ("base", "losses")


def names() -> tuple[str, ...]:
    """Every method's name, in alphabetical order."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _LIBRARIES))


@functools.cache
def get(name: str) -> Method:
    """The method `name`, or a ConfigError naming `method` and the methods there are."""
    if name not in names():
        raise ConfigError("method", f"must be one of {', '.join(names())}; got {name!r}")
    return importlib.import_module(f"{__name__}.{name}").METHOD
