"""Seeded fuzzing of every dataset loader: small valid datasets of each format, their calibration
files mutated (truncated at random bytes, bits flipped, tokens or lines swapped, numbers made absurd,
JSON values given the wrong type), then loaded. A load may succeed, with finite cameras, or fail
with a FormatError naming a file of the dataset; any other exception is a bug.
"""
from __future__ import annotations

import json
import re
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import data
from data import FormatError
from data.images import write_image

W, H, VIEWS = 16, 12, 3
#: mutations per calibration file: ~700 loads of 3 tiny views in all, a few seconds
MUTATIONS = 60

#: numbers that break naive parsers: overflow, zero, negative, NaN, 2**63, a Unicode digit, units
ABSURD_TEXT = ["1e308", "-1e308", "-1", "0", "-0", "nan", "inf", "1e999", str(2**63), str(2**64), "1e-320",
               "\u00b3", "32px", "", "0x10", "9" * 5000]
#: the same for binary records, as the raw bytes of an int32, a uint64 or a double
ABSURD_BYTES = ([struct.pack("<i", v) for v in (0, -1, 2**31 - 1, -(2**31))]
                + [struct.pack("<Q", v) for v in (0, 2**63, 2**64 - 1, 10**12)]
                + [struct.pack("<d", v) for v in (np.nan, np.inf, -np.inf, 1e308, 0.0, -1.0, 5e-324)])
#: values a JSON field may hold instead of the right one
ABSURD_JSON = ["32px", [1, 2], [[1e308]], True, False, None, {}, {"a": 1}, float("inf"), float("nan"), 10**400,
               -1, 0, 1e308, "../outside.png", "/etc/passwd", "", [], [[]], "\u00b3"]


# ------------------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def source():
    return data.synthetic("torus", views=VIEWS, size=(W, H), seed=0)


def colmap_pose(R, T):
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return [w, x, y, z], list(T)


def write_colmap(mv, root, binary: bool):
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (root / "images").mkdir()
    cams, imgs = [], []
    cb = ib = struct.pack("<Q", len(mv))
    for i, (K, R, T, im) in enumerate(zip(mv.cameras.K, mv.cameras.R, mv.cameras.T, mv.images)):
        p = [K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5]  # COLMAP's pixel centres at +0.5
        q, t = colmap_pose(R, T)
        name = f"view_{i:02d}.png"
        cams.append(f"{i + 1} PINHOLE {W} {H} " + " ".join(f"{v:.17g}" for v in p))
        imgs += [f"{i + 1} " + " ".join(f"{v:.17g}" for v in [*q, *t]) + f" {i + 1} {name}", "1.5 2.5 -1"]
        cb += struct.pack("<iiQQ4d", i + 1, 1, W, H, *p)
        ib += struct.pack("<i7di", i + 1, *q, *t, i + 1) + name.encode() + b"\0" + struct.pack("<Q", 1)
        ib += struct.pack("<ddq", 1.5, 2.5, -1)
        write_image(root / "images" / name, im)
    if binary:
        (sparse / "cameras.bin").write_bytes(cb)
        (sparse / "images.bin").write_bytes(ib)
        return [sparse / "cameras.bin", sparse / "images.bin"]
    (sparse / "cameras.txt").write_text("# CAMERA_ID MODEL WIDTH HEIGHT PARAMS\n" + "\n".join(cams) + "\n")
    (sparse / "images.txt").write_text("# IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME\n" + "\n".join(imgs) + "\n")
    return [sparse / "cameras.txt", sparse / "images.txt"]


def write_middlebury(mv, root):
    root.mkdir(parents=True)
    lines = [str(len(mv))]
    for i, (K, R, T, im) in enumerate(zip(mv.cameras.K, mv.cameras.R, mv.cameras.T, mv.images)):
        write_image(root / f"toy{i:04d}.png", im)
        lines.append(f"toy{i:04d}.png " + " ".join(f"{v:.12g}" for v in np.concatenate([K.ravel(), R.ravel(), T])))
    (root / "toy_par.txt").write_text("\n".join(lines) + "\n")
    (root / "toy_good_silhouette_images.txt").write_text("toy0000.png\ntoy0002.png\n")
    return [root / "toy_par.txt", root / "toy_good_silhouette_images.txt"]


def write_oxford(mv, root):
    from scipy.io import savemat

    root.mkdir(parents=True)
    cells = np.empty((1, len(mv)), dtype=object)
    for i, P in enumerate(mv.cameras.P):
        cells[0, i] = P
    savemat(root / "toy_Ps.mat", {"P": cells})
    for i, im in enumerate(mv.images):
        write_image(root / f"viff.{i:03d}.ppm", im)
    return [root / "toy_Ps.mat"]


def write_saved(fmt):
    def write(mv, root):
        data.save(mv, root, format=fmt)
        return ([root / "calib" / "0000.txt", root / "bounds.txt"] if fmt == "tum" else [root / "transforms.json"])
    return write


WRITERS = {
    "tum": write_saved("tum"), "blender": write_saved("blender"), "middlebury": write_middlebury,
    "oxford": write_oxford, "colmap-text": lambda mv, root: write_colmap(mv, root, binary=False),
    "colmap-binary": lambda mv, root: write_colmap(mv, root, binary=True),
}


