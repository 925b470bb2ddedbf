"""carve.texture: the UV atlas baked from the views, checked against the colours the renderer painted,
and the GLB / OBJ files read back by trimesh and Open3D; reconstruct --texture end to end."""
import subprocess
import sys

import numpy as np
import pytest

import carve
import data
from carve.texture import _fill_gutters, texture_mesh, write_textured
from data import objects
from data.textures import texture_factor
from geometry import Camera

SPEC = {"kind": "stripes", "scale": 1.5, "contrast": 0.8, "color": (200, 40, 20)}
RADIUS = 0.8


@pytest.fixture(scope="module")
def views():
    """A white sphere painted with stripes, rendered unlit (ambient 1: each pixel is the albedo the
    renderer painted) from 24 views: (images, cameras, masks)."""
    sphere = objects.textured(objects.sphere(RADIUS), kind=SPEC["kind"], scale=SPEC["scale"],
                              contrast=SPEC["contrast"], color=SPEC["color"])
    sphere.visual.vertex_colors = np.full((len(sphere.vertices), 4), 255, np.uint8)
    cams = data.turntable(24, width=160, height=120)
    images, _, masks = data.render(sphere, cams, ambient=1.0)
    return images, cams, masks


@pytest.fixture(scope="module")
def baked(views):
    """(the hull at 48 textured at 256 texels, the grid)."""
    images, cams, masks = views
    grid = carve.carve(masks, cams, resolution=48, bounds=([-1, -1, -1], [1, 1, 1]))
    return texture_mesh(grid.to_mesh(), images, cams, grid.voxel_size, size=256, progress=False), grid


def texel_points(mesh):
    """(N, 3) surface points of the chart texels and their (N, 3) baked colours, uint8."""
    from carve.texture import _rasterize

    image = np.asarray(mesh.visual.material.image)
    size = image.shape[0]
    face_of, bary = _rasterize(np.asarray(mesh.visual.uv) * size, np.asarray(mesh.faces), size)
    inside = face_of >= 0
    tri = np.asarray(mesh.vertices)[np.asarray(mesh.faces)[face_of[inside]]]
    points = np.einsum("nk,nkd->nd", bary[inside], tri)
    return points, image[inside]


def test_baked_colours_are_the_painted_ones(baked):
    mesh, grid = baked
    points, colours = texel_points(mesh)
    assert len(points) > 10_000
    on_sphere = points / np.linalg.norm(points, axis=1, keepdims=True) * RADIUS
    truth = 255 * texture_factor(SPEC, on_sphere)
    error = np.abs(colours.astype(float) - truth).max(1)
    seen = points[:, 2] > -0.2 * RADIUS  # the turntable's views look from above; the bottom is unseen
    assert np.median(error[seen]) < 6, np.median(error[seen])
    assert np.percentile(error[seen], 90) < 20, np.percentile(error[seen], 90)


def test_texture_beats_vertex_colours_on_the_same_mesh(baked, views):
    """At texel resolution the stripes are sharper than vertex colours interpolated across faces."""
    from carve.mesh import vertex_colors
    from carve.texture import _rasterize

    mesh, grid = baked
    vc = vertex_colors(mesh, views[0], views[1], grid.voxel_size, progress=False)[:, :3].astype(float)
    points, colours = texel_points(mesh)

    size = np.asarray(mesh.visual.material.image).shape[0]
    face_of, bary = _rasterize(np.asarray(mesh.visual.uv) * size, np.asarray(mesh.faces), size)
    inside = face_of >= 0
    interpolated = np.einsum("nk,nkc->nc", bary[inside], vc[np.asarray(mesh.faces)[face_of[inside]]])
    truth = 255 * texture_factor(SPEC, points / np.linalg.norm(points, axis=1, keepdims=True) * RADIUS)
    seen = points[:, 2] > -0.2 * RADIUS
    texture_error = np.abs(colours - truth).max(1)[seen].mean()
    vertex_error = np.abs(interpolated - truth).max(1)[seen].mean()
    assert texture_error < vertex_error, (texture_error, vertex_error)


