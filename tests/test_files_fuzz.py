"""Grid files and checkpoints are untrusted input: seeded mutations of valid files (truncation, byte
flips, swapped or absurd entries) and small files that declare large contents.

The only outcomes allowed: the file loads, or the documented error names the file -- ``ValueError``
(a ``FormatError``) for :meth:`carve.VoxelGrid.load`, :class:`CheckpointError` for checkpoints;
``FileNotFoundError`` / ``MemoryError`` only where documented. Nothing large is allocated first.
"""
from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from carve import VoxelGrid
from data.errors import FormatError

SEED = 16  # the number: every mutation below is reproducible


def mutations(blob: bytes, rng, count: int):
    """``count`` damaged copies of ``blob``: truncations, single and burst byte flips, zeroed spans."""
    for k in range(count):
        kind = k % 4
        if kind == 0:
            yield blob[:int(rng.integers(0, len(blob)))]
            continue
        b = bytearray(blob)
        if kind == 1:
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        elif kind == 2:
            for i in rng.integers(0, len(b), int(rng.integers(2, 12))):
                b[int(i)] = int(rng.integers(0, 256))
        else:
            i, span = int(rng.integers(0, len(b))), int(rng.integers(1, 64))
            b[i:i + span] = bytes(len(b[i:i + span]))
        yield bytes(b)


# ------------------------------------------------------------------------------------------ grids
def npz(path: Path, members: dict, compression=zipfile.ZIP_DEFLATED) -> Path:
    """A .npz written member by member, as np.savez does (``name.npy`` each), arrays or raw bytes."""
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, value in members.items():
            if isinstance(value, bytes):
                z.writestr(f"{name}.npy", value)
            else:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(value), allow_pickle=True)
                z.writestr(f"{name}.npy", buf.getvalue())
    return path


def grid_members(shape=(6, 5, 4), seed=0) -> dict:
    occ = np.random.default_rng(seed).random(shape) < 0.4
    return {"format": np.array("carve3d.VoxelGrid/1"), "shape": np.array(shape, np.int64), "lo": np.zeros(3),
            "voxel_size": np.array(0.25), "occupancy_bits": np.packbits(occ.reshape(-1))}


def load_outcome(path: Path):
    """'ok', or the error; anything but the documented error fails the test."""
    try:
        VoxelGrid.load(path)
        return "ok"
    except FormatError as err:
        assert str(path) in str(err), err
        return err


def test_grid_round_trip_still_loads(tmp_path):
    grid = VoxelGrid(np.random.default_rng(1).random((7, 3, 5)) < 0.5, [1, 2, 3], 0.5)
    back = VoxelGrid.load(grid.save(tmp_path / "g"))
    assert np.array_equal(back.occupancy, grid.occupancy) and back.occupancy.dtype == bool
    assert back.lo.tolist() == [1, 2, 3] and back.voxel_size == 0.5
    assert VoxelGrid.load(VoxelGrid(np.zeros((0, 2, 2), bool), [0, 0, 0], 1).save(tmp_path / "e")).shape == (0, 2, 2)


def test_grid_load_fuzzed_files_raise_only_the_documented_error(tmp_path):
    valid = VoxelGrid(np.random.default_rng(0).random((9, 7, 5)) < 0.4, [0, -1, 2], 0.3).save(tmp_path / "v.npz")
    rng = np.random.default_rng(SEED)
    outcomes = []
    for k, blob in enumerate(mutations(valid.read_bytes(), rng, 240)):
        f = tmp_path / f"m{k}.npz"
        f.write_bytes(blob)
        outcomes.append(load_outcome(f))
    assert sum(o != "ok" for o in outcomes) > 150  # the mutations do damage; every damage is named


ABSURD = {
    "shape": [np.array([2**40, 2**40, 2**40]), np.array([-1, 4, 4]), np.array([6, 5]), np.array([6.0, 5.0, 4.0]),
              np.array([2**62, 2**62, 4]), np.array("6,5,4")],
    "lo": [np.array([np.nan, 0, 0]), np.array([np.inf, 0, 0]), np.zeros(2), np.array(["a", "b", "c"])],
    "voxel_size": [np.array(0.0), np.array(-1.0), np.array(np.nan), np.array(np.inf), np.array([0.1, 0.2]),
                   np.array("0.1"), np.array(1e308)],
    "format": [np.array("carve3d.VoxelGrid/2"), np.array(b"carve3d.VoxelGrid/1"), np.array(["carve3d.VoxelGrid/1"])],
    "occupancy_bits": [np.zeros(3, np.uint8), np.zeros(15, np.int64), np.zeros((15, 1), np.uint8),
                       np.array([{"a": 1}], dtype=object), b"\x93NUMPY\x01\x00\xff\xff{'descr'"],
}


