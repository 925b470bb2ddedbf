"""Every writer leaves nothing behind when it fails: a full disk, a file-size limit hit mid-write, Ctrl-C.

Each writer is run once to see what it writes, then again (with other content, over the first
result) under each fault: ``os.replace`` failing with ENOSPC or interrupted, and a real short write
(``RLIMIT_FSIZE`` below the file's size, so the kernel refuses the write half-way, as on a full
disk), with or without Ctrl-C raised from the signal it sends. Afterwards the folder must hold
exactly what it held before: the old result unchanged, no temporary file.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import resource
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from data.files import atomic_path

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ faults
def snapshot(folder: Path) -> dict:
    """{relative path: bytes, or None for a folder} of everything under ``folder``."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


@contextlib.contextmanager
def replace_raises(exc):
    """``os.replace`` (the atomic writer's last step) raises ``exc``: the data was written, the rename fails."""
    real = os.replace

    def fake(src, dst, *args, **kwargs):
        raise exc

    os.replace = fake
    try:
        yield
    finally:
        os.replace = real


@contextlib.contextmanager
def file_size_limit(nbytes: int, interrupt: bool = False):
    """Writes past ``nbytes`` in any file fail with EFBIG, the way a full disk fails them: mid-write,
    in C libraries too. With ``interrupt``, the SIGXFSZ the kernel sends raises KeyboardInterrupt."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    old_handler = signal.signal(signal.SIGXFSZ, handler if interrupt else signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


def faults(largest: int):
    """(name, context manager factory) of the faults, for a writer whose largest file has ``largest`` bytes."""
    limit = max(1, largest // 2)
    return [
        ("ENOSPC at the rename", lambda: replace_raises(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))),
        ("Ctrl-C at the rename", lambda: replace_raises(KeyboardInterrupt())),
        ("short write", lambda: file_size_limit(limit)),
        ("Ctrl-C mid-write", lambda: file_size_limit(limit, interrupt=True)),
    ]


# ----------------------------------------------------------------------------------------- writers
def _grid(folder: Path, variant: int) -> Path:
    from carve import VoxelGrid

    occ = np.random.default_rng(variant).random((40, 40, 40)) < 0.5  # random: it does not compress away
    return VoxelGrid(occ, [0, 0, 0], 0.1).save(folder / "grid.npz")


def _image(folder: Path, variant: int) -> Path:
    from data.images import write_image

    rgb = np.random.default_rng(variant).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    return write_image(folder / "picture.png", rgb)


@functools.lru_cache(maxsize=2)
def _views(variant: int):
    import data

    return data.synthetic("torus", views=3, size=(32, 24), seed=variant)


def _dataset(fmt: str):
    def write(folder: Path, variant: int) -> Path:
        import data

        return data.save(_views(variant), folder / "dataset", format=fmt, overwrite=True)
    return write


def _mesh(suffix: str):
    def write(folder: Path, variant: int) -> Path:
        import trimesh

        from carve.pipeline.outputs import write_mesh

        return write_mesh(trimesh.creation.icosphere(subdivisions=2 + variant), folder / f"mesh{suffix}")
    return write


def _model(folder: Path, variant: int) -> Path:
    import torch

    from carve.learn.checkpoints import save_model
    from carve.learn.nets import ImageModel

    class Demo(ImageModel):
        task = "demo"

    torch.manual_seed(variant)
    save_model(Demo(widths=(4, 8)), folder / "model.pt", metadata={"variant": variant})
    return folder / "model.pt"


def _json(folder: Path, variant: int) -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from timing import write_json
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return write_json({"variant": variant, "rows": list(range(2000))}, folder / "bench.json")


def _curves(folder: Path, variant: int) -> Path:
    from carve.learn.plots import plot_history

    history = [{"epoch": e + 1, "train_loss": 1.0 / (e + 1 + variant), "val_rmse": 0.5} for e in range(4)]
    plot_history(history, folder / "curves.png", title="demo")
    return folder / "curves.png"


def _views_record(folder: Path, variant: int) -> Path:
    from carve.pipeline.steps import write_views

    return write_views({"variant": variant, "views": [{"name": f"v{i}", "kept": True} for i in range(300)]},
                       folder / "demo_views.json")


def _snapshot(folder: Path, variant: int) -> Path:
    import trimesh

    from carve import viz

    try:
        viz.check_headless()
    except RuntimeError as err:
        pytest.skip(str(err))
    return viz.snapshot(trimesh.creation.icosphere(subdivisions=1 + variant), path=folder / "view.png", size=(64, 48))


def _scene_cache(folder: Path, variant: int) -> Path:
    from carve.learn.scenes import cache_file, render_split

    cache = folder / "cache"  # made by the writer: a failed write must not leave it behind empty
    render_split("val", 2, 16 + 16 * variant, progress=False, cache_dir=cache)
    return cache_file(cache, "val", 2, 16 + 16 * variant)


WRITERS = {
    "VoxelGrid.save": _grid, "write_image": _image, "data.save tum": _dataset("tum"),
    "data.save blender": _dataset("blender"), "save_model": _model, "timing.write_json": _json,
    "plot_history": _curves, "write_views": _views_record, "viz.snapshot": _snapshot, "scene cache": _scene_cache,
    **{f"write_mesh {s}": _mesh(s) for s in (".ply", ".obj", ".glb", ".gltf", ".stl", ".off")},
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_failed_write_leaves_the_folder_as_it_was(tmp_path, name):
    write = WRITERS[name]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    written = write(scratch, 0)
    sizes = [p.stat().st_size for p in ([written] if written.is_file() else written.rglob("*")) if p.is_file()]
    for case, fault in faults(max(sizes)):
        for old in (False, True):  # onto nothing, and over an earlier result
            folder = tmp_path / f"{case.replace(' ', '_')}_{old}"
            folder.mkdir()
            if old:
                write(folder, 0)
            before = snapshot(folder)
            raised = None
            try:
                with fault():
                    write(folder, 1)
            except BaseException as e:  # checked once it is handled, as a caller (the CLI) handles it
                raised = type(e)
            assert raised is not None and not issubclass(raised, AssertionError), f"{name}, {case}: {raised}"
            assert snapshot(folder) == before, f"{name}, {case}: the folder changed: {sorted(snapshot(folder))}"


# ------------------------------------------------------------------------------- the atomic writer
def test_atomic_path_cleans_up_on_any_exception(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    for exc in (OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt(), SystemExit(1),
                ValueError("bad")):
        with pytest.raises(type(exc)):
            with atomic_path(target) as tmp:
                tmp.write_text("new, half")
                raise exc
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"] and target.read_text() == "old"
    with pytest.raises(OSError, match=r"No space left on device: '.*out\.txt'"):
        with atomic_path(target) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    with pytest.raises(FileNotFoundError, match="elsewhere.txt"):  # another file's error keeps its name
        with atomic_path(target) as tmp:
            open(tmp_path / "elsewhere.txt").read()
    with pytest.raises(RuntimeError, match="produced no data"):
        with atomic_path(target):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"] and target.read_text() == "old"


def test_atomic_path_temporary_is_new_empty_and_keeps_the_suffix(tmp_path):
    target = tmp_path / ("x" * 250 + ".npz")  # a temporary name built on it must stay within NAME_MAX
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npz" and tmp.name.startswith(".")
        assert tmp.is_file() and tmp.stat().st_size == 0
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(FileNotFoundError, match="output directory"):
        with atomic_path(tmp_path / "missing" / "x.txt"):
            pass


def test_concurrent_atomic_writes_get_the_usual_mode_and_never_touch_the_umask(tmp_path, monkeypatch):
    old = os.umask(0o027)  # not the default 0o022, so a file made with a wrong umask would show
    try:
        def no_umask(mask):
            raise AssertionError("atomic_path must not change the process-wide umask (threads race on it)")

        monkeypatch.setattr(os, "umask", no_umask)
        errors = []

        def work(k):
            try:
                for i in range(25):
                    with atomic_path(tmp_path / f"f{k}_{i}.txt") as tmp:
                        tmp.write_text(f"{k} {i}")
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        monkeypatch.undo()
    finally:
        os.umask(old)
    assert not errors, errors[0]
    files = list(tmp_path.iterdir())
    assert len(files) == 16 * 25
    modes = {oct(p.stat().st_mode & 0o777) for p in files}
    assert modes == {oct(0o666 & ~0o027)}, modes


# -------------------------------------------------------------------------------- the command line
def _cli(argv):
    from carve.cli.parser import main

    return main([str(a) for a in argv])


@pytest.mark.parametrize("command", ["render", "depth"])
def test_a_command_that_cannot_write_exits_1_and_leaves_no_file(tmp_path, command, capsys):
    from data.images import write_image

    photo = tmp_path / "photo.png"
    write_image(photo, np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    out = tmp_path / "out"
    argv = (["render", "torus", out, "--views", 3, "--size", "32x24", "--quiet"] if command == "render"
            else ["depth", photo, "--out", out, "--quiet"])
    with replace_raises(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))):
        assert _cli(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0], err
    named = out / "photo_depth.png" if command == "depth" else out
    assert str(named) in err[0], err  # the output, not a temporary name or a hidden staging folder
    assert sorted(tmp_path.iterdir()) == [photo], sorted(tmp_path.rglob("*"))  # not even an empty folder


# ------------------------------------------------------------------------------ diverged training
def test_save_model_refuses_non_finite_weights(tmp_path):
    import torch

    from carve.learn.checkpoints import save_model
    from carve.learn.nets import ImageModel

    class Demo(ImageModel):
        task = "demo"

    model = Demo(widths=(4, 8))
    name, weight = next((k, p) for k, p in model.named_parameters())
    with torch.no_grad():
        weight[0] = float("inf")
    with pytest.raises(ValueError, match=f"finite weights.*{name}"):
        save_model(model, tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def tiny_scenes():
    from carve.learn.scenes import render_split

    return {"train": render_split("train", 8, 16, progress=False), "val": None}


def test_training_stops_at_a_non_finite_loss_and_writes_only_finite_models(tmp_path, tiny_scenes, one_torch_thread):
    from carve.depth.model import DepthTask
    from carve.learn.checkpoints import load_checkpoint
    from carve.learn.config import TrainConfig
    from carve.learn.loop import fit

    class DivergesAtStep3(DepthTask):
        calls = 0

        def loss(self, model, batch, cfg):
            DivergesAtStep3.calls += 1
            loss, parts = super().loss(model, batch, cfg)
            return (loss * float("nan") if DivergesAtStep3.calls >= 3 else loss), parts

    cfg = dict(task="depth", size=16, train=8, val=0, widths=(4, 8), batch_size=4, epochs=3, threads=1, seed=0)
    out = tmp_path / "nan"
    with pytest.raises(FloatingPointError, match="loss became nan at step 3.*lower the learning rate"):
        fit(TrainConfig(out=str(out), **cfg), DivergesAtStep3(), progress=False, scenes=tiny_scenes)
    assert {p.name for p in out.iterdir()} == {"last.pt", "best.pt", "model.pt", "history.json", "curves.png"}
    for f in ("last.pt", "best.pt", "model.pt"):  # epoch 1's files, finite
        assert load_checkpoint(out / f, "depth")["metadata"]["epoch"] == 1
    # a damaged last.pt is refused by name when resumed, not with a KeyError
    import torch

    from carve.learn.checkpoints import CheckpointError

    ck = torch.load(out / "last.pt", weights_only=True)
    for damaged in ({**ck["train_state"], "optimizer": 3}, {k: v for k, v in ck["train_state"].items() if k != "epoch"},
                    {**ck["train_state"], "optimizer": {"state": {}, "param_groups": []}}):
        torch.save({**ck, "train_state": damaged}, tmp_path / "damaged.pt")
        with pytest.raises(CheckpointError, match="damaged.pt"):
            fit(TrainConfig(out=str(tmp_path / "r"), **cfg), DepthTask(), resume=tmp_path / "damaged.pt",
                progress=False, scenes=tiny_scenes)
    # a finite but absurd rate diverges by itself: stopped by the loss or the weights check, nothing written
    out = tmp_path / "lr"
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(TrainConfig(out=str(out), **dict(cfg, lr=1e30)), DepthTask(), progress=False, scenes=tiny_scenes)
    for f in out.glob("*.pt"):
        load_checkpoint(f, "depth")  # raises on non-finite weights


def test_dataset_overwrite_keeps_the_old_one_until_the_new_one_is_in(tmp_path, monkeypatch):
    """data.save(overwrite=True) once deleted the old dataset before moving the new one in: a failure
    between lost both. Now the old one is set aside and comes back; a new parent folder goes again."""
    import data

    views = data.synthetic("torus", views=3, size=(32, 24))
    path = data.save(views, tmp_path / "ds")
    before = snapshot(path)
    real = Path.rename

    def fail_into_place(self, target):
        if Path(target) == path and self.name == "dataset":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, target)

    monkeypatch.setattr(Path, "rename", fail_into_place)
    with pytest.raises(OSError):
        data.save(data.synthetic("torus", views=3, size=(32, 24), seed=1), path, overwrite=True)
    assert snapshot(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    monkeypatch.undo()
    with replace_raises(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))), pytest.raises(OSError) as err:
        data.save(views, tmp_path / "new" / "deeper" / "ds")
    assert "cannot write the dataset" in str(err.value) and str(tmp_path / "new" / "deeper" / "ds") in str(err.value)
    assert not (tmp_path / "new").exists()
