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


#: tries of the two tests that time an idle window: late in a full run on a 2-core machine, Filament on
#: llvmpipe now and then spins in one window (1.8 cores idle, ctrl-c answered in 3 s) where the same test
#: passes alone (an open problem, seen at stops 28 and 31); a window that always redraws fails every try
SPIN_ATTEMPTS = 2


def run_child(code, env, timeout=20, args=()):
    """(return code, stdout, stderr, seconds) of `python -c code args` under the given environment changes."""
    full = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY")}
    full.update({k: v for k, v in env.items() if v is not None})
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=full, capture_output=True,
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


@pytest.fixture(scope="module")
def small_mesh(tmp_path_factory):
    import trimesh

    path = tmp_path_factory.mktemp("mesh") / "ball.ply"
    trimesh.creation.icosphere(subdivisions=2).export(path)
    return path


@pytest.mark.parametrize("case", ["nothing listening", "server never answers", "refused", "no GL driver"])
def test_view_command_takes_the_snapshot_path(case, small_mesh, tmp_path, request):
    if case == "nothing listening":
        env = {"DISPLAY": unused_tcp_display()}
    elif case == "server never answers":
        env = {"DISPLAY": request.getfixturevalue("silent_server")}
    else:
        xvfb = request.getfixturevalue("xvfb")
        env = {**xvfb, "XAUTHORITY": os.devnull} if case == "refused" else {**xvfb, "LIBGL_DRIVERS_PATH": "/nonexistent"}
    full = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY")}
    full.update(env)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "carve", "view", str(small_mesh), "--size", "64x48"], cwd=tmp_path,
                          env=full, capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - start
    lines = [ln for ln in proc.stdout.splitlines() if "no display is available" in ln]
    assert proc.returncode == 0 and len(lines) == 1, (proc.stdout, proc.stderr[-500:])
    assert "wrote a snapshot instead of opening a window" in lines[0]
    assert (tmp_path / "ball.png").is_file()
    assert seconds < 5 + 10, seconds  # the check within 5 s; then Python, Open3D and the render itself


def test_view_command_with_cameras_report_and_hidden_groups(small_mesh, tmp_path):
    """carve view --cameras DIR --report NAME_views.json --hide ... --snapshot: flagged frustums in red."""
    import cv2

    from carve import viz

    data_dir = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "carve", "render", "sphere", str(data_dir), "--views", "4", "--size", "64x48"],
                   check=True, capture_output=True, timeout=120)
    import data

    names = data.load(data_dir).names
    report = tmp_path / "ball_views.json"
    report.write_text(json.dumps({"views": [{"name": n} for n in names], "excluded": [2]}))
    full = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}

    def view(*extra):
        out = tmp_path / f"v{len(list(tmp_path.glob('v*.png')))}.png"
        proc = subprocess.run([sys.executable, "-m", "carve", "view", str(small_mesh), "--cameras", str(data_dir),
                               "--snapshot", str(out), "--size", "160x120", *extra], env=full, capture_output=True,
                              text=True, timeout=120)
        return proc, out

    proc, out = view("--report", str(report), "--hide", "mesh")
    assert proc.returncode == 0, proc.stderr[-500:]
    image = cv2.imread(str(out))[:, :, ::-1].astype(int)
    assert np.abs(image - np.round(np.array(viz.MESH_COLOR) * 255)).max(-1).min() > 30  # no mesh
    proc, _ = view("--hide", "meshes")
    assert proc.returncode == 2 and "--hide must name groups from mesh" in proc.stderr
    (tmp_path / "other_views.json").write_text(json.dumps({"views": [{"name": "x"}], "excluded": []}))
    proc, _ = view("--report", str(tmp_path / "other_views.json"))
    assert proc.returncode == 2 and "--report" in proc.stderr and "must be about the views drawn" in proc.stderr


def test_screen_size_and_renderer(xvfb):
    code, out, err, _ = run_child("from carve.viz import display as d; print(d.screen_size(), d.gl_renderer())", xvfb)
    assert out.startswith("(1280, 1024) "), (out, err[-300:])


