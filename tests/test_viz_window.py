"""carve.viz.show and the display check: never hang, size and title, framing, R, Ctrl+C.

Every case runs in a child process with a time limit, so a hang fails the test instead of the run.
Cases with a real window need Xvfb (Debian: ``apt-get install xvfb``) and Mesa's software OpenGL;
they skip with the reason where Xvfb is not installed. Fake ``DISPLAY`` values run everywhere on Linux.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from carve.viz import display, framing

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is for Linux")

SHOW = "import trimesh; from carve import viz; viz.show(trimesh.creation.icosphere(), title='t')"


def run_child(code, env, timeout=20):
    """(return code, stdout, stderr, seconds) of `python -c code` under the given environment changes."""
    full = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY")}
    full.update({k: v for k, v in env.items() if v is not None})
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start


def free_display():
    return next(n for n in range(60, 200) if not os.path.exists(f"/tmp/.X11-unix/X{n}")
                and not os.path.exists(f"/tmp/.X{n}-lock"))


@pytest.fixture(scope="module")
def xvfb(tmp_path_factory):
    """(display, auth file) of a private Xvfb 1280 x 1024 that refuses clients without its cookie."""
    if shutil.which("Xvfb") is None or shutil.which("xauth") is None:
        pytest.skip("Xvfb and xauth are not installed (Debian: apt-get install xvfb xauth)")
    number = free_display()
    auth = tmp_path_factory.mktemp("x") / "auth"
    subprocess.run(["xauth", "-q", "-f", str(auth), "add", f":{number}", ".", os.urandom(16).hex()], check=True,
                   capture_output=True)
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x1024x24", "-auth", str(auth),
                               "-nolisten", "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(f"/tmp/.X11-unix/X{number}"):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.skip(f"Xvfb :{number} did not start")
        time.sleep(0.1)
    env = {"DISPLAY": f":{number}", "XAUTHORITY": str(auth)}
    code, out, err, _ = run_child("from carve.viz import display; print(display.display_problem())", env)
    if out.strip() != "None":
        server.kill()
        pytest.skip(f"no OpenGL on Xvfb here: {out.strip() or err.strip()[-200:]}")
    yield env
    server.terminate()
    server.wait(10)


# ------------------------------------------------------------------------------ no hang, ever
@pytest.fixture
def silent_server():
    """A TCP X display (localhost:N) that accepts connections and never answers."""
    listener = socket.socket()
    number = next(n for n in range(60, 200) if listener.connect_ex(("127.0.0.1", 6000 + n)) != 0)
    listener.close()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 6000 + number))
    listener.listen(4)
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"localhost:{number}.0"
    stop.set()
    thread.join()
    for s in held:
        s.close()
    listener.close()


def unused_tcp_display():
    s = socket.socket()
    number = next(n for n in range(10, 200) if s.connect_ex(("127.0.0.1", 6000 + n)) != 0)
    s.close()
    return f"localhost:{number}.0"


@pytest.mark.parametrize("case", ["unset", "no socket", "nothing listening", "server never answers"])
def test_unreachable_display_raises_within_5_s(case, request):
    display_value = {"unset": None, "no socket": f":{free_display()}", "nothing listening": unused_tcp_display(),
                     "server never answers": None}[case]
    if case == "server never answers":
        display_value = request.getfixturevalue("silent_server")
    code, out, err, seconds = run_child(SHOW, {"DISPLAY": display_value})
    assert code == 1 and seconds < 5 + 2, (code, seconds, err[-500:])  # + 2 s: starting Python, open3d
    last = err.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: no display is available") and "snapshot" in last, last
    if case == "server never answers":
        assert "did not answer within 3 s" in last


def test_display_check_is_fast_and_cached(silent_server, monkeypatch):
    monkeypatch.setenv("DISPLAY", silent_server)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    start = time.monotonic()
    assert "did not answer within 0.5 s" in display.display_problem(timeout=0.5)
    assert time.monotonic() - start < 2
    start = time.monotonic()
    assert not display.has_display() and display.screen_size() is None  # cached: no second child
    assert time.monotonic() - start < 0.1


def test_refused_connection_and_missing_gl_driver(xvfb):
    code, out, err, seconds = run_child(SHOW, {**xvfb, "XAUTHORITY": os.devnull})  # no cookie: refused
    assert code == 1 and seconds < 7 and "refused the connection" in err.strip().splitlines()[-1], err[-300:]
    code, out, err, seconds = run_child(SHOW, {**xvfb, "LIBGL_DRIVERS_PATH": "/nonexistent"})  # no GL driver
    assert code == 1 and seconds < 7 and "OpenGL" in err.strip().splitlines()[-1], err[-300:]


def test_screen_size_and_renderer(xvfb):
    code, out, err, _ = run_child("from carve.viz import display as d; print(d.screen_size(), d.gl_renderer())", xvfb)
    assert out.startswith("(1280, 1024) "), (out, err[-300:])


# ------------------------------------------------------------------------------ the window
WINDOW = """
import ctypes, json, sys, time
import numpy as np, trimesh
from carve import viz
from carve.viz import window
from geometry import Camera
out = {}

