"""The one display check: can a window open here? Used by :func:`carve.viz.show` and the command line.

On Linux a window needs an X server that accepts us and an OpenGL driver that works on it.
``DISPLAY`` set is not enough: a stale ``DISPLAY`` (a closed ssh -X session, a container that
copied the variable) names a server that is gone, a server may refuse clients without its auth
cookie, and a machine may lack the GL driver. Open3D does not fail in those cases: it falls back to
an invisible context and its run loop waits forever. So the check

1. looks at the variables (for a local display ``:N`` the socket ``/tmp/.X11-unix/XN`` must exist);
2. then, in a child process with a time limit (:data:`PROBE_TIMEOUT`, 3 s), opens the display with
   ``XOpenDisplay`` and makes an OpenGL context current on it through GLX (both through ctypes),
   reading the screen size and the GL renderer on the way.

A child process, because ``XOpenDisplay`` can block for minutes on an unreachable host and a broken
driver can crash the process. The answer is cached per environment (about 0.1 s the first time).
Other platforms always have a display. This module imports only the standard library.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["display_problem", "has_display", "screen_size", "gl_renderer", "PROBE_TIMEOUT"]

X11_SOCKETS = Path("/tmp/.X11-unix")
PROBE_TIMEOUT = 3.0  # seconds the child process may take to open the display and a GL context

# Run with `python -I -S -c`: only ctypes. Prints "CARVE_X ok W H RENDERER" or "CARVE_X fail WHY".
_PROBE = r"""
import ctypes, ctypes.util, sys
def out(*words):
    sys.stdout.write("CARVE_X " + " ".join(str(w) for w in words) + "\n"); sys.stdout.flush()
def lib(*names):
    for n in names:
        try:
            return ctypes.CDLL(n)
        except OSError:
            pass
    return None
x = lib("libX11.so.6", ctypes.util.find_library("X11") or "libX11.so")
if x is None:
    out("fail", "libX11 (the X client library) is not installed"); sys.exit(0)
x.XOpenDisplay.restype = ctypes.c_void_p
x.XOpenDisplay.argtypes = [ctypes.c_char_p]
dpy = x.XOpenDisplay(None)
if not dpy:
    out("fail", "the X server refused the connection or is unreachable"); sys.exit(0)
vp = ctypes.c_void_p
x.XDefaultScreen.argtypes = [vp]
x.XDisplayWidth.argtypes = x.XDisplayHeight.argtypes = [vp, ctypes.c_int]
screen = x.XDefaultScreen(dpy)
width, height = x.XDisplayWidth(dpy, screen), x.XDisplayHeight(dpy, screen)
gl = lib("libGL.so.1", ctypes.util.find_library("GL") or "libGL.so")
if gl is None:
    out("fail", "libGL (OpenGL) is not installed"); sys.exit(0)
ci = ctypes.c_int
gl.glXQueryExtension.argtypes = [vp, ctypes.POINTER(ci), ctypes.POINTER(ci)]
a, b = ci(), ci()
if not gl.glXQueryExtension(dpy, ctypes.byref(a), ctypes.byref(b)):
    out("fail", "the X server has no GLX (OpenGL) extension"); sys.exit(0)
# GLX_DRAWABLE_TYPE: WINDOW|PBUFFER, GLX_RENDER_TYPE: RGBA, DOUBLEBUFFER, DEPTH_SIZE 16
attrs = (ci * 9)(0x8010, 0x1 | 0x4, 0x8011, 0x1, 5, 1, 12, 16, 0)
n = ci()
gl.glXChooseFBConfig.restype = ctypes.POINTER(vp)
gl.glXChooseFBConfig.argtypes = [vp, ci, ctypes.POINTER(ci), ctypes.POINTER(ci)]
configs = gl.glXChooseFBConfig(dpy, screen, attrs, ctypes.byref(n))
if not configs or n.value < 1:
    out("fail", "no OpenGL driver serves this display (no GLX frame-buffer configuration)"); sys.exit(0)
gl.glXCreateNewContext.restype = vp
gl.glXCreateNewContext.argtypes = [vp, vp, ci, vp, ci]
ctx = gl.glXCreateNewContext(dpy, configs[0], 0x8014, None, 1)
if not ctx:
    out("fail", "the OpenGL driver cannot create a context on this display"); sys.exit(0)