@pytest.mark.parametrize("member", sorted(ABSURD))
def test_grid_load_absurd_or_missing_members_are_named(tmp_path, member):
    members = grid_members()
    for k, value in enumerate(ABSURD[member]):
        err = load_outcome(npz(tmp_path / f"{member}{k}.npz", {**members, member: value}))
        assert err != "ok", (member, value)
    missing = {k: v for k, v in members.items() if k != member}
    assert "holds" in str(load_outcome(npz(tmp_path / f"no_{member}.npz", missing)))
    swapped = {**members, member: members["lo" if member != "lo" else "shape"]}  # a field in another's place
    load_outcome(npz(tmp_path / f"swap_{member}.npz", swapped))


def test_grid_load_missing_file_and_not_a_zip(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        VoxelGrid.load(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError):
        VoxelGrid.load(tmp_path)  # a folder
    (tmp_path / "text.npz").write_text("not a zip")
    assert "corrupt" in str(load_outcome(tmp_path / "text.npz"))


def test_grid_that_declares_more_than_its_data_is_refused_before_allocating(tmp_path):
    """A tiny file whose shape says 2**33 voxels (8 GiB as bool), with a few bytes of bits."""
    f = npz(tmp_path / "bomb.npz", {**grid_members(), "shape": np.array([2048, 2048, 2048])})
    tracemalloc.start()
    try:
        err = load_outcome(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err != "ok" and "occupancy_bits" in str(err) and peak < 1 << 20, (err, peak)


def test_npy_member_whose_header_lies_about_its_size_is_refused(tmp_path):
    """The bits member's .npy header declares 2**33 bytes; the member itself holds a few."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (2**33,)})
    members = {**grid_members(), "shape": np.array([2**12, 2**12, 2**12]),
               "occupancy_bits": header.getvalue() + b"\0" * 64}
    tracemalloc.start()
    try:
        err = load_outcome(npz(tmp_path / "liar.npz", members))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err != "ok" and "declares" in str(err) and peak < 1 << 20, (err, peak)


def test_compressed_grid_larger_than_memory_is_a_memory_error_before_allocating(tmp_path, monkeypatch):
    """An honest but huge grid: 512**3 empty voxels compress to ~16 KB; with 8 MiB 'available' it is
    refused up front (8 GiB for 2048**3 on a real machine is the same check)."""
    import data.memory

    f = tmp_path / "big.npz"
    n = 512 ** 3
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        for name, value in {**grid_members(), "shape": np.array([512, 512, 512])}.items():
            if name != "occupancy_bits":
                z.writestr(f"{name}.npy", _npy(value))
        with z.open("occupancy_bits.npy", "w", force_zip64=True) as w:
            np.lib.format.write_array_header_1_0(w, {"descr": "|u1", "fortran_order": False, "shape": (n // 8,)})
            for _ in range(n // 8 // (1 << 20)):
                w.write(bytes(1 << 20))
    assert f.stat().st_size < 1 << 20
    monkeypatch.setattr(data.memory, "available_memory", lambda: 8 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match="512 x 512 x 512"):
            VoxelGrid.load(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ checkpoints
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(path, dict) of a valid tiny depth checkpoint."""
    from carve.depth import DepthModel
    from carve.learn.checkpoints import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "model.pt"
    save_model(DepthModel(widths=(4, 8), global_context=False), path, metadata={"note": "fuzz"},
               extra_tensors={"mean_depth": torch.ones(4, 4)})
    return path, torch.load(path, weights_only=True)


def ck_outcome(path):
    """'ok', or the CheckpointError (naming the file); anything else fails the test."""
    from carve.depth import DEPTH
    from carve.learn.checkpoints import CheckpointError, load_model

    try:
        model = load_model(path, DEPTH)
    except CheckpointError as err:
        assert str(path) in str(err) or str(Path(path).resolve()) in str(err), err
        return err
    assert all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point())
    return "ok"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on a flipped protocol byte
def test_checkpoint_fuzzed_files_raise_only_checkpoint_error(tmp_path, checkpoint):
    path, _ = checkpoint
    rng = np.random.default_rng(SEED)
    outcomes = []
    for k, blob in enumerate(mutations(path.read_bytes(), rng, 120)):
        f = tmp_path / f"m{k}.pt"
        f.write_bytes(blob)
        outcomes.append(ck_outcome(f))
    assert sum(o != "ok" for o in outcomes) > 40


def _entries(ck: dict) -> list:
    """Mutated copies of a checkpoint dict: each entry malformed, swapped or absurd."""
    sd, t = ck["state_dict"], ck["tensors"]
    first = next(iter(sd))
    nan = {**sd, first: torch.full_like(sd[first], float("nan"))}
    inf = {**sd, first: sd[first].clone().fill_(float("inf"))}
    return [
        {**ck, "tensors": [1, 2]}, {**ck, "tensors": {"mean_depth": 1.0}}, {**ck, "tensors": {1: torch.ones(1)}},
        {**ck, "tensors": {"forward": torch.ones(1)}}, {**ck, "tensors": {"unet": torch.ones(1)}},
        {**ck, "tensors": {"__class__": torch.ones(1)}}, {**ck, "tensors": {"a b": torch.ones(1)}},
        {**ck, "tensors": {"mean_depth": torch.tensor([float("nan")])}},
        {**ck, "state_dict": nan}, {**ck, "state_dict": inf}, {**ck, "state_dict": [1]},
        {**ck, "state_dict": {**sd, first: 3.0}}, {**ck, "state_dict": {**sd, 7: torch.ones(1)}},
        {**ck, "state_dict": {k: v for k, v in sd.items() if k != first}},
        {**ck, "state_dict": {**sd, "extra.weight": torch.ones(2)}},
        {**ck, "state_dict": {**sd, first: torch.ones(3, 3, 3, 3, 3)}},
        {**ck, "model_config": {"widths": [2048, 2048, 2048]}}, {**ck, "model_config": {"widths": "abc"}},
        {**ck, "model_config": {"widths": [10**30]}}, {**ck, "model_config": {"bogus": 1}},
        {**ck, "model_config": {"context_size": 2**40, "widths": [4, 8]}},
        {**ck, "model_config": [4, 8]}, {**ck, "model_config": {1: 2}}, {**ck, "metadata": [1]},
        {**ck, "train_state": 5}, {**ck, "task": 5}, {**ck, "task": "silhouette"}, {**ck, "version": "1"},
        {k: v for k, v in ck.items() if k != "format"}, {**ck, "format": None}, [ck], "carve3d-unet", None,
        {**ck, "model_config": ck["state_dict"], "state_dict": ck["model_config"]},  # two fields swapped
        {**ck, "tensors": t, "metadata": "notes"},
    ]


def test_checkpoint_malformed_entries_raise_checkpoint_error(tmp_path, checkpoint):
    _, ck = checkpoint
    for k, mutated in enumerate(_entries(ck)):
        f = tmp_path / f"e{k}.pt"
        torch.save(mutated, f)
        assert ck_outcome(f) != "ok", k


def test_checkpoint_non_finite_weights_are_refused_naming_the_tensor(tmp_path, checkpoint):
    _, ck = checkpoint
    name = sorted(k for k, v in ck["state_dict"].items() if v.is_floating_point())[3]
    f = tmp_path / "nan.pt"
    torch.save({**ck, "state_dict": {**ck["state_dict"], name: ck["state_dict"][name] * float("nan")}}, f)
    err = ck_outcome(f)
    assert "non-finite" in str(err) and repr(name) in str(err) and str(f) in str(err)


def test_small_checkpoint_declaring_a_large_network_builds_nothing_real(tmp_path, checkpoint, monkeypatch):
    """1.5 KB declaring widths (2048, 2048, 2048): the network is only ever built on the meta device."""
    from carve.depth import DEPTH
    from carve.learn.checkpoints import CheckpointError, load_model

    _, ck = checkpoint
    f = tmp_path / "large.pt"
    torch.save({**ck, "model_config": {"widths": [2048, 2048, 2048]}, "state_dict": {}, "tensors": {}}, f)
    assert f.stat().st_size < 4096
    devices = []
    real_build = type(DEPTH).build

    def build(**network):
        devices.append(torch.empty(0).device.type)  # the default device build runs under
        return real_build(**network)

    monkeypatch.setattr(type(DEPTH), "build", staticmethod(build))
    with pytest.raises(CheckpointError, match="missing weights"):
        load_model(f, DEPTH)
    assert devices == ["meta"]


def test_compressed_checkpoint_members_are_refused_before_loading(tmp_path, checkpoint):
    """torch.save stores members uncompressed; a deflated member could declare gigabytes."""
    path, _ = checkpoint
    f = tmp_path / "deflated.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            padding = bytes(1 << 16) if "/data/" in info.filename else b""  # zeros: they compress
            dst.writestr(info.filename, src.read(info.filename) + padding)
    assert "uncompressed" in str(ck_outcome(f))


def test_missing_model_paths_raise_checkpoint_error(tmp_path):
    from carve.depth import DEPTH, predict
    from carve.learn.checkpoints import CheckpointError, load_checkpoint

    loop = tmp_path / "loop.pt"
    loop.symlink_to(tmp_path / "loop2.pt")
    (tmp_path / "loop2.pt").symlink_to(loop)
    image = np.zeros((16, 16, 3), np.uint8)
    for bad in (tmp_path / "missing.pt", tmp_path, loop, tmp_path / "missing" / "x.pt"):
        with pytest.raises(CheckpointError, match="does not exist"):
            predict(image, model=bad)
        with pytest.raises(CheckpointError, match="does not exist"):
            load_checkpoint(bad, DEPTH)
