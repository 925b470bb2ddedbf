"""The one display check: can a window open here? Used by :func:`carve.viz.show` and the command line.

On Linux a window needs a Wayland display or an X server: ``DISPLAY`` set is not enough, since a
stale ``DISPLAY`` (a closed ssh -X session, a container that copied the variable) names a server
that is gone; for a local display (``:N`` or ``unix:N``) the X socket ``/tmp/.X11-unix/XN`` must
exist. Other platforms always have a display. This module imports only the standard library.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["display_problem", "has_display"]

X11_SOCKETS = Path("/tmp/.X11-unix")


def display_problem() -> str | None:
    """Why no window can open here (one sentence), or None when a display looks available.

    Example (on Linux, where no X server listens at :97):
        >>> from unittest import mock
        >>> with mock.patch.dict("os.environ", {"DISPLAY": ":97", "WAYLAND_DISPLAY": ""}):
        ...     print(display_problem())
        no display is available (DISPLAY=:97, but no X server listens at /tmp/.X11-unix/X97)
    """
    if not sys.platform.startswith("linux"):
        return None
    display, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
    if wayland:
        return None
    if not display:
        return "no display is available (DISPLAY and WAYLAND_DISPLAY are unset)"
    host, _, number = display.partition(":")
    if host in ("", "unix") and number:
        socket = X11_SOCKETS / f"X{number.split('.')[0]}"
        if not socket.exists():
            return f"no display is available (DISPLAY={display}, but no X server listens at {socket})"
    return None


def has_display() -> bool:
    """True when a window can open: :func:`display_problem` finds no problem.

    Example:
        >>> has_display() == (display_problem() is None)
        True
    """
    return display_problem() is None
