"""``carve --help`` and usage errors answer at once: building the parser imports nothing heavy."""
import os
import subprocess
import sys
import time

import pytest

HEAVY = ("numpy", "torch", "cv2", "open3d", "trimesh", "numba", "geometry")
ENV = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)


def test_building_the_parser_imports_nothing_heavy():
    result = python("import sys\n"
                    "from carve.cli.parser import build_parser\n"
                    "build_parser().format_help()\n"
                    f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"building the parser imported {result.stdout.strip()}"


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["reconstruct", "--help"],
    ["train-depth", "--help"],
    ["reconstruct", "/no/such/dataset"],
    ["reconstruct", ".", "--mesh", "out.xyz"],
    ["view", "/no/such/mesh.ply"],
    ["demo", "--resolution", "0"],
])
def test_help_and_usage_errors_import_nothing_heavy_and_answer_fast(argv):
    code = ("import sys, runpy\n"
            f"sys.argv = ['carve', *{argv!r}]\n"
            "try:\n"
            "    runpy.run_module('carve', run_name='__main__')\n"
            "except SystemExit as exit:\n"
            f"    print('EXIT', exit.code, sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n")
    result = python(code)
    expected = 0 if "--help" in argv else 2
    assert f"EXIT {expected} []" in result.stderr, result.stderr
    # and in wall time, interpreter start included (about 0.05 s here; generous for a loaded CI machine)
    start = time.perf_counter()
    plain = subprocess.run([sys.executable, "-m", "carve", *argv], capture_output=True, text=True, env=ENV,
                           timeout=120)
    seconds = time.perf_counter() - start
    assert plain.returncode == expected, plain.stderr
    assert seconds < 1.5, f"carve {' '.join(argv)} took {seconds:.2f} s"