def test_seams_do_not_show(baked):
    """Texels of two charts that meet on the surface hold the same colour: across every seam edge,
    the texture sampled at the edge's midpoint in both charts agrees."""
    mesh, _ = baked
    image = np.asarray(mesh.visual.material.image).astype(float)
    size = image.shape[0]
    uv, faces, verts = np.asarray(mesh.visual.uv), np.asarray(mesh.faces), np.asarray(mesh.vertices)
    # a seam edge: two face edges with the same 3-D end points but different uv
    key = {}
    differences = []
    for f in range(len(faces)):
        for k in range(3):
            a, b = faces[f, k], faces[f, (k + 1) % 3]
            ends = tuple(sorted([tuple(np.round(verts[a], 9)), tuple(np.round(verts[b], 9))]))
            mid_uv = (uv[a] + uv[b]) / 2
            if ends in key and not np.allclose(key[ends], mid_uv, atol=1e-6):
                colour = [image[min(int((1 - m[1]) * size), size - 1), min(int(m[0] * size), size - 1)]
                          for m in (key[ends], mid_uv)]
                differences.append(np.abs(colour[0] - colour[1]).max())
            key.setdefault(ends, mid_uv)
    assert len(differences) > 50  # the sphere has seams
    assert np.median(differences) < 8, np.median(differences)


def test_gutters_take_the_nearest_chart_colour():
    image = np.zeros((4, 4, 3), np.uint8)
    image[1, 1] = [10, 20, 30]
    image[2, 3] = [200, 100, 0]
    inside = np.zeros((4, 4), bool)
    inside[1, 1] = inside[2, 3] = True
    filled = _fill_gutters(image, inside)
    assert filled[0, 0].tolist() == [10, 20, 30] and filled[3, 3].tolist() == [200, 100, 0]
    assert filled[1, 1].tolist() == [10, 20, 30]


def test_gutters_take_a_nearest_chart_texel_exactly_where_filtering_reads():
    """Each texel's colour names the texel it came from: within 3 texels of a chart that source is a
    nearest one (SciPy's exact distance), and nowhere more than a texel farther than the nearest."""
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(3)
    inside = np.zeros((200, 200), bool)
    for r, c, h, w in rng.integers([0, 0, 1, 1], [190, 190, 12, 12], (60, 4)):
        inside[r:r + h, c:c + w] = True
    rows, cols = np.indices(inside.shape)
    image = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)  # colour = own row, column
    filled = _fill_gutters(image, inside)
    assert (filled[inside] == image[inside]).all()
    source = filled[..., :2].astype(float)
    assert inside[filled[..., 0], filled[..., 1]].all()  # every colour is a chart texel's
    got = np.hypot(source[..., 0] - rows, source[..., 1] - cols)
    nearest = distance_transform_edt(~inside)
    near = nearest <= 3
    assert np.allclose(got[near], nearest[near]), np.abs(got - nearest)[near].max()
    assert (got - nearest).max() < 1.0, (got - nearest).max()


@pytest.mark.parametrize("suffix", [".glb", ".obj"])
def test_files_read_back_in_trimesh_and_open3d(baked, tmp_path, suffix):
    import open3d as o3d
    import trimesh

    mesh, _ = baked
    written = write_textured(mesh, tmp_path / f"ball{suffix}")
    assert written[0] == tmp_path / f"ball{suffix}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    back = trimesh.load(written[0], force="mesh")
    assert len(back.faces) == len(mesh.faces)
    assert np.asarray(back.visual.material.image if hasattr(back.visual.material, "image") else
                      back.visual.material.baseColorTexture).shape[:2] == (256, 256)
    o = o3d.io.read_triangle_mesh(str(written[0]), True)
    assert len(o.triangles) == len(mesh.faces) and o.has_triangle_uvs() and o.has_textures()



def test_one_png_encoding_serves_both_files_losslessly(baked, tmp_path):
    import trimesh

    from carve.texture import texture_png

    mesh, _ = baked
    png = texture_png(mesh)
    painted = np.asarray(mesh.visual.material.image)
    glb = trimesh.load(write_textured(mesh, tmp_path / "ball.glb", png=png)[0], force="mesh")
    assert np.array_equal(np.asarray(glb.visual.material.baseColorTexture)[..., :3], painted)
    obj = write_textured(mesh, tmp_path / "ball.obj", png=png)
    assert obj[2].read_bytes() == png
    again = write_textured(glb, tmp_path / "again.glb")  # a texture read back (glTF's material) writes too
    assert np.array_equal(np.asarray(trimesh.load(again[0], force="mesh").visual.material.baseColorTexture)[..., :3],
                          painted)
    with pytest.raises(TypeError, match="png must be the texture's PNG bytes"):
        write_textured(mesh, tmp_path / "x.glb", png="ball.png")


