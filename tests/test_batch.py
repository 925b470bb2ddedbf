"""carve.batch: many datasets on a Dask cluster, resumable, failures isolated (issue 15).

Tiny rendered datasets (8 views of 64 x 48 px, resolution 32). The local clusters are real: worker
processes, a nanny that restarts a killed one, a scheduler reached by its address.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="carve batch needs the cluster extra (dask[distributed])")

import data  # noqa: E402
from carve.batch import Manifest, expand_inputs, inputs_hash, reconstruct_many  # noqa: E402
from carve.batch import run as batch_run  # noqa: E402
from carve.batch.cluster import ALLOWED_FAILURES  # noqa: E402
from carve.grid import VoxelGrid  # noqa: E402
from carve.pipeline import check_fits, reconstruct  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OBJECTS = ["torus", "sphere", "box", "mug"]
CORRUPT = "mug7"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """8 datasets (two of each object), the last with a calibration file that does not parse."""
    root = tmp_path_factory.mktemp("datasets")
    for i in range(8):
        views = data.synthetic(OBJECTS[i % 4], views=8, size=(64, 48))
        data.save(views, root / f"{OBJECTS[i % 4]}{i}")
    (root / CORRUPT / "calib" / "0003.txt").write_text("garbage\n")
    return root


@pytest.fixture(scope="module")
def cluster():
    """A cluster started apart from the batch (as a real one is), by its scheduler's address."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as local:
            yield local


def test_a_local_cluster_carves_seven_reports_the_corrupt_one_and_a_rerun_does_nothing(datasets, tmp_path,
                                                                                       monkeypatch):
    out = tmp_path / "out"
    report = reconstruct_many([str(datasets / "*")], out, workers=2, resolution=32)
    done = [r for r in report.records if r["status"] == "done"]
    assert len(report.records) == 8 and len(done) == 7 and [r["name"] for r in report.failed] == [CORRUPT]
    error = report.failed[0]["error"]
    assert "0003.txt, line 1" in error and "\n" not in error, error
    for r in done:
        name = r["name"]
        assert sorted(r["outputs"]) == sorted(f"{name}/{name}{s}" for s in (".npz", ".ply", ".png", "_views.json"))
        assert all((out / p).stat().st_size > 0 for p in r["outputs"])
        assert r["voxels"] > 0 and {"load", "carve", "mesh", "write"} <= set(r["times_s"])
    assert sorted(p.name for p in out.iterdir()) == sorted([r["name"] for r in done] + ["manifest.jsonl"])
    records = Manifest(out / "manifest.jsonl").records()
    assert sorted(r["name"] for r in records) == sorted(r["name"] for r in report.records)
    by_name = {r["name"]: r for r in records}
    for r in report.records:
        assert by_name[r["name"]] == r
        assert r["hash"] == inputs_hash(datasets / r["name"], batch_run.check_options({"resolution": 32}))
    assert by_name[CORRUPT]["status"] == "failed" and by_name[CORRUPT]["voxels"] is None
    table = report.table()
    assert "8 datasets: 7 carved, 0 up to date, 1 failed" in table and CORRUPT in table

    # each task is the function reconstruct runs: the same grid as a call in this process
    alone = reconstruct(datasets / "torus0", tmp_path / "alone", resolution=32)
    assert alone.voxels == by_name["torus0"]["voxels"]
    assert np.array_equal(VoxelGrid.load(tmp_path / "alone" / "torus0.npz").occupancy,
                          VoxelGrid.load(out / "torus0" / "torus0.npz").occupancy)

    # a rerun does no work: no cluster starts, no file changes
    def no_cluster(*args, **kwargs):
        raise AssertionError("a rerun with nothing to do started a cluster")

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    monkeypatch.setattr(batch_run, "open_client", no_cluster)
    again = reconstruct_many([str(datasets / "*")], out, workers=2, resolution=32)
    assert all(r.get("skipped") for r in again.records) and len(again.failed) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert "0 carved, 7 up to date, 1 failed" in again.table()


def test_changed_inputs_or_options_are_redone_and_the_rest_kept(datasets, tmp_path, cluster):
    source = tmp_path / "in"
    for name in ("torus0", "sphere1", "box2"):
        shutil.copytree(datasets / name, source / name)
    listing = tmp_path / "list.txt"
    listing.write_text("# three scans\nin/torus0\n\nin/sphere1\nin/box2\n")
    out = tmp_path / "out"
    with distributed.Client(cluster) as client:
        first = reconstruct_many([listing], out, client=client, resolution=32)
        assert [r["status"] for r in first.records] == ["done"] * 3
        calib = source / "sphere1" / "calib" / "0002.txt"
        calib.write_text(calib.read_text() + "\n")  # the same camera, another file
        second = reconstruct_many([listing], out, client=client, resolution=32)
        assert [bool(r.get("skipped")) for r in second.records] == [True, False, True]
        third = reconstruct_many([listing], out, client=client, resolution=24)
        assert not any(r.get("skipped") for r in third.records)
        assert {r["name"]: r["status"] for r in third.records} == {"torus0": "done", "sphere1": "done", "box2": "done"}
    latest = Manifest(out / "manifest.jsonl")
    assert len(latest.records()) == 3 + 3  # the third run started from one record per name, then appended
    assert max(VoxelGrid.load(out / "torus0" / "torus0.npz").shape) == 24  # the new options' output