def polls(vis, n=10):
    for _ in range(n):
        vis.poll_events()
        time.sleep(0.02)

def state(vis):
    control = vis.get_view_control()
    p = control.convert_to_pinhole_camera_parameters()
    return np.array(p.extrinsic), [p.intrinsic.width, p.intrinsic.height]

def press(key):
    x, xt = ctypes.CDLL("libX11.so.6"), ctypes.CDLL("libXtst.so.6")
    x.XOpenDisplay.restype = ctypes.c_void_p
    x.XOpenDisplay.argtypes = [ctypes.c_char_p]
    d = x.XOpenDisplay(None)
    x.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    x.XKeysymToKeycode.restype = ctypes.c_ubyte
    xt.XTestFakeMotionEvent.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ulong]
    xt.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
    x.XFlush.argtypes = x.XCloseDisplay.argtypes = [ctypes.c_void_p]
    xt.XTestFakeMotionEvent(d, -1, 300, 300, 0)
    code = x.XKeysymToKeycode(d, ord(key))
    xt.XTestFakeKeyEvent(d, code, 1, 0)
    xt.XTestFakeKeyEvent(d, code, 0, 0)
    x.XFlush(d)
    x.XCloseDisplay(d)

def run(vis):
    polls(vis)
    first, out["size"] = state(vis)
    out["first"] = first.tolist()
    image = np.asarray(vis.capture_screen_float_buffer(True))
    fg = np.abs(image - np.array(viz.BACKGROUND)).max(-1) > 0.05
    rows, cols = np.nonzero(fg)
    out["span"] = [(cols.max() - cols.min() + 1) / fg.shape[1], (rows.max() - rows.min() + 1) / fg.shape[0]]
    out["image_up"] = float(image[: fg.shape[0] // 2][..., 0].mean() - image[fg.shape[0] // 2:][..., 0].mean())
    control = vis.get_view_control()
    control.rotate(200, 80)
    control.scale(5)
    polls(vis)
    out["moved"] = float(np.abs(state(vis)[0] - first).max())
    for _ in range(3):  # a synthetic key can miss a window that is still mapping
        press("r")
        polls(vis)
        out["after_r"] = float(np.abs(state(vis)[0] - first).max())
        if out["after_r"] < 1e-6:
            break

window._run = run
{call}
print("RESULT " + json.dumps(out))
"""


def window_result(xvfb, call):
    code, out, err, seconds = run_child(WINDOW.replace("{call}", call), xvfb, timeout=60)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert code == 0 and lines, err[-800:]
    return json.loads(lines[0][7:])


def test_window_frames_the_object_and_r_returns(xvfb):
    call = """
mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
cams = Camera.look_at([[4, 0, 1.5], [-2, 3.4, 1.5], [-2, -3.4, 1.5]], [0, 0, 0], up=[0, 0, 1], fov=50,
                      width=64, height=48)
viz.show(mesh, cameras=cams, title="framing")
"""
    out = window_result(xvfb, call)
    # default size: fitted to the 1280 x 1024 screen, not 1280 x 960
    assert abs(out["size"][0] - 1080) <= 2 and abs(out["size"][1] - 810) <= 2, out["size"]
    # the first view is the object's, as framing.window_camera says; the cameras are not framed
    cam, _ = framing.window_camera(None, -0.3 * np.ones(3), 0.3 * np.ones(3), np.array([0, 0, 1.0]),
                                   tuple(out["size"]))
    # (the icosphere's box is +-0.3 and its vertices span it, so the view is that of its points)
    first = np.array(out["first"])
    np.testing.assert_allclose(first[:3, :3], cam.R[0], atol=1e-6)
    assert 0.5 < max(out["span"]) < 0.75, out["span"]  # the sphere spans 60 % of the window's height
    assert out["moved"] > 0.1 and out["after_r"] < 1e-6  # R: back to the first view


def test_window_size_title_and_view_through_a_camera(xvfb):
    call = """
# a depth cloud in its camera's frame (y down, z forward): a plane at z = 3, brighter at the top (v small)
v, u = np.mgrid[0:48, 0:64]
pts = np.stack([(u - 31.5) / 50 * 3, (v - 23.5) / 50 * 3, np.full(u.shape, 3.0)], -1).reshape(-1, 3)
colors = np.repeat(np.where(v.reshape(-1, 1) < 24, 1.0, 0.0), 3, axis=1)
camera = Camera(np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]]), np.eye(3), np.zeros(3), 64, 48)
viz.show((pts, colors), title="depth", size=(320, 240), view=camera, up=(0, -1, 0))
"""
    out = window_result(xvfb, call)
    assert out["size"] == [320, 240]
    np.testing.assert_allclose(np.array(out["first"]), np.eye(4), atol=1e-6)  # looking through the camera
    assert out["image_up"] > 0.3  # upright: the top half of the picture is the bright top of the cloud
    assert out["after_r"] < 1e-6


def test_ctrl_c_closes_the_window(xvfb):
    code = """
