"""MATLAB MAT-files: the variable names, and one numeric variable, read without scipy for version 5.

Our own reader of MAT-file v5 (MathWorks, "MAT-File Format", 2019): scipy.io.loadmat crashes the
interpreter (a segmentation fault) on some corrupt files, e.g. an unknown data type in a numeric
array. It reads what a P can be, numeric arrays and cells of them, plain or zlib-compressed, and
refuses everything else with a FormatError; version 4 files (no header text) still go to scipy,
whose v4 reader is plain Python.
"""
from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from data.errors import FormatError

__all__ = ["read_variable", "variable_names"]

#: MAT-file data types (miINT8 ... miUINT64) -> numpy type codes; 14 is a matrix, 15 zlib-compressed
_MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
#: array classes: 1 a cell array, 6..15 numeric (double, single, int8 ... uint64); flag bits of byte 2
_MX_CELL, _MX_NUMERIC = 1, range(6, 16)
_COMPLEX, _LOGICAL = 0x0800, 0x0200
#: the largest variable read (decompressed): 64 MiB is 700 000 cameras, so no real P is near it and a
#: compressed bomb stops there
_MAX_VARIABLE = 64 << 20
#: what is read of a larger variable to learn its name: flags, dimensions and a 63-character name fit
_NAME_BYTES = 256


def _element(buf, pos: int, end: int, order: str, mat: Path):
    """(data type, its bytes, the next element's position) of the data element at ``pos``."""
    if pos + 8 > end:
        raise FormatError(mat, f"MAT-file ends inside an element header (byte {pos})")
    kind, size = struct.unpack_from(order + "II", buf, pos)
    if kind >> 16:  # the small element format: size in the upper half, at most 4 bytes of data
        size, kind = kind >> 16, kind & 0xFFFF
        if size > 4:
            raise FormatError(mat, f"MAT-file: a small data element at byte {pos} declares {size} bytes, at most 4")
        return kind, buf[pos + 4:pos + 4 + size], pos + 8
    start = pos + 8
    if size > end - start:
        raise FormatError(mat, f"MAT-file: the element at byte {pos} declares {size} bytes, {end - start} remain")
    return kind, buf[start:start + size], start + size + (-size % 8)  # elements are padded to 8 bytes


def _array(buf, order: str, mat: Path, where: str, depth: int = 0):
    """(name, value) of the miMATRIX element body ``buf``: a float64/int/bool ndarray, or an object
    ndarray of them for a cell array."""
    if len(buf) == 0:  # MATLAB writes an empty cell entry as a matrix element of no bytes
        return "", np.zeros((0, 0))
    end = len(buf)
    kind, flags, pos = _element(buf, 0, end, order, mat)
    if kind != 6 or len(flags) != 8:
        raise FormatError(mat, f"MAT-file: {where} has no array flags (an 8-byte uint32 element)")
    flags = struct.unpack_from(order + "I", flags)[0]
    cls = flags & 0xFF
    kind, dims, pos = _element(buf, pos, end, order, mat)
    if kind != 5 or len(dims) % 4 or not 8 <= len(dims) <= 32:
        raise FormatError(mat, f"MAT-file: {where} has no dimensions (2 to 8 int32 numbers)")
    dims = [int(d) for d in np.frombuffer(dims, order + "i4")]
    if min(dims) < 0:
        raise FormatError(mat, f"MAT-file: {where} has negative dimensions {dims}")
    kind, name, pos = _element(buf, pos, end, order, mat)
    if kind not in (1, 2):
        raise FormatError(mat, f"MAT-file: {where} has no name (an int8 element)")
    name = bytes(name).decode("latin-1")
    count = math.prod(dims)
    if cls == _MX_CELL and depth == 0:
        if count > (end - pos) // 8:  # every cell takes a tag of 8 bytes at least
            raise FormatError(mat, f"MAT-file: {where} declares {count} cells, the file holds fewer")
        cells = np.empty(count, dtype=object)
        for k in range(count):
            kind, body, pos = _element(buf, pos, end, order, mat)
            if kind != _MI_MATRIX:
                raise FormatError(mat, f"MAT-file: cell {k + 1} of {where} is not a matrix (data type {kind})")
            cells[k] = _array(body, order, mat, f"cell {k + 1} of {where}", depth + 1)[1]
        return name, cells.reshape(dims, order="F")
    if cls not in _MX_NUMERIC:
        raise FormatError(mat, f"MAT-file: {where} is of MATLAB class {cls}, expected a numeric array"
                               f"{' or a cell array of them' if depth == 0 else ''}")
    if flags & _COMPLEX:
        raise FormatError(mat, f"MAT-file: {where} holds complex numbers, expected real ones")
    kind, real, pos = _element(buf, pos, end, order, mat)
    if kind not in _MI_TYPES:
        raise FormatError(mat, f"MAT-file: {where} has data of unknown type {kind}")
    dtype = np.dtype(_MI_TYPES[kind]).newbyteorder(order)
    if len(real) != count * dtype.itemsize:
        raise FormatError(mat, f"MAT-file: {where} is {'x'.join(map(str, dims))} but holds "
                               f"{len(real) // dtype.itemsize} numbers")
    values = np.frombuffer(real, dtype).reshape(dims, order="F")
    return name, values.astype(bool if flags & _LOGICAL else values.dtype.newbyteorder("="))