# ------------------------------------------------------------------------------ the window
# A child process opens an O3DVisualizer window (carve.viz.Viewer) under Xvfb, drives it a tick at a
# time, writes what it shows to PNGs (export_current_image: the 3-D view, without the panel) and
# prints RESULT {json}. The parent renders the same scene headlessly and compares.
WINDOW = """
import json, os, sys, time
import numpy as np, trimesh
from carve import viz
from carve.viz import window
from carve.viz.scene import build_scene
from geometry import Camera
out = {}
folder = sys.argv[1]

def export(v, name):
    path = os.path.join(folder, name)
    v.window.export_current_image(path)
    deadline = time.monotonic() + 30  # the picture is written from a later frame (seconds on llvmpipe, loaded)
    while time.monotonic() < deadline:
        v.window.post_redraw()
        v.tick()
        if os.path.exists(path) and os.path.getsize(path) > 0:
            time.sleep(0.2)
            return path
    raise RuntimeError("no picture from export_current_image")

def ticks(v, n=5):
    for _ in range(n):
        v.tick()

def pose(cam):
    E = np.eye(4)
    E[:3, :3], E[:3, 3] = cam.R[0], cam.T[0]
    return np.diag([1.0, -1.0, -1.0, 1.0]) @ E   # Open3D's view matrix of an OpenCV pose

{call}
print("RESULT " + json.dumps(out))
"""

RING = """
mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
cams = Camera.look_at([[4, 0, 1.5], [-2, 3.4, 1.5], [-2, -3.4, 1.5]], [0, 0, 0], up=[0, 0, 1], fov=50,
                      width=64, height=48)
photo = np.zeros((48, 64, 3), np.uint8)
photo[:24] = [255, 0, 0]
photo[24:] = [0, 0, 255]
scene = build_scene([mesh], cams, names=["left", "back", "right"], photos=[photo] * 3, flagged=[1])
"""


def window_result(xvfb, call, tmp_path, timeout=240):  # generous: llvmpipe on a busy machine; a hang still fails
    code, out, err, seconds = run_child(WINDOW.replace("{call}", call), xvfb, timeout=timeout, args=[str(tmp_path)])
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert code == 0 and lines, err[-1500:]
    return json.loads(lines[0][7:])


def read_rgb(path):
    import cv2

    return cv2.imread(str(path))[:, :, ::-1]


def test_window_opens_on_the_first_view_and_closes(xvfb, tmp_path):
    call = RING + """
start = time.perf_counter()
v = window.Viewer(scene, "ring", (900, 640))
out["first_frame_s"] = v.first_frame_s
out["viewport"] = list(v.viewport())
cam, _ = scene.first_camera(v.viewport())
out["home_error"] = float(np.abs(v.view_matrix() - pose(cam)).max())
out["home_png"] = export(v, "home.png")
out["title"] = v.window.title
v.window.scene.camera.look_at([0, 0, 0], [3, 3, 3], [0, 0, 1])  # the user moves the view
ticks(v)
out["moved"] = float(np.abs(v.view_matrix() - pose(cam)).max())
v.home()  # the Reset view action
ticks(v)
out["reset_error"] = float(np.abs(v.view_matrix() - pose(cam)).max())
v.close()
out["open_after_close"] = v.is_open
"""
    out = window_result(xvfb, call, tmp_path)
    assert out["first_frame_s"] < 10 and out["title"] == "ring" and not out["open_after_close"]
    assert out["home_error"] < 1e-5 and out["moved"] > 0.1 and out["reset_error"] < 1e-5
    width, height = out["viewport"]
    assert 900 - 400 < width < 900 and 640 - 60 < height < 640  # the panel and the menu bar take the rest
    # the headless snapshot of the same scene at the 3-D view's size shows the same thing: the same
    # framing (the object, 60 % of the view, not the cameras), the same groups
    from carve import viz
    from carve.viz import offscreen
    from carve.viz.scene import build_scene
    from geometry import Camera
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    cams = Camera.look_at([[4, 0, 1.5], [-2, 3.4, 1.5], [-2, -3.4, 1.5]], [0, 0, 0], up=[0, 0, 1], fov=50,
                          width=64, height=48)
    snap = offscreen.render_scene(build_scene([mesh], cams, flagged=[1]), size=(width, height))
    shown = read_rgb(out["home_png"])
    assert shown.shape == snap.shape
    np.testing.assert_allclose(shown[2, 2], np.round(np.array(viz.BACKGROUND) * 255), atol=2)  # colours as given
    fg_window = np.abs(shown.astype(int) - shown[2, 2]).max(-1) > 12
    fg_snap = np.abs(snap.astype(int) - snap[2, 2]).max(-1) > 12
    iou = (fg_window & fg_snap).sum() / (fg_window | fg_snap).sum()
    assert iou > 0.85, iou  # (the lighting differs: a highlight near the background's colour is missed)
    box = [np.nonzero(fg.any(axis=a))[0][[0, -1]] for fg in (fg_window, fg_snap) for a in (1, 0)]
    np.testing.assert_allclose(np.concatenate(box[:2]), np.concatenate(box[2:]), atol=3)  # the same framing
    rows, cols = np.nonzero(fg_window)
    assert 0.5 < max((np.ptp(rows) + 1) / height, (np.ptp(cols) + 1) / width) < 0.7