def test_views_of_different_sizes_are_stacked_with_their_own_sizes():
    from carve.texture import _stacked

    a, b = np.full((4, 6, 3), 7, np.uint8), np.full((5, 3, 3), 9, np.uint8)
    stacked, sizes = _stacked([a, b])
    assert stacked.shape == (2, 5, 6, 3) and sizes.tolist() == [[4, 6], [5, 3]]
    assert (stacked[0, :4, :6] == 7).all() and (stacked[1, :5, :3] == 9).all()
    same = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    assert np.shares_memory(_stacked(list(same))[0], same)  # views of one array: no copy

def test_obj_texture_name_and_bad_input(baked, tmp_path):
    mesh, grid = baked
    written = write_textured(mesh, tmp_path / "ball.obj", image=tmp_path / "ball_texture.png")
    assert [p.name for p in written] == ["ball.obj", "ball.mtl", "ball_texture.png"]
    assert "ball_texture.png" in (tmp_path / "ball.mtl").read_text()
    with pytest.raises(ValueError, match="path must end in .glb or .obj"):
        write_textured(mesh, tmp_path / "ball.ply")
    with pytest.raises(ValueError, match="mesh must carry a texture"):
        write_textured(grid.to_mesh(), tmp_path / "plain.glb")
    assert not (tmp_path / "plain.glb").exists()
    cam = Camera.look_at([0.0, 0, 5], [0.0, 0, 0], up=(0, 1, 0), fov=40, width=16, height=16)
    black = np.zeros((1, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="size must be an integer from 16 to 8192"):
        texture_mesh(grid.to_mesh(), black, cam, 0.1, size=8)
    with pytest.raises(ValueError, match="mesh must be a trimesh.Trimesh with faces"):
        texture_mesh(np.zeros((3, 3)), black, cam, 0.1)
    with pytest.raises(ValueError, match="images must hold one image per camera"):
        texture_mesh(grid.to_mesh(), np.zeros((2, 16, 16, 3), np.uint8), cam, 0.1)


def test_reconstruct_texture_writes_glb_and_obj(tmp_path):
    import trimesh

    subprocess.run([sys.executable, "-m", "carve", "render", "sphere", str(tmp_path / "ball"), "--views", "12",
                    "--size", "96x72"], check=True, capture_output=True, timeout=120)
    proc = subprocess.run([sys.executable, "-m", "carve", "reconstruct", str(tmp_path / "ball"), "--resolution", "32",
                           "--out", str(tmp_path / "out"), "--texture"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-800:]
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert {"ball.glb", "ball.obj", "ball.mtl", "ball_texture.png", "ball.ply", "ball.png"} <= set(names), names
    assert "texture" in proc.stdout
    back = trimesh.load(tmp_path / "out" / "ball.glb", force="mesh")
    assert len(back.faces) > 100 and back.visual.uv is not None


def test_snapshot_draws_the_texture(baked, tmp_path):
    """The viewer's snapshot of a textured GLB shows the baked stripes where they are: like the same
    mesh coloured by sampling its texture at the vertices (a scrambled atlas would not be), and
    with both the red-brown and the near-white bands."""
    import trimesh

    from carve import viz

    try:
        viz.check_headless()
    except RuntimeError as err:
        pytest.skip(str(err))
    mesh, _ = baked
    loaded = trimesh.load(write_textured(mesh, tmp_path / "ball.glb")[0], force="mesh")
    view = dict(eye=[0.0, -2.2, 2.2], target=[0.0, 0.0, 0.0], up=[0.0, 0.0, 1.0], fov=45)
    textured = viz.render(loaded, size=(160, 120), view=view).astype(int)
    plain = loaded.copy()
    plain.visual = loaded.visual.to_color()
    sampled = viz.render(plain, size=(160, 120), view=view).astype(int)
    sphere = np.abs(textured - textured[0, 0]).max(-1) > 20
    assert sphere.mean() > 0.2
    assert np.abs(textured - sampled).max(-1)[sphere].mean() < 20
    red_over_green = textured[..., 0] - textured[..., 1]
    assert (red_over_green[sphere] > 60).mean() > 0.1 and (red_over_green[sphere] < 30).mean() > 0.1
