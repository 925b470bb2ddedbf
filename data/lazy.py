"""Packages whose public names load on first use (PEP 562), so that importing them costs nothing.

``import data.files`` (what the command line needs to check a file name) must not load numpy,
OpenCV or torch; nor may ``import carve``. Such a package keeps a literal ``_EXPORTS`` table,
public name -> defining module (tests/test_imports.py reads it to see the real import edges), and
hands it to :func:`lazy_attributes`.
"""
from __future__ import annotations

import sys
from importlib import import_module

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, exports: dict, submodules=()):
    """The ``__getattr__`` and ``__dir__`` of a lazy package.

    Args:
        package: the package's ``__name__``.
        exports: public name -> the module that defines it.
        submodules: sub-modules reachable as attributes (``carve.viz``).

    Example:
        >>> getattr_, dir_ = lazy_attributes("json", {"dumps": "json"})
        >>> getattr_("dumps")({"a": 1}), dir_()
        ('{"a": 1}', ['dumps'])
    """
    names = sorted(exports) + sorted(submodules)

    def __getattr__(name):
        if name in exports:
            value = getattr(import_module(exports[name]), name)
        elif name in submodules:
            value = import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # later look-ups are plain attribute reads
        return value

    def __dir__():
        return names

    return __getattr__, __dir__
