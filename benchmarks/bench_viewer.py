"""The viewer's time to first frame and frame rate: Open3D's classic Visualizer beside our O3DVisualizer window.

    python benchmarks/bench_viewer.py [--triangles 50000 500000] [--repeats 3] [--seconds 2]

Each measurement runs in a fresh process (a window's first frame includes the renderer's start), on
a private Xvfb started here (Debian: ``apt-get install xvfb``), whose screen is read back from its
framebuffer file to see when a frame is shown (:class:`Screen`); both viewers use Mesa's software
renderer (llvmpipe) there. Prints the median of the repeats.

- time to first frame: from creating the window (the mesh converted and ready) to the framed first
  view on the screen: ``create_window`` + ``add_geometry`` + framing + drawing for the classic
  Visualizer; :class:`carve.viz.window.Viewer` (window, geometries, panel, first view) for the
  O3DVisualizer.
- frames per second: frames shown on the screen while the view turns by two degrees per frame
  around the object, as a user dragging would, for ``--seconds``.

The two draw the same number of pixels: the classic window is 1080 x 810; the O3DVisualizer window is
wider and taller by its panel and menu bar, so that its 3-D view is about 1080 x 810 too.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import print_table  # noqa: E402

VIEW = (1080, 810)
PANEL, MENU = 256, 24  # pixels the O3DVisualizer's settings panel and menu bar take (font size 16)


def test_mesh(triangles: int):
    """A lumpy sphere of about ``triangles`` triangles (Open3D's UV sphere, displaced)."""
    import numpy as np
    import open3d as o3d

    resolution = max(4, int(round((1 + (1 + triangles) ** 0.5) / 2)))  # 4 r (r - 1) triangles
    mesh = o3d.geometry.TriangleMesh.create_sphere(1.0, resolution)
    v = np.asarray(mesh.vertices)
    bumps = 1 + 0.08 * np.sin(7 * v[:, 0]) * np.cos(5 * v[:, 1]) * np.sin(3 * v[:, 2] + 1)
    mesh.vertices = o3d.utility.Vector3dVector(v * bumps[:, None])
    mesh.compute_vertex_normals()
    mesh.paint_uniform_color([0.78, 0.80, 0.85])
    return mesh


class Screen:
    """The private Xvfb's screen, read from its framebuffer file (``Xvfb -fbdir``, XWD format).

    A frame counts when the screen shows it: after each change of view, the viewer runs until a
    sample of the screen (every 4th pixel of every 4th row) differs from the last frame's. Both
    viewers are counted so; Open3D's O3DVisualizer drops frames while its renderer is busy, so
    counting its ticks would overstate its rate a thousandfold.
    """

    def __init__(self, path: str):
        import numpy as np

        with open(path, "rb") as f:
            header = np.frombuffer(f.read(100), ">u4")
        size, width, height, bytes_per_line, ncolors = (int(header[i]) for i in (0, 4, 5, 12, 19))
        if int(header[11]) != 32:
            raise RuntimeError(f"the Xvfb screen must be 32 bits per pixel, got {int(header[11])}")
        self.pixels = np.memmap(path, np.uint8, "r", offset=size + 12 * ncolors, shape=(height, bytes_per_line))
        self.last = self.sample()

    def sample(self):
        return self.pixels[::4, ::16].copy()  # every 4th pixel (4 bytes each) of every 4th row

    def wait_for_frame(self, step, timeout: float = 10.0) -> None:
        """Call ``step()`` until the screen changes (a new frame is shown)."""
        import numpy as np

        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            step()
            now = self.sample()
            if not np.array_equal(now, self.last):
                self.last = now
                return
        raise RuntimeError(f"no new frame on the screen within {timeout:g} s")


def turn_and_count(screen: Screen, show, seconds: float) -> float:
    """Frames per second shown while ``show(i, first)`` turns the view by one step per frame."""
    frames, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        frames += 1
        first = [True]

        def step():
            show(frames, first[0])
            first[0] = False

        screen.wait_for_frame(step)
    return frames / (time.perf_counter() - t0)


def measure_classic(mesh, seconds: float, screen: Screen) -> dict:
    import numpy as np
    import open3d as o3d

    from carve.viz.framing import turntable, window_camera

    start = time.perf_counter()
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(window_name="classic", width=VIEW[0], height=VIEW[1]):
        raise RuntimeError("the classic Visualizer could not open a window")
    vis.add_geometry(mesh)
    control = vis.get_view_control()
    params = control.convert_to_pinhole_camera_parameters()
    W, H = params.intrinsic.width, params.intrinsic.height
    box = mesh.get_axis_aligned_bounding_box()
    cam, centre = window_camera(None, np.asarray(box.min_bound), np.asarray(box.max_bound), np.array([0.0, 0, 1]),
                                (W, H))
    ring = turntable(cam, centre, np.array([0.0, 0, 1]), 180)

    def show(i, first):
        if first:
            params.extrinsic = _extrinsic(ring[i % 180])
            control.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True)
        vis.poll_events()
        vis.update_renderer()

    K = cam.K[0]
    params.intrinsic = o3d.camera.PinholeCameraIntrinsic(W, H, K[0, 0], K[1, 1], W / 2 - 0.5, H / 2 - 0.5)
    screen.wait_for_frame(lambda: show(0, True))
    first = time.perf_counter() - start
    fps = turn_and_count(screen, show, seconds)
    vis.destroy_window()
    return {"first_frame_s": first, "fps": fps, "view": [W, H]}