def kill_plugin(marker: str):
    """A worker plugin, defined here so that it travels by value: a task whose key names "bomb" kills its
    worker every time it starts; one naming "torus0" kills it once (``marker`` says it has).

    The two run in separate batches: two workers killed at once would leave their two tasks side by
    side on the first worker back, and Dask counts a death against every task a worker held."""
    import os

    class Killer(distributed.WorkerPlugin):
        name = "carve-test-killer"

        def transition(self, key, start, finish, **kwargs):
            if finish != "executing" or not isinstance(key, str):
                return
            if key.startswith("carve-bomb-"):
                os._exit(1)
            if key.startswith("carve-torus0-") and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)

    return Killer()


def run_with_killer(client, paths, out, marker):
    client.register_plugin(kill_plugin(marker))
    try:
        return reconstruct_many(paths, out, client=client, resolution=32)
    finally:
        client.unregister_worker_plugin("carve-test-killer")
        client.wait_for_workers(2, timeout=60)


def test_a_killed_worker_is_replaced_and_a_task_that_kills_twice_fails(datasets, tmp_path, cluster):
    source = tmp_path / "in"
    for name in ("torus0", "sphere1", "box2", "mug3", "torus4"):
        shutil.copytree(datasets / name, source / name)
    shutil.copytree(datasets / "sphere5", source / "bomb")
    marker = str(tmp_path / "killed-once")
    with distributed.Client(cluster) as client:
        # a worker killed mid-batch (under torus0): the batch completes, torus0 included
        report = run_with_killer(client, [str(source / n) for n in ("sphere1", "torus0", "box2", "mug3")],
                                 tmp_path / "out", marker)
        assert Path(marker).exists()
        assert {r["name"]: r["status"] for r in report.records} == dict.fromkeys(
            ["sphere1", "torus0", "box2", "mug3"], "done")
        assert (tmp_path / "out" / "torus0" / "torus0.ply").exists()
        # a task that kills every worker it runs on: failed after the second, the others done
        out = tmp_path / "bombed"
        report = run_with_killer(client, [source / "torus4", source / "bomb", source / "box2"], out, marker)
    status = {r["name"]: r["status"] for r in report.records}
    assert status == {"torus4": "done", "bomb": "failed", "box2": "done"}, report.table()
    bomb = next(r for r in report.records if r["name"] == "bomb")
    assert bomb["error"].startswith("KilledWorker") and "\n" not in bomb["error"]
    assert not (out / "bomb").exists() and not [p for p in out.iterdir() if p.name.startswith(".")]
    assert Manifest(out / "manifest.jsonl").latest()["bomb"]["status"] == "failed"


def test_a_scheduler_address_runs_the_batch_on_that_cluster(datasets, tmp_path, cluster):
    out = tmp_path / "out"
    report = reconstruct_many([datasets / "torus0", datasets / "box2"], out, scheduler=cluster.scheduler_address,
                              resolution=32)
    assert [r["status"] for r in report.records] == ["done", "done"]
    workers = set(cluster.scheduler_info["workers"])
    assert {r["worker"] for r in report.records} <= workers
    # and the same from the command line, with a bad option refused before anything runs
    cli = [sys.executable, "-m", "carve", "batch", str(datasets / "sphere1"), "--out", str(tmp_path / "cli"),
           "--scheduler", cluster.scheduler_address, "--resolution", "32", "--quiet"]
    result = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cli" / "sphere1" / "sphere1.ply").exists()
    record = json.loads((tmp_path / "cli" / "manifest.jsonl").read_text())
    assert record["status"] == "done" and record["worker"] in workers
    bad = subprocess.run(cli + ["--workers", "2"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "not allowed with argument" in bad.stderr


def test_the_memory_check_refuses_a_carve_over_the_worker_limit(datasets):
    views = data.load(datasets / "torus0", verbose=False)
    check_fits(views, resolution=32, method="octree", backend="numba", limit=2**30)
    check_fits(views, resolution=32, method="octree", backend="numba", limit=None)
    with pytest.raises(MemoryError, match="resolution 512, over the memory limit of 0.01 GiB"):
        check_fits(views, resolution=512, method="octree", backend="numba", limit=10 * 2**20)


def test_inputs_folders_lists_and_globs_and_their_errors(datasets, tmp_path):
    listing = tmp_path / "scans.txt"
    listing.write_text(f"{datasets / 'box2'}\n# a comment\n{datasets / 'torus0'}\n")
    found = expand_inputs([listing, str(datasets / "torus*"), datasets / "box2"])
    assert [p.name for p in found] == ["box2", "torus0", "torus4"]
    with pytest.raises(ValueError, match="matches no file"):
        expand_inputs([str(datasets / "nothing*")])
    with pytest.raises(ValueError, match="must name existing datasets"):
        expand_inputs([datasets / "nothing"])
    listing.write_text("missing\n")
    with pytest.raises(ValueError, match="names .*missing, which does not exist"):
        expand_inputs([listing])
    with pytest.raises(TypeError, match="unknown options resolutoin"):
        reconstruct_many([datasets / "torus0"], tmp_path / "out", resolutoin=32)


def test_the_manifest_survives_a_torn_line(tmp_path):
    manifest = Manifest(tmp_path / "manifest.jsonl")
    manifest.append({"name": "a", "status": "done"})
    with open(manifest.path, "ab") as f:
        f.write(b'{"name": "b", "sta')  # a crash in the middle of a write
    manifest.append({"name": "c", "status": "failed", "error": "x" * 10_000})
    assert [r["name"] for r in manifest.records()] == ["a", "c"]
    assert all(len(line) < 4096 for line in manifest.path.read_bytes().splitlines())
    manifest.compact()
    assert [json.loads(line)["name"] for line in manifest.path.read_text().splitlines()] == ["a", "c"]
