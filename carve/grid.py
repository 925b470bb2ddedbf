"""A voxel occupancy grid in world units: counting, centres, Open3D, files (surfaces: carve.mesh).

Convention:
    The grid is the axis-aligned box ``[lo, hi]`` cut into cubes of side ``voxel_size``; voxel
    (i, j, k) has centre ``lo + (idx + 0.5) * voxel_size`` and ``occupancy`` is indexed [i, j, k] =
    [x, y, z]. ``hi = lo + shape * voxel_size`` (the grid may overhang a requested box by less than a
    voxel).

A grid holds its occupancy dense, or as run-length rows (:class:`carve.runlength.Runs`, what the
coarse-to-fine carving returns): then counting and meshing cost in proportion to the surface, and the
dense array is made only when ``occupancy`` is first read (from then on it is the grid's occupancy).
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from carve.runlength import Runs, occupancy_runs

__all__ = ["VoxelGrid", "surface_voxels"]

_FORMAT = "carve3d.VoxelGrid/1"


class VoxelGrid:
    """Occupancy of a box of cubic voxels.

    Args:
        occupancy: (nx, ny, nz) bool, indexed [x, y, z], or its :class:`carve.runlength.Runs`.
        lo: (3,) world position of the box's minimum corner.
        voxel_size: side of a voxel in world units (> 0).
        colors: optional (M, 3) uint8 RGB of the M occupied voxels, in :meth:`points` order (what
            :func:`carve.refine.space_carve` returns); kept by :meth:`save`, drawn by :meth:`to_open3d`.

    Example:
        >>> import numpy as np
        >>> occ = np.zeros((4, 4, 4), bool); occ[1:3, 1:3, 1:3] = True
        >>> grid = VoxelGrid(occ, lo=[0, 0, 0], voxel_size=0.5)
        >>> grid.count(), grid.hi.tolist(), grid.points()[0].tolist()
        (8, [2.0, 2.0, 2.0], [0.75, 0.75, 0.75])
    """

    def __init__(self, occupancy, lo, voxel_size, colors=None):
        if isinstance(occupancy, Runs):
            nx, ny, _ = occupancy.shape
            if len(occupancy.start) != (nx + 2) * (ny + 2) + 1 or len(occupancy.toggles) % 2:
                raise ValueError(f"occupancy runs must hold {(nx + 2) * (ny + 2) + 1} row offsets and an even number "
                                 f"of toggles for shape {occupancy.shape}, got {len(occupancy.start)} and "
                                 f"{len(occupancy.toggles)}")
            self._runs, self._dense = occupancy, None
        else:
            occupancy = np.asarray(occupancy)
            if occupancy.ndim != 3:
                raise ValueError(f"occupancy must have shape (nx, ny, nz), got {occupancy.shape}")
            if occupancy.dtype != bool:
                raise TypeError(f"occupancy must be a bool array, got dtype {occupancy.dtype}; use occupancy > 0.5 "
                                "or != 0")
            self._runs, self._dense = None, occupancy
        lo = np.asarray(lo, dtype=np.float64)
        if lo.shape != (3,) or not np.isfinite(lo).all():
            raise ValueError(f"lo must be 3 finite numbers, got {lo.tolist()}")
        if isinstance(voxel_size, bool) or not np.isscalar(voxel_size) or not np.isfinite(voxel_size) \
                or voxel_size <= 0:
            raise ValueError(f"voxel_size must be a finite number > 0, got {voxel_size!r}")
        if colors is not None:
            colors = np.asarray(colors)
            m = self.count()
            if colors.shape != (m, 3) or colors.dtype != np.uint8:
                raise ValueError(f"colors must be (M, 3) uint8 for the M = {m} occupied voxels, got "
                                 f"{colors.shape} {colors.dtype}")
        self.lo = lo
        self.voxel_size = float(voxel_size)
        self.colors = colors

    # --------------------------------------------------------------------------------------- basics
    @property
    def occupancy(self) -> np.ndarray:
        """(nx, ny, nz) bool, indexed [x, y, z]; made from the run-length rows on first use."""
        if self._dense is None:
            self._dense, self._runs = self._runs.to_occupancy(), None  # the array may be written to
        return self._dense

    @property
    def holds_dense(self) -> bool:
        """Whether the grid holds a dense (nx, ny, nz) array (False: run-length rows only)."""
        return self._dense is not None

    @property
    def runs(self) -> Runs:
        """The occupancy's run-length rows (:mod:`carve.runlength`): the grid's own when it holds them
        (no pass over the lattice), else read from the dense array."""
        return self._runs if self._runs is not None else occupancy_runs(self._dense)

    @property
    def shape(self) -> tuple:
        """(nx, ny, nz)."""
        return tuple(int(n) for n in (self._runs.shape if self._runs is not None else self._dense.shape))

    @property
    def hi(self) -> np.ndarray:
        """(3,) maximum corner of the box, ``lo + shape * voxel_size``."""
        return self.lo + np.array(self.shape) * self.voxel_size

    def count(self) -> int:
        """Number of occupied voxels."""
        return self._runs.count() if self._runs is not None else int(np.count_nonzero(self._dense))

    def points(self) -> np.ndarray:
        """Centres of the occupied voxels, (M, 3) float64 world coordinates, in [x, y, z] index order."""
        idx = np.argwhere(self.occupancy)
        return self.lo + (idx + 0.5) * self.voxel_size

    def __repr__(self) -> str:
        nx, ny, nz = self.shape
        return (f"VoxelGrid({nx} x {ny} x {nz}, voxel_size={self.voxel_size:.6g}, occupied={self.count()}, "
                f"lo={np.round(self.lo, 6).tolist()}, hi={np.round(self.hi, 6).tolist()})")

    # --------------------------------------------------------------------------------------- frames
    def in_dataset_frame(self, world_from_dataset) -> "VoxelGrid":
        """The same occupied space in a dataset's own frame (``X_world = world_from_dataset @ X_dataset``).

        Exact for a map whose linear part is an axis permutation with signs (reflections) times a
        positive scale: the occupancy is transposed and flipped to match, ``lo``/``hi`` mapped (a
        reflected axis starts at the mapped ``hi``), the voxel size scaled. The identity returns
        ``self``.

        Args:
            world_from_dataset: (4, 4) affine map, e.g. ``MultiView.world_from_dataset``.

        Raises:
            ValueError: the map rotates or shears the axes (no grid of axis-aligned voxels holds it).

        Example:
            >>> occ = np.zeros((2, 3, 4), bool); occ[0, 0, 0] = True
            >>> g = VoxelGrid(occ, [0, 0, 0], 1.0).in_dataset_frame(np.diag([1.0, 1.0, -1.0, 1.0]))
            >>> g.lo.tolist(), g.hi.tolist(), bool(g.occupancy[0, 0, 3])
            ([0.0, 0.0, -4.0], [2.0, 3.0, 0.0], True)
        """
        frame = np.asarray(world_from_dataset, dtype=np.float64)
        if frame.shape != (4, 4) or not np.isfinite(frame).all() or not np.allclose(frame[3], [0, 0, 0, 1]):
            raise ValueError(f"world_from_dataset must be a finite (4, 4) affine matrix, got {frame.tolist()}")
        if np.array_equal(frame, np.eye(4)):
            return self
        inv = np.linalg.inv(frame)  # dataset_from_world
        L, t = inv[:3, :3], inv[:3, 3]
        axis = np.argmax(np.abs(L), axis=1)  # dataset axis a comes from world axis axis[a]
        gain = L[np.arange(3), axis]
        scale = np.abs(gain)
        rest = L.copy()
        rest[np.arange(3), axis] = 0
        if sorted(axis.tolist()) != [0, 1, 2] or np.abs(rest).max() > 1e-12 * scale.max() \
                or np.ptp(scale) > 1e-12 * scale.max():
            raise ValueError(f"world_from_dataset must map axes to axes (a permutation with reflections and one "
                             f"scale) for a voxel grid to follow it exactly, got linear part {frame[:3, :3].tolist()}")
        flip = tuple(int(a) for a in np.flatnonzero(gain < 0))

        def moved(volume):
            volume = np.transpose(volume, axis)
            return np.ascontiguousarray(np.flip(volume, axis=flip) if flip else volume)

        occ = moved(self.occupancy)
        colors = None
        if self.colors is not None:  # the colours follow their voxels into the new points() order
            order = np.full(self.shape, -1, np.int64)
            order[self.occupancy] = np.arange(len(self.colors))
            colors = self.colors[moved(order)[occ]]
        corner = np.where(gain > 0, self.lo[axis], self.hi[axis])
        return VoxelGrid(occ, gain * corner + t, self.voxel_size * float(scale[0]), colors)

    # -------------------------------------------------------------------------------------- meshing
    def to_mesh(self, images=None, cameras=None, smooth=0.0, progress=None, *, masks=None, outside="auto",
                repair=True):
        """The surface of the occupied voxels by marching cubes, in world units (:mod:`carve.mesh`).

        The grid is padded by one empty voxel so the mesh is closed (watertight where the object does
        not touch the box's faces); faces are wound counter-clockwise seen from outside. Without
        ``masks``, vertex positions are world positions of the voxel-centre lattice ``lo + (index +
        0.5) * voxel_size`` (midpoints of its edges); with the silhouettes the grid was carved from,
        each vertex moves along its lattice edge onto the hull's own surface, at sub-pixel precision
        (:func:`carve.surface.snap_to_hull`): same faces and topology, a mesh no longer on the lattice.

        Args:
            masks: the B (H, W) silhouettes the grid was carved from (with ``cameras``), to put the
                vertices on the hull's surface; not with ``smooth``.
            outside: the carving's outside policy, for ``masks`` (see :func:`carve.carve`).
            images: optional (B, H, W, 3) RGB images (uint8, or float in [0, 1]) or a list of them, to
                colour the vertices: each vertex gets the average colour of the views that see it
                (in front, inside the image, facing the camera, not occluded by the mesh), weighted by
                how frontally they see it; vertices no view sees are grey.
            cameras: the :class:`geometry.Camera` of the B images (needed with ``images``).
            smooth: Gaussian smoothing of the occupancy before meshing, in voxels (0: the exact
                voxel surface, a staircase; about 1 gives a smooth surface).
            progress: show a progress bar while colouring (default: :func:`data.progress.progress`'s rule).
            repair: leave out the islands and handles thinner than three voxels that carving at a fine
                resolution grows (:func:`carve.topology.repair`), so the mesh has the object's genus;
                False meshes every voxel.

        Returns:
            ``trimesh.Trimesh`` (with ``visual.vertex_colors`` (V, 4) uint8 when images are given); an
            empty one for an empty grid.

        Example:
            >>> occ = np.zeros((5, 5, 5), bool); occ[1:4, 1:4, 1:4] = True
            >>> mesh = VoxelGrid(occ, [0, 0, 0], 1.0).to_mesh()
            >>> mesh.is_watertight, mesh.bounds.tolist()
            (True, [[1.0, 1.0, 1.0], [4.0, 4.0, 4.0]])
        """
        from carve.mesh import lattice_surface, vertex_colors, voxel_surface

        if images is not None and cameras is None:
            raise ValueError("images and cameras must be given together to colour the mesh, got only images")
        if masks is not None and (cameras is None or smooth):
            raise ValueError("masks need their cameras and smooth=0 to put the vertices on the hull, got "
                             + ("no cameras" if cameras is None else f"smooth={smooth}"))
        if cameras is not None and images is None and masks is None:
            raise ValueError("cameras need images (to colour) or masks (to snap to the hull), got only cameras")
        if masks is not None:
            from carve.surface import snap_to_hull

            mesh, axis = lattice_surface(self, repair)
            mesh = snap_to_hull(mesh, self, masks, cameras, outside=outside, occupied_axis=axis)
        else:
            mesh = voxel_surface(self, smooth, repair)
        if images is not None and len(mesh.vertices):
            mesh.visual.vertex_colors = vertex_colors(mesh, images, cameras, self.voxel_size, progress)
        return mesh

    # -------------------------------------------------------------------------------------- Open3D
    def to_open3d(self, surface_only=False, color=None):
        """An ``open3d.geometry.VoxelGrid`` with the same origin, voxel size and occupied voxels.

        Args:
            surface_only: keep only occupied voxels with an empty 6-neighbour (far fewer to draw).
            color: optional RGB in [0, 1] for every voxel (default: the grid's ``colors`` when it has them).
        """
        import open3d as o3d

        occ = self.occupancy
        if surface_only:
            occ = surface_voxels(occ)
        pcd = o3d.geometry.PointCloud()
        pts = self.lo + (np.argwhere(occ) + 0.5) * self.voxel_size
        pcd.points = o3d.utility.Vector3dVector(pts)
        if color is None and self.colors is not None:
            own = self.colors[occ[self.occupancy]] if surface_only else self.colors
            pcd.colors = o3d.utility.Vector3dVector(own.astype(np.float64) / 255)
        if color is not None:
            color = np.asarray(color, dtype=np.float64)
            if color.shape != (3,) or not np.all((color >= 0) & (color <= 1)):
                raise ValueError(f"color must be 3 numbers in [0, 1], got {color.tolist()}")
            pcd.colors = o3d.utility.Vector3dVector(np.broadcast_to(color, pts.shape).copy())
        return o3d.geometry.VoxelGrid.create_from_point_cloud_within_bounds(pcd, self.voxel_size, self.lo, self.hi)

    # ---------------------------------------------------------------------------------------- files
    def save(self, path) -> Path:
        """Write the grid to a compressed ``.npz`` (bit-packed occupancy); returns the path written.

        ``.npz`` is appended when the name lacks it. The file is written to a temporary name and
        renamed, so a failure leaves no partial file.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        if not path.parent.is_dir():
            raise ValueError(f"path must be in an existing directory, got {str(path)!r}")
        from data.files import atomic_path

        with atomic_path(path) as tmp:
            extra = {} if self.colors is None else {"colors": self.colors}
            np.savez_compressed(tmp, format=np.array(_FORMAT), shape=np.array(self.shape, np.int64),
                                lo=self.lo, voxel_size=np.array(self.voxel_size),
                                occupancy_bits=np.packbits(self.occupancy.reshape(-1)), **extra)
        return path

    @classmethod
    def load(cls, path) -> "VoxelGrid":
        """Read a grid written by :meth:`save`.

        A grid file is untrusted input: the sizes it declares (the grid's shape, each member's
        uncompressed size, each array's header) are checked against each other and the grid against
        the available memory before anything large is read, so a small file cannot make it allocate
        gigabytes.

        Raises:
            FileNotFoundError: ``path`` is not an existing file.
            ValueError: (a :class:`data.errors.FormatError` naming the file) not a VoxelGrid ``.npz``,
                truncated or corrupt, or inconsistent.
            MemoryError: the grid it declares does not fit in the available memory.
        """
        from data.errors import FormatError

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path must name an existing .npz file, got {str(path)!r}")
        try:
            with zipfile.ZipFile(path) as archive:
                occ, lo, voxel_size, colors = _read_grid(archive, path)
        except (FormatError, MemoryError):
            raise
        except _CORRUPT as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise FormatError(path, f"path must be a VoxelGrid .npz file ({_FORMAT}); this one is truncated or "
                                    f"corrupt ({type(err).__name__}: {first})") from None
        try:
            grid = cls(occ, lo, voxel_size, colors)
            with np.errstate(over="ignore"):
                hi = grid.hi
            if not np.isfinite(hi).all():
                raise ValueError(f"its box ends at hi={hi.tolist()}")
            return grid
        except (TypeError, ValueError) as err:
            raise FormatError(path, f"path must be a VoxelGrid .npz file ({_FORMAT}); this one holds a bad "
                                    f"grid: {err}") from None


# ------------------------------------------------------------------------------------ grid files
#: what a damaged zip or .npy member raises while it is read: bad headers and CRCs (BadZipFile),
#: deflate errors (zlib.error), a truncated stream (EOFError), a bad offset (OSError), a bad .npy
#: header or a name that is not UTF-8 (ValueError), an unsupported or encrypted member (RuntimeError,
#: NotImplementedError); tests/test_files_fuzz.py finds these and no others
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError)
_MEMBERS = ("format", "shape", "lo", "voxel_size", "occupancy_bits")
_SMALL = 1 << 12  # bytes: the members but the occupancy hold a few numbers each (an .npy header is 128)


def _read_grid(archive: zipfile.ZipFile, path: Path) -> tuple:
    """(occupancy, lo, voxel_size, colors or None) of an opened grid file, every declared size checked first."""
    from data.errors import FormatError
    from data.memory import require_memory

    def bad(reason):
        return FormatError(path, f"path must be a VoxelGrid .npz file ({_FORMAT}); {reason}")

    members = {info.filename[:-4]: info for info in archive.infolist() if info.filename.endswith(".npy")}
    if not set(_MEMBERS) <= set(members):
        raise bad(f"this one holds {sorted(members)}")
    for name in _MEMBERS[:-1]:
        if members[name].file_size > _SMALL:
            raise bad(f"its {name!r} member declares {members[name].file_size} bytes, a few numbers expected")
    small = {name: _read_member(archive, members[name], bad) for name in _MEMBERS[:-1]}
    fmt, shape = small["format"], small["shape"]
    if fmt.dtype.kind != "U" or fmt.shape != () or str(fmt) != _FORMAT:
        raise bad(f"its format entry is {fmt.tolist()!r}")
    if shape.dtype.kind not in "iu" or shape.shape != (3,) or (shape < 0).any():
        raise bad(f"its shape entry must be 3 non-negative ints, got {shape.tolist()!r}")
    shape = tuple(int(n) for n in shape)
    n = shape[0] * shape[1] * shape[2]  # Python ints: no overflow
    voxel_size = small["voxel_size"]
    if voxel_size.shape != () or voxel_size.dtype.kind not in "fiu":
        raise bad(f"its voxel_size entry must be one number, got {voxel_size.tolist()!r}")
    bits = members["occupancy_bits"]
    declared = _member_header(archive, bits, bad)
    if declared != (np.dtype(np.uint8), ((n + 7) // 8,)):
        raise bad(f"its occupancy_bits member holds {declared[0]} {declared[1]}, but a {shape[0]} x {shape[1]} x "
                  f"{shape[2]} grid needs uint8 ({(n + 7) // 8},)")
    require_memory(n + (n + 7) // 8, f"the {shape[0]} x {shape[1]} x {shape[2]} grid of {str(path)!r}",
                   "load it on a machine with more memory")
    occ = np.unpackbits(_read_member(archive, bits, bad), count=n).reshape(shape).view(bool)  # 0/1: a view
    colors = None
    if "colors" in members:  # optional: a space-carved grid's voxel colours
        m = int(np.count_nonzero(occ))
        declared = _member_header(archive, members["colors"], bad)
        if declared != (np.dtype(np.uint8), (m, 3)):
            raise bad(f"its colors member holds {declared[0]} {declared[1]}, but {m} occupied voxels need uint8 ({m}, 3)")
        colors = _read_member(archive, members["colors"], bad)
    return occ, small["lo"], float(voxel_size), colors


def _member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, bad) -> tuple:
    """(dtype, shape) an ``.npy`` member's header declares, checked: a plain dtype, and a data size that
    is exactly what the zip entry declares (the stream cannot outgrow it), before anything is allocated."""
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        header = f.tell()
    name = info.filename[:-4]
    if dtype.hasobject:
        raise bad(f"its {name!r} member holds Python objects ({dtype}), plain numbers expected")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if header + nbytes != info.file_size:  # what np.save writes
        raise bad(f"its {name!r} member declares {info.file_size} bytes, but its array needs {header + nbytes}")
    return dtype, shape


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, bad) -> np.ndarray:
    """One ``.npy`` member, read after :func:`_member_header` has checked its sizes."""
    _member_header(archive, info, bad)
    with archive.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


# ---------------------------------------------------------------------------------------- helpers
def surface_voxels(occ: np.ndarray) -> np.ndarray:
    """(nx, ny, nz) bool: the occupied voxels of ``occ`` with an empty 6-neighbour or on the grid's faces."""
    return occ & ~_interior(occ)


def _interior(occ):
    """Occupied voxels whose 6 neighbours are all occupied (voxels on the grid's faces are not interior)."""
    inner = np.zeros_like(occ)
    core = occ[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for shift in (-1, 1):
            core &= np.roll(occ, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    inner[1:-1, 1:-1, 1:-1] = core
    return inner