gl.glXCreatePbuffer.restype = ctypes.c_ulong
gl.glXCreatePbuffer.argtypes = [vp, vp, ctypes.POINTER(ci)]
pb = gl.glXCreatePbuffer(dpy, configs[0], (ci * 5)(0x8041, 16, 0x8040, 16, 0))
gl.glXMakeContextCurrent.argtypes = [vp, ctypes.c_ulong, ctypes.c_ulong, vp]
if not pb or not gl.glXMakeContextCurrent(dpy, pb, pb, ctx):
    out("fail", "the OpenGL driver cannot make a context current on this display"); sys.exit(0)
gl.glGetString.restype = ctypes.c_char_p
gl.glGetString.argtypes = [ctypes.c_uint]
renderer = (gl.glGetString(0x1F01) or b"unknown").decode(errors="replace").replace("\n", " ")
out("ok", width, height, renderer)
"""

_cache: dict = {}  # X and GL environment -> (problem or None, (width, height) or None, renderer or None)
# what the answer depends on; not the whole environment, which imports change (cv2 sets LD_LIBRARY_PATH),
# and each new key costs a probe of up to PROBE_TIMEOUT seconds
_X_GL_NAMES = {"DISPLAY", "XAUTHORITY", "HOME"}
_X_GL_PREFIXES = ("LIBGL_", "MESA_", "GALLIUM_", "__GLX_", "__EGL_", "EGL_")


def _probe(display: str, timeout: float) -> tuple[str | None, tuple[int, int] | None, str | None]:
    """(problem, screen size, GL renderer) from opening the display and a GL context in a child."""
    head = f"no display is available (DISPLAY={display}"
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _PROBE], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"{head}, but its X server did not answer within {timeout:g} s)", None, None
    except OSError as err:
        return f"{head}, but the display check could not run: {err})", None, None
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("CARVE_X ")), "")
    words = line.split(" ", 5)
    if len(words) >= 5 and words[1] == "ok":
        return None, (int(words[2]), int(words[3])), " ".join(words[4:])
    if len(words) >= 3 and words[1] == "fail":
        return f"{head}, but {line.split(' ', 2)[2]})", None, None
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
    status = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
    return f"{head}, but opening it and an OpenGL context failed: {status}, {last})", None, None


def _check(timeout: float | None = None) -> tuple[str | None, tuple[int, int] | None, str | None]:
    if not sys.platform.startswith("linux"):
        return None, None, None
    display, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
    if not display:
        if wayland:
            return None, None, None
        return "no display is available (DISPLAY and WAYLAND_DISPLAY are unset)", None, None
    host, _, number = display.partition(":")
    if host in ("", "unix") and number:
        socket = X11_SOCKETS / f"X{number.split('.')[0]}"
        if not socket.exists():
            return f"no display is available (DISPLAY={display}, but no X server listens at {socket})", None, None
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k in _X_GL_NAMES or k.startswith(_X_GL_PREFIXES)))
    if key not in _cache:
        _cache[key] = _probe(display, PROBE_TIMEOUT if timeout is None else timeout)
    return _cache[key]


def display_problem(timeout: float | None = None) -> str | None:
    """Why no window can open here (one sentence), or None when a display is available.

    Args:
        timeout: seconds the X and OpenGL check may take (default :data:`PROBE_TIMEOUT`, 3 s).

    Example (on Linux, where no X server listens at :97):
        >>> from unittest import mock
        >>> with mock.patch.dict("os.environ", {"DISPLAY": ":97", "WAYLAND_DISPLAY": ""}):
        ...     print(display_problem())
        no display is available (DISPLAY=:97, but no X server listens at /tmp/.X11-unix/X97)
    """
    return _check(timeout)[0]


def has_display() -> bool:
    """True when a window can open: :func:`display_problem` finds no problem.

    Example:
        >>> has_display() == (display_problem() is None)
        True
    """
    return display_problem() is None


def screen_size() -> tuple[int, int] | None:
    """(width, height) in pixels of the X screen a window would open on; None where unknown.

    Example:
        >>> size = screen_size()
        >>> size is None or (len(size) == 2 and min(size) > 0)
        True
    """
    return _check()[1]


def gl_renderer() -> str | None:
    """The OpenGL renderer a window would use (e.g. ``llvmpipe (LLVM 15.0.6, 256 bits)``); None where
    unknown (no display, or not Linux)."""
    return _check()[2]