import sys, trimesh
from carve import viz
from carve.viz import window
loop = window._run
def run(vis):
    print("OPEN", flush=True)
    loop(vis)
window._run = run
try:
    viz.show(trimesh.creation.icosphere(), title="ctrl-c")
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    sys.exit(7)
"""
    env = {**{k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}, **xvfb}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "OPEN"
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        start = time.monotonic()
        rc = child.wait(timeout=5)
        assert time.monotonic() - start < 2
        assert rc == 7 and "INTERRUPTED" in child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# ------------------------------------------------------------------------------ pure parts
def test_window_size_fits_the_screen():
    assert framing.window_size((1280, 1024)) == (1080, 810)
    assert framing.window_size((1920, 1080)) == (1144, 858)
    assert framing.window_size((3840, 2160)) == (1280, 960)
    assert framing.window_size(None) == (1024, 768)
    w, h = framing.window_size((1280, 1024), aspect=2.0)
    assert w <= 0.85 * 1280 and abs(w / h - 2.0) < 0.01


def test_controls_text_lists_the_keys():
    from carve import viz

    for key in ("rotate", "zoom", "pan", "R ", "W ", "L ", "H ", "Q or Esc", "Ctrl+C"):
        assert key in viz.CONTROLS
    assert all(len(line) <= 100 for line in viz.CONTROLS.splitlines())
    assert "R" in viz.show.__doc__ and "Controls" in viz.show.__doc__


def test_show_checks_its_arguments_before_the_display(monkeypatch):
    import trimesh
    from carve import viz

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    ball = trimesh.creation.icosphere()
    with pytest.raises(ValueError, match="size must be"):
        viz.show(ball, size=(0, 10))
    with pytest.raises(TypeError, match="view must be None"):
        viz.show(ball, view="front")
    with pytest.raises(ValueError, match="title must be"):
        viz.show(ball, title="")
    with pytest.raises(RuntimeError, match="no display is available"):
        viz.show(ball, size=(320, 240))