def _mat_version5(fh, mat: Path):
    """The byte order ("<" or ">") of a MAT-file v5 open in ``fh``, or None for a version 4 file
    (scipy's reader of those is plain Python); anything else is a FormatError, never scipy's v5
    reader's to crash on."""
    head = fh.read(128)
    if len(head) == 128 and 0 not in head[:4] and head[124:126] in (b"\x00\x02", b"\x02\x00"):
        raise FormatError(mat, "is a MATLAB v7.3 (HDF5) file; save it with -v7 to read it here")
    if 0 in head[:4]:
        return None  # version 4: its first bytes (a type code) hold zeros, a v5 header's text none
    if len(head) < 128 or head[126:128] not in (b"IM", b"MI"):
        raise FormatError(mat, "is not a MAT-file: no version 4 header, and no version 5 header (128 bytes "
                               "ending in 'IM' or 'MI')")
    order = "<" if head[126:128] == b"IM" else ">"
    if struct.unpack(order + "H", head[124:126])[0] != 0x0100:
        raise FormatError(mat, f"MAT-file version {head[124:126].hex()} is unknown; expected 5 (0100)")
    return order


def _mat_entries(fh, order: str, mat: Path, names_only: bool = False):
    """(name, body) of each variable of the MAT-file v5 ``fh``: its matrix element body (inflated when
    compressed), or None when ``names_only`` or for a variable past :data:`_MAX_VARIABLE` bytes (only
    its name is read then)."""
    size = fh.seek(0, 2)
    pos = 128
    while pos + 8 <= size:
        fh.seek(pos)
        kind, n = struct.unpack(order + "II", fh.read(8))
        start = pos + 8
        if kind >> 16:  # a small element (none at the top level in practice): 8 bytes, no variable
            pos = start
            continue
        if n > size - start:
            raise FormatError(mat, f"MAT-file: the element at byte {pos} declares {n} bytes, {size - start} remain")
        pos = start + n
        if kind not in (_MI_MATRIX, _MI_COMPRESSED):
            continue  # no variable in it
        fh.seek(start)
        large = names_only or n > _MAX_VARIABLE  # compressed, too: zlib shrinks at most ~1000-fold
        blob = fh.read(_NAME_BYTES if large else n)
        if kind == _MI_COMPRESSED:
            blob = _inflate(blob, order, mat, _NAME_BYTES if large else _MAX_VARIABLE)
        yield _name_of(blob, order, mat), None if large else blob


def _too_large(mat: Path, what: str):
    raise FormatError(mat, f"MAT-file: {what} is larger than the {_MAX_VARIABLE >> 20} MiB this reader takes; "
                           f"a file of projection matrices is far smaller")


def _inflate(blob, order: str, mat: Path, limit: int):
    """The matrix element body inside a compressed element, inflated up to ``limit`` bytes (all of it
    when ``limit`` is :data:`_MAX_VARIABLE`, else a prefix that holds its name)."""
    try:
        body = zlib.decompressobj().decompress(blob, limit + 9)
    except zlib.error as err:
        raise FormatError(mat, f"MAT-file: a compressed variable does not inflate ({err})") from None
    if len(body) < 8:
        raise FormatError(mat, "MAT-file: a compressed variable holds no element")
    kind, n = struct.unpack_from(order + "II", body)
    if kind != _MI_MATRIX:
        raise FormatError(mat, f"MAT-file: a compressed variable holds data of type {kind}, not a matrix")
    if limit < _MAX_VARIABLE:
        return body[8:]
    if n > _MAX_VARIABLE:
        _too_large(mat, "a compressed variable")
    if n > len(body) - 8:
        raise FormatError(mat, f"MAT-file: a compressed variable declares {n} bytes, {len(body) - 8} inflate")
    return body[8:8 + n]


def _name_of(body, order: str, mat: Path) -> str:
    """The name of a matrix element body, its third sub-element (after flags and dimensions)."""
    pos, end = 0, len(body)
    if end == 0:
        return ""
    for _ in range(2):
        pos = _element(body, pos, end, order, mat)[2]
    return bytes(_element(body, pos, end, order, mat)[1]).decode("latin-1")


def read_variable(mat: Path, want: str | None):
    """The variable names of a MAT-file (``want=None``) or the value of variable ``want`` (KeyError
    when it has none); None when the file is not version 5 (for scipy's v4 reader)."""
    mat = Path(mat)
    if not mat.is_file():
        raise FormatError(mat, "file is missing")
    with open(mat, "rb") as fh:
        order = _mat_version5(fh, mat)
        if order is None:
            return None
        names = []
        for name, body in _mat_entries(fh, order, mat, names_only=want is None):
            if want is None:
                names.append(name)
            elif name == want:
                if body is None:
                    _too_large(mat, f"variable {want}")
                return _array(body, order, mat, want)[1]
    return names if want is None else KeyError(want)


def variable_names(mat: Path) -> list[str]:
    names = read_variable(mat, None)
    if names is None:  # version 4: scipy's reader of it is plain Python
        from scipy.io import whosmat

        try:
            names = [name for name, _, _ in whosmat(str(mat))]
        except Exception as err:  # noqa: BLE001 - scipy raises many types for a bad file
            raise FormatError(mat, f"cannot be read as a MATLAB file ({err})") from None
    return names
