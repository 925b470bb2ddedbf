"""The ``carve`` command line (``carve --help``; ``python -m carve``).

Modules: :mod:`~carve.cli.parser` (the parser and :func:`main`; it imports nothing heavy),
:mod:`~carve.cli.commands` (one ``cmd_*`` function per command), :mod:`~carve.cli.outputs` (the
viewer, the depth colour map), :mod:`~carve.cli.demo` (the no-download demo).
"""
from carve.cli.parser import main

__all__ = ["main"]