# ------------------------------------------------------------------------------------ mutations


def truncate(blob: bytes, rng) -> bytes:
    return blob[: int(rng.integers(0, len(blob)))]


def flip(blob: bytes, rng) -> bytes:
    out = bytearray(blob)
    for _ in range(int(rng.integers(1, 4))):
        pos = int(rng.integers(0, len(out)))
        out[pos] = int(rng.integers(0, 256)) if rng.random() < 0.5 else out[pos] ^ (1 << int(rng.integers(0, 8)))
    return bytes(out)


def swap_tokens(blob: bytes, rng) -> bytes:
    """Two whitespace-separated tokens (or, one time in three, two lines) trade places."""
    by_line = rng.random() < 1 / 3
    parts = blob.split(b"\n") if by_line else re.split(rb"(\s+)", blob)  # separators kept as parts
    idx = [i for i, p in enumerate(parts) if p.strip()]
    if len(idx) < 2:
        return blob
    a, b = rng.choice(idx, 2, replace=False)
    parts[a], parts[b] = parts[b], parts[a]
    return (b"\n" if by_line else b"").join(parts)


def absurd_number(blob: bytes, rng) -> bytes:
    """A number of a text file, or 4 or 8 aligned bytes of a binary one, replaced by an absurd value."""
    if b"\0" in blob:  # binary
        new = ABSURD_BYTES[int(rng.integers(len(ABSURD_BYTES)))]
        pos = int(rng.integers(0, max(1, (len(blob) - len(new)) // 4 + 1))) * 4
        return blob[:pos] + new + blob[pos + len(new):]
    parts = re.split(rb"([-+0-9.eE]+)", blob)
    idx = [i for i in range(1, len(parts), 2) if re.search(rb"[0-9]", parts[i])]
    if not idx:
        return blob
    parts[int(rng.choice(idx))] = ABSURD_TEXT[int(rng.integers(len(ABSURD_TEXT)))].encode()
    return b"".join(parts)


MUTATORS = (truncate, flip, swap_tokens, absurd_number)


def json_mutation(meta: dict, rng) -> str:
    """A transforms.json with one value replaced by another type, two values swapped, or a node deleted."""
    meta = json.loads(json.dumps(meta))
    slots = []  # (container, key) of every value in the document

    def walk(node):
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            slots.append((node, k))
            walk(v)
    walk(meta)
    kind = rng.integers(4)
    if kind == 0:
        node, k = slots[int(rng.integers(len(slots)))]
        node[k] = ABSURD_JSON[int(rng.integers(len(ABSURD_JSON)))]
    elif kind == 1:
        (n1, k1), (n2, k2) = (slots[int(i)] for i in rng.choice(len(slots), 2, replace=False))
        try:
            n1[k1], n2[k2] = n2[k2], n1[k1]
        except RecursionError:  # swapped a node into its own child
            pass
    elif kind == 2:
        node, k = slots[int(rng.integers(len(slots)))]
        del node[k]
    else:
        return "[" * 100_000 + "]" * 100_000  # past the recursion limit of json.loads
    try:
        return json.dumps(meta, indent=1)
    except (RecursionError, ValueError):
        return json.dumps({"frames": meta.get("frames", [])}, default=str)


# ----------------------------------------------------------------------------------------- tests


def check_load(root: Path, fmt: str, what: str):
    """Load ``root``: finite cameras or a FormatError naming a file of the dataset; anything else fails."""
    name = "colmap" if fmt.startswith("colmap") else fmt
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-metric K, extra images: warned about, not our subject
            mv = data.load(root, format=name, verbose=False)
    except FormatError as err:
        assert err.path == root or root in err.path.parents, (what, str(err))
        assert str(err).startswith(f"{err.path}"), (what, str(err))
        return False
    except Exception as err:  # noqa: BLE001 - the point of the test
        raise AssertionError(f"{fmt}, {what}: {type(err).__name__}: {err}") from err
    assert np.isfinite(mv.cameras.P).all(), what
    return True


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_mutated_calibration_files_fail_cleanly(source, tmp_path, fmt):
    root = tmp_path / fmt
    targets = WRITERS[fmt](source, root)
    assert check_load(root, fmt, "the valid dataset")
    rng = np.random.default_rng(sorted(WRITERS).index(fmt))
    outcomes = []
    for target in targets:
        original = target.read_bytes()
        for k in range(MUTATIONS):
            mutate = MUTATORS[k % len(MUTATORS)]
            blob = mutate(original, rng)
            target.write_bytes(blob)
            outcomes.append(check_load(root, fmt, f"{target.name} after {mutate.__name__} #{k}: {blob[:200]!r}"))
        target.write_bytes(original)
    assert not all(outcomes)  # the mutations do reach the parsers


def test_blender_json_values_of_every_wrong_type_fail_cleanly(source, tmp_path):
    root = data.save(source, tmp_path / "nerf", format="blender")
    f = root / "transforms.json"
    meta = json.loads(f.read_text())
    rng = np.random.default_rng(7)
    for k in range(150):
        text = json_mutation(meta, rng)
        f.write_text(text)
        check_load(root, "blender", f"json mutation #{k}: {text[:300]}")

