"""The README's examples run as written: its Python blocks in order, then its command lines."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
README = (ROOT / "README.md").read_text()


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_has_the_two_setup_commands_and_ci_runs_the_test_one():
    setup = blocks("bash")[0]
    assert "make demo" in setup and "make test" in setup
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = blocks("python")
    assert len(code) >= 2
    namespace = {}
    for block in code:
        exec(compile(block, "README.md", "exec"), namespace)
    assert (tmp_path / "torus.png").stat().st_size > 0


def command_lines(real_data):
    """The README's ``$ carve ...`` lines: those on ``../shared`` data, or the self-contained ones."""
    lines = [line[2:] for block in blocks("console") for line in block.splitlines() if line.startswith("$ ")]
    return [line for line in lines if ("../shared" in line) == real_data]


def run_lines(lines, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    for line in lines:
        args = shlex.split(line.replace("../shared", str(SHARED)))
        assert args[0] == "carve"
        result = subprocess.run([sys.executable, "-m", "carve", *args[1:]], cwd=cwd, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{line}\n{result.stderr}"


@pytest.mark.slow
def test_command_line_examples_run(tmp_path):
    lines = command_lines(real_data=False)
    assert len(lines) >= 3
    run_lines(lines, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "datasets").is_dir(), reason="the real-data examples need ../shared/datasets "
                                                             "beside the checkout")
def test_real_data_command_line_examples_run(tmp_path):
    lines = command_lines(real_data=True)
    assert lines
    run_lines(lines, tmp_path)