def test_look_through_a_camera_and_toggles(xvfb, tmp_path):
    call = RING + """
v = window.Viewer(scene, "ring", (900, 640))
v.step_camera(1)  # the Next camera action: camera 0
v.step_camera(1)  # camera 1
ticks(v)
out["camera"] = v.camera
out["title"] = v.window.title
out["view_error"] = float(np.abs(v.view_matrix() - pose(cams[1])).max())
P = np.asarray(v.window.scene.camera.get_projection_matrix(), np.float64)
W, H = v.viewport()
s = min(W / 64, H / 48)   # the camera's image fitted in the view: fy scaled by s, over H / 2
out["fy_error"] = float(abs(P[1, 1] - 2 * cams.K[1, 1, 1] * s / H))
out["photo_png"] = export(v, "photo.png")
v.show_group("images", False)  # Toggle images: the object behind the photograph
ticks(v)
out["photo_visible"] = v.visible("photo back")
out["object_png"] = export(v, "object.png")
v.show_group("cameras", False)
ticks(v)
out["frustums_visible"] = [v.visible(f"camera {n}") for n in scene.names]
v.show_group("cameras", None)  # flip: back on
out["frustums_back"] = [v.visible(f"camera {n}") for n in scene.names]
v.look_through(2)
v.home()
out["camera_after_home"] = v.camera
v.close()
"""
    out = window_result(xvfb, call, tmp_path)
    assert out["camera"] == 1 and out["title"] == "ring: camera back (flagged) (2/3)"
    assert out["view_error"] < 1e-5 and out["fy_error"] < 1e-4  # the camera's pose and intrinsics
    photo = read_rgb(out["photo_png"])
    h = photo.shape[0]
    top, bottom = photo[h // 2 - h // 6, photo.shape[1] // 2], photo[h // 2 + h // 6, photo.shape[1] // 2]
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60, (top, bottom)  # upright
    obj = read_rgb(out["object_png"])
    centre = obj[h // 2, obj.shape[1] // 2].astype(int)
    assert not out["photo_visible"] and np.abs(centre - obj[5, obj.shape[1] // 2]).max() > 12  # the sphere
    assert out["frustums_visible"] == [False] * 3 and out["frustums_back"] == [True] * 3
    assert out["camera_after_home"] is None


def test_groups_hidden_at_first_and_a_depth_cloud_upright(xvfb, tmp_path):
    call = """
# a depth cloud in its camera's frame (y down, z forward): a plane at z = 3, brighter at the top (v small)
v_, u_ = np.mgrid[0:48, 0:64]
pts = np.stack([(u_ - 31.5) / 50 * 3, (v_ - 23.5) / 50 * 3, np.full(u_.shape, 3.0)], -1).reshape(-1, 3)
colors = np.repeat(np.where(v_.reshape(-1, 1) < 24, 1.0, 0.0), 3, axis=1)
camera = Camera(np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]]), np.eye(3), np.zeros(3), 64, 48)
scene = build_scene([(pts, colors), trimesh.creation.box()], view=camera, up=(0, -1, 0), hide=["mesh"])
v = window.Viewer(scene, "depth", (700, 420))
out["first"] = v.view_matrix().tolist()
out["mesh_visible"] = v.visible("mesh")
image = np.asarray(__import__("cv2").imread(export(v, "depth.png"))[:, :, ::-1], float) / 255
half = image.shape[0] // 2
out["image_up"] = float(image[:half][..., 0].mean() - image[half:][..., 0].mean())
v.close()
"""
    out = window_result(xvfb, call, tmp_path)
    np.testing.assert_allclose(np.array(out["first"]), np.diag([1.0, -1, -1, 1]), atol=1e-6)  # through the camera
    assert out["mesh_visible"] is False
    assert out["image_up"] > 0.1  # upright (upside down: -0.15): the top half of the picture is the bright top of the cloud


def test_show_closes_after_and_ctrl_c_closes(xvfb):
    code, out, err, seconds = run_child(
        "import trimesh; from carve import viz; viz.show(trimesh.creation.icosphere(), title='t', close_after=0.5);"
        " print('CLOSED')", xvfb, timeout=180)
    assert code == 0 and "CLOSED" in out, err[-500:]
    code = """
import sys, trimesh
from carve import viz
from carve.viz import window
run = window.Viewer.run
def announced(self, close_after=None):
    print("OPEN", flush=True)
    run(self, close_after)
window.Viewer.run = announced
try:
    viz.show(trimesh.creation.icosphere(), title="ctrl-c")
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    sys.exit(7)
"""
    env = {**{k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}, **xvfb}
    for attempt in range(SPIN_ATTEMPTS):
        child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "OPEN"
            time.sleep(0.5)
            child.send_signal(signal.SIGINT)
            start = time.monotonic()
            rc = child.wait(timeout=5)
            took = time.monotonic() - start
            assert rc == 7 and "INTERRUPTED" in child.stdout.read()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        if took < 2:
            break
    assert took < 2, f"ctrl-c took {took:.1f} s to close the window, {SPIN_ATTEMPTS} times"


def test_idle_window_costs_little_cpu(xvfb):
    code = """
import os, time, trimesh
from carve.viz import window
from carve.viz.scene import build_scene
v = window.Viewer(build_scene([trimesh.creation.icosphere()]), "idle", (640, 480))
for _ in range(100):
    v.tick()
t, start = os.times(), time.monotonic()
while time.monotonic() - start < 2:
    v.tick()
t1 = os.times()
print("CPU", (t1.user - t.user + t1.system - t.system) / 2)
v.close()
"""
    for attempt in range(SPIN_ATTEMPTS):
        rc, out, err, _ = run_child(code, xvfb, timeout=180)
        line = [ln for ln in out.splitlines() if ln.startswith("CPU ")]
        assert rc == 0 and line, err[-500:]
        cores = float(line[0].split()[1])
        if cores < 0.3:  # of one core; a redraw loop would take 1 to 2 cores
            break
    assert cores < 0.3, f"an idle window took {cores:.2f} cores, {SPIN_ATTEMPTS} times"


def test_window_draws_with_a_malloc_tunable_set(xvfb, tmp_path):
    """Dask sets MALLOC_TRIM_THRESHOLD_ for every process started after ``import distributed``; any
    malloc tunable stops glibc's moving mmap threshold, and llvmpipe then spun for good (fixed by
    carve.viz.allocator.steady_mmap_threshold)."""
    call = RING + """
v = window.Viewer(scene, "ring", (900, 640))
out["png"] = export(v, "home.png")
v.close()
"""
    out = window_result({**xvfb, "MALLOC_TRIM_THRESHOLD_": "65536"}, call, tmp_path, timeout=120)
    shown = read_rgb(out["png"]).astype(int)
    assert (np.abs(shown - shown[2, 2]).max(-1) > 12).mean() > 0.1  # the sphere is drawn


# ------------------------------------------------------------------------------ pure parts
def test_window_size_fits_the_screen():
    assert framing.window_size((1280, 1024)) == (1080, 810)
    assert framing.window_size((1920, 1080)) == (1144, 858)
    assert framing.window_size((3840, 2160)) == (1280, 960)
    assert framing.window_size(None) == (1024, 768)
    w, h = framing.window_size((1280, 1024), aspect=2.0)
    assert w <= 0.85 * 1280 and abs(w / h - 2.0) < 0.01


def test_controls_text_lists_the_controls():
    from carve import viz
    from carve.cli.parser import build_parser

    for words in ("rotate", "zoom", "pan", "Reset view", "Previous / Next camera", "Toggle GROUP", "mesh, grid, points,"
                  " cameras, images", "Ctrl+C"):
        assert words in viz.CONTROLS, words
    assert all(len(line) <= 100 for line in viz.CONTROLS.splitlines())
    assert "Reset view" in viz.show.__doc__ and "Controls" in viz.show.__doc__
    view = build_parser()._subparsers._group_actions[0].choices["view"]
    assert viz.CONTROLS in view.format_help()  # carve view --help lists them


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