def _extrinsic(cam):
    import numpy as np

    extrinsic = np.eye(4)
    extrinsic[:3, :3], extrinsic[:3, 3] = cam.R[0], cam.T[0]
    return extrinsic


def measure_o3dvisualizer(mesh, seconds: float, screen: Screen) -> dict:
    from carve.viz.framing import turntable
    from carve.viz.scene import build_scene
    from carve.viz.window import Viewer

    scene = build_scene([mesh])
    start = time.perf_counter()
    viewer = Viewer(scene, "o3dvisualizer", (VIEW[0] + PANEL, VIEW[1] + MENU))
    screen.wait_for_frame(viewer.tick)  # Viewer's first frame may still be on its way to the screen
    first = time.perf_counter() - start
    size = viewer.viewport()
    cam, centre = scene.first_camera(size)
    ring = turntable(cam, centre, scene.up, 180)

    def show(i, first):
        if first:
            viewer.set_view(ring[i % 180])  # forces frames over the next ticks (Viewer.redraw)
        viewer.tick()

    fps = turn_and_count(screen, show, seconds)
    viewer.close()
    return {"first_frame_s": first, "fps": fps, "view": list(size)}


def child(which: str, triangles: int, seconds: float, fbdir: str) -> None:
    mesh = test_mesh(triangles)
    measure = measure_classic if which == "classic" else measure_o3dvisualizer
    result = measure(mesh, seconds, Screen(os.path.join(fbdir, "Xvfb_screen0")))
    result["triangles"] = len(mesh.triangles)
    print("RESULT " + json.dumps(result), flush=True)


def start_xvfb(fbdir: str):
    """(Popen, DISPLAY) of a private Xvfb whose screen is also the file ``fbdir/Xvfb_screen0``."""
    number = next(n for n in range(90, 200) if not os.path.exists(f"/tmp/.X11-unix/X{n}"))
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1920x1200x24", "-nolisten", "tcp",
                               "-fbdir", fbdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.exists(f"/tmp/.X11-unix/X{number}") and os.path.exists(os.path.join(fbdir, "Xvfb_screen0")):
            return server, f":{number}"
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("the private Xvfb did not start within 10 s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--triangles", type=int, nargs="+", default=[50_000, 500_000])
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per viewer and size (median)")
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds of turning per frame-rate measurement")
    ap.add_argument("--child", nargs=3, metavar=("VIEWER", "TRIANGLES", "FBDIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.seconds, args.child[2])
        return 0
    if shutil.which("Xvfb") is None:
        print("bench_viewer: counting frames needs Xvfb (Debian: apt-get install xvfb)")
        return 1

    fbdir = tempfile.mkdtemp(prefix="bench_viewer_")
    server, display = start_xvfb(fbdir)
    env = {**os.environ, "DISPLAY": display}
    env.pop("XAUTHORITY", None)
    try:
        renderer = subprocess.run([sys.executable, "-c", "from carve.viz.display import gl_renderer; "
                                   "print(gl_renderer())"], env=env, capture_output=True, text=True).stdout.strip()
        rows = []
        for triangles in args.triangles:
            results = {}
            for which in ("classic", "o3dvisualizer"):
                runs = []
                for _ in range(args.repeats):
                    proc = subprocess.run([sys.executable, __file__, "--child", which, str(triangles), fbdir,
                                           "--seconds", str(args.seconds)], env=env, capture_output=True, text=True,
                                          timeout=300)
                    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    if proc.returncode != 0 or not line:
                        raise RuntimeError(f"{which} at {triangles} triangles failed: {proc.stderr.strip()[-500:]}")
                    runs.append(json.loads(line[0][7:]))
                results[which] = runs
                first = statistics.median(r["first_frame_s"] for r in runs)
                fps = statistics.median(r["fps"] for r in runs)
                view = "x".join(map(str, runs[0]["view"]))
                rows.append([f"{runs[0]['triangles']:,}", which, view, f"{first:.2f}", f"{fps:.1f}"])
            ratio = (statistics.median(r["fps"] for r in results["o3dvisualizer"])
                     / statistics.median(r["fps"] for r in results["classic"]))
            rows.append(["", "ratio", "", "", f"{ratio:.2f}x"])
        print(f"viewer: time to first frame and frame rate, median of {args.repeats} fresh processes, "
              f"{args.seconds:g} s turning; renderer {renderer}")
        print_table(["triangles", "viewer", "3-D view", "first frame s", "fps"], rows)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(fbdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
