"""Binary marching cubes on run-length rows: a voxel surface at a cost that follows the surface.

A dense marching cubes visits every lattice cube (134M at 512). Here the occupancy is first read
once into its *toggles*: for each (x, y) row, the z positions where it switches between empty and
occupied. Everything after works on those lists, so its cost is the surface's:

- the z-edges the surface cuts are the toggles themselves;
- the x- and y-edges it cuts, between two neighbouring rows, are the runs where the rows differ,
  found by merging the two toggle lists (a position in both cancels);
- the cubes it crosses, along a row of cubes, are the union of its 12 edge rows' cut positions.

Each crossed cube then emits the triangles of its corner pattern from a table generated below for
the (6, 26) topology (foreground voxels joined by faces only, background by faces, edges and
corners: the pair :mod:`carve.topology` repairs for). On a face whose diagonal corners are occupied
the two occupied corners are cut off separately; in a cube whose only empty corners are a body
diagonal apart, a tube joins them. That is what marching cubes just above level 1/2 draws
(``skimage.measure.marching_cubes`` at 0.5 + 1e-3: the same vertices, the same Euler numbers), and
the mesh is watertight, 2-manifold and consistently oriented.

Vertices are on the midpoints of the cut lattice edges, so they are given in index units as
``index + 0.5 * e_axis``, with the occupied end of each edge, which :mod:`carve.surface` bisects on.
"""
from carve.marching.runs import binary_surface

__all__ = ["binary_surface"]
