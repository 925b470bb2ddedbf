"""A small ray-casting renderer: exact silhouettes, metric depth and Lambertian images of meshes.

Rays are built from our own camera model, one through each pixel centre: origin at the camera
centre, direction ``R^T K^-1 [u, v, 1]`` with u the column and v the row index; Open3D's
``RaycastingScene`` finds the first hit. So a pixel is in the silhouette exactly when the ray through
its centre hits the object, which is the rule ``geometry.project`` + ``pixel_index`` and the visual
hull use: rendered silhouettes and projected points agree pixel for pixel.

Convention:
    depth is z in the camera frame (not the distance along the ray), in world units, 0 where the
    ray hits nothing (as ``geometry.depth_to_points`` reads it). Because the camera-frame direction
    ``K^-1 [u, v, 1]`` has z = 1, the ray parameter of the hit *is* that depth.

Shading: albedo from the mesh's vertex colours (interpolated) or face colours, times an optional
procedural solid texture from ``mesh.metadata["texture"]`` (:func:`data.textures.texture_factor`), times
``ambient + (1 - ambient) * max(0, n . l)`` for a directional light ``l`` (0 in shadow when
``shadows=True``; with several lights, the mean of that over them), plus an optional white Blinn-Phong highlight where the light reaches (see
:func:`shade`). Normals are interpolated vertex normals except across creases sharper than 30
degrees (a box stays flat-shaded). A mesh with ``mesh.metadata["silhouette"] = False`` (a ground
plane) is drawn but left out of the silhouettes.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from data.memory import require_render_memory
from data.progress import progress as progress_bar
from data.textures import texture_factor, value_noise
from geometry import Camera, pixel_rays

__all__ = ["Rendering", "render", "render_views", "shade", "synthetic", "THREE_LIGHTS"]

#: a key light from above and two fills from the sides, so that every side of an object and the
#: inside of a cup are lit (what photo-consistency tests and the textured demo use)
THREE_LIGHTS = ((0.4, 0.3, 1.0), (-0.7, 0.5, 0.6), (0.2, -0.8, 0.4))


class Rendering(NamedTuple):
    """What :func:`render` returns (unpacks as ``images, depths, silhouettes``)."""

    images: np.ndarray       #: (B, H, W, 3) uint8 RGB
    depths: np.ndarray       #: (B, H, W) float32, z in the camera frame, 0 = no hit
    silhouettes: np.ndarray  #: (B, H, W) bool, True where the ray through the pixel centre hits


# --------------------------------------------------------------------------------------- scene


class _Scene:
    """Meshes in one Open3D RaycastingScene, with per-corner colours and normals for shading."""

    def __init__(self, meshes):
        import open3d as o3d

        self.o3d = o3d
        self.scene = o3d.t.geometry.RaycastingScene()
        corner_colors, corner_normals, faces_world, textures, in_mask, specular = [], [], [], [], [], []
        self.face_offset = []
        offset = 0
        for k, m in enumerate(meshes):
            v = np.asarray(m.vertices, np.float64)
            f = np.asarray(m.faces, np.int64)
            if len(f) == 0:
                raise ValueError(f"mesh_or_scene[{k}] has no faces")
            if not np.isfinite(v).all():
                raise ValueError(f"mesh_or_scene[{k}] has NaN or inf vertices")
            gid = self.scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)),
                                           o3d.core.Tensor(f.astype(np.uint32)))
            if gid != k:
                raise RuntimeError("Open3D returned unexpected geometry ids")
            corner_colors.append(_corner_colors(m))
            corner_normals.append(_corner_normals(m))
            faces_world.append(v[f])
            textures.append(m.metadata.get("texture") if hasattr(m, "metadata") else None)
            in_mask.append(bool(m.metadata.get("silhouette", True)) if hasattr(m, "metadata") else True)
            specular.append(_mesh_specular(m, k))
            self.face_offset.append(offset)
            offset += len(f)
        self.face_offset = np.array(self.face_offset, np.int64)
        self.colors = np.concatenate(corner_colors).astype(np.float32)      # (F, 3 corners, 3) in 0..1
        self.normals = np.concatenate(corner_normals).astype(np.float32)    # (F, 3 corners, 3)
        self.textures = textures
        self.in_mask = np.array(in_mask, bool)
        self.specular = specular  # per mesh: its metadata["specular"], or None for the render's own

    def cast(self, origins, directions):
        rays = np.concatenate([origins, directions], axis=-1).astype(np.float32)
        ans = self.scene.cast_rays(self.o3d.core.Tensor(rays))
        return {k: v.numpy() for k, v in ans.items()}

    def occluded(self, origins, directions, tnear):
        rays = np.concatenate([origins, directions], axis=-1).astype(np.float32)
        return self.scene.test_occlusions(self.o3d.core.Tensor(rays), tnear=tnear).numpy()


def _corner_colors(mesh):
    """(F, 3, 3) RGB in 0..1 per face corner, from vertex or face colours (grey when none)."""
    n_faces = len(mesh.faces)
    visual = getattr(mesh, "visual", None)
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        visual = visual.to_color()
        kind = visual.kind
    if kind == "vertex":
        vc = np.asarray(visual.vertex_colors)[:, :3].astype(np.float32) / 255
        return vc[np.asarray(mesh.faces)]
    if kind == "face":
        fc = np.asarray(visual.face_colors)[:, :3].astype(np.float32) / 255
        return np.repeat(fc[:, None, :], 3, axis=1)
    return np.full((n_faces, 3, 3), 0.7, np.float32)


def _corner_normals(mesh, crease_degrees=30.0):
    fn = np.asarray(mesh.face_normals, np.float64)
    vn = np.asarray(mesh.vertex_normals, np.float64)[np.asarray(mesh.faces)]
    sharp = np.einsum("fcj,fj->fc", vn, fn) < np.cos(np.radians(crease_degrees))
    return np.where(sharp[..., None], fn[:, None, :], vn)


def _mesh_specular(mesh, k):
    """A mesh's own highlight strength ``metadata["specular"]`` (0..1), or None when it has none."""
    value = getattr(mesh, "metadata", {}).get("specular")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 <= value <= 1:
        raise ValueError(f"mesh_or_scene[{k}].metadata['specular'] must be a number in [0, 1], got {value!r}")
    return float(value)


def _as_meshes(mesh_or_scene):
    import trimesh

    if isinstance(mesh_or_scene, trimesh.Trimesh):
        return [mesh_or_scene]
    if isinstance(mesh_or_scene, trimesh.Scene):
        meshes = [g for g in mesh_or_scene.dump(concatenate=False) if isinstance(g, trimesh.Trimesh)]
        if not meshes:
            raise ValueError("mesh_or_scene is a trimesh.Scene with no triangle meshes")
        return meshes
    if isinstance(mesh_or_scene, (list, tuple)) and mesh_or_scene and \
            all(isinstance(m, trimesh.Trimesh) for m in mesh_or_scene):
        return list(mesh_or_scene)
    raise TypeError(f"mesh_or_scene must be a trimesh.Trimesh, a list of them or a trimesh.Scene, "
                    f"got {type(mesh_or_scene).__name__}")


def _background(spec, color, b, h, w, seed):
    if isinstance(spec, str):
        if spec == "solid":
            return np.broadcast_to(np.asarray(color, np.float32) / 255, (b, h, w, 3))
        if spec == "noise":
            # a textured backdrop: one palette for the whole set (the base colour, a second colour
            # near it, and brightness variation), a different pattern in every view
            out = np.empty((b, h, w, 3), np.float32)
            base = np.asarray(color, np.float32) / 255
            rng = np.random.default_rng(seed)
            other = np.clip(base + rng.uniform(-0.25, 0.25, 3), 0.03, 0.97).astype(np.float32)
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) / max(h, w)
            pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
            for i in range(b):
                t = value_noise(pts, scale=6.0, octaves=4, seed=seed * 7919 + 2 * i).reshape(h, w, 1)
                shade = 0.8 + 0.4 * value_noise(pts, scale=10.0, octaves=3, seed=seed * 7919 + 2 * i + 1)
                out[i] = np.clip((base * (1 - t) + other * t) * shade.reshape(h, w, 1), 0, 1)
            return out
        raise ValueError(f"background must be 'solid', 'noise', an (H, W, 3) uint8 image or a list of them, "
                         f"got {spec!r}")
    import cv2

    imgs = spec if isinstance(spec, (list, tuple)) else [spec] * b
    if len(imgs) != b:
        raise ValueError(f"background must be one image or one per view ({b}), got {len(imgs)}")
    out = np.empty((b, h, w, 3), np.float32)
    for i, im in enumerate(imgs):
        im = np.asarray(im)
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"background images must be (H, W, 3) uint8, got {im.shape} {im.dtype}")
        out[i] = cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    return out


def shade(albedo, normal, ldir, view, lambert, ambient, specular=0.0, shininess=40.0):
    """Colours (N, 3), unclipped, of N surface points: Lambertian plus a white Blinn-Phong highlight.

    ``albedo * (ambient + (1 - ambient) * lambert) + specular * max(0, n . h)^shininess`` with ``h``
    the unit vector halfway between ``ldir`` and ``view``; the highlight only where ``lambert > 0``
    (the light reaches the point: facing it and, with shadows, not blocked). With ``specular`` 0
    everywhere the highlight term is not computed, so the colours are exactly the Lambertian ones.

    Shapes: ``albedo`` (N, 3) in 0..1; ``normal`` (facing the viewer), ``ldir`` (towards the light),
    ``view`` (towards the camera) (N, 3) unit vectors; ``lambert`` (N,) ``max(0, n . l)``, 0 in
    shadow; ``specular`` a number or (N,), 0..1 of white; ``ambient``, ``shininess`` numbers.

    Example:
        >>> n = np.array([[0.0, 0.0, 1.0]])
        >>> l = np.array([[0.0, 0.6, 0.8]]); v = np.array([[0.0, -0.6, 0.8]])   # mirror pair about n
        >>> shade(np.full((1, 3), 0.5), n, l, v, np.array([0.8]), 0.25, specular=0.5).round(3).tolist()
        [[0.925, 0.925, 0.925]]
    """
    color = albedo * (ambient + (1 - ambient) * lambert)[:, None]
    specular = np.broadcast_to(np.asarray(specular, np.float64), lambert.shape)
    if specular.any():
        half = ldir + view
        half = half / np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-12)
        highlight = np.clip(np.einsum("ij,ij->i", normal, half), 0, None) ** shininess
        color = color + (np.where(lambert > 0, specular * highlight, 0.0))[:, None]
    return color


def _check_specular(specular, shininess):
    number = lambda v: not isinstance(v, bool) and isinstance(v, (int, float, np.number))  # noqa: E731
    if not (number(specular) and 0 <= specular <= 1):
        raise ValueError(f"specular must be a number in [0, 1] (the highlight's share of white), got {specular!r}")
    if not (number(shininess) and 0 < shininess < np.inf):
        raise ValueError(f"shininess must be a positive finite Blinn-Phong exponent, got {shininess!r}")


def render(mesh_or_scene, cameras: Camera, *, background="solid", background_color=(0, 0, 0),
           light=(0.4, 0.3, 1.0), ambient: float = 0.3, shadows: bool = False, specular: float = 0.0,
           shininess: float = 40.0, seed: int = 0, progress=None) -> Rendering:
    """Render meshes by ray casting: images, depths and exact silhouettes.

    Args:
        mesh_or_scene: a ``trimesh.Trimesh``, a list of them, or a ``trimesh.Scene``.
        cameras: ``geometry.Camera`` with B views and width/height set.
        background: "solid" (``background_color``), "noise" (a textured backdrop: value noise
            between ``background_color`` and a second colour near it, with brightness variation; one
            palette for all views from ``seed``, a different pattern in each), or an (H', W', 3) uint8
            image (resized), or a list of B.
        background_color: RGB 0..255 for "solid" (and the base colour of "noise").
        light: (3,) direction towards a directional light, world frame; (L, 3) for L directional
            lights sharing the direct light equally (each adds ``1 / L`` of its Lambert term and
            highlight); or "camera" for a light at each camera (headlight).
        ambient: share of light that reaches every surface, 0..1.
        shadows: cast shadow rays towards the light.
        specular: strength, 0..1 of white, of a Blinn-Phong highlight added where the light reaches
            (the directional light or the headlight; see :func:`shade`); 0 (the default) draws
            matte surfaces. A mesh's ``metadata["specular"]`` (0..1), when set, replaces it for that
            mesh (a matte floor under a glossy object).
        shininess: the highlight's Blinn-Phong exponent, > 0 (larger: smaller, sharper highlights).
        seed: seeds the background noise.
        progress: show a tqdm bar over views (default: see :func:`data.progress.show_progress`).

    Returns:
        Rendering(images (B, H, W, 3) uint8, depths (B, H, W) float32, silhouettes (B, H, W) bool).

    Example:
        >>> from data import objects, turntable
        >>> images, depths, masks = render(objects.sphere(), turntable(4, width=32, height=32))
        >>> images.shape, depths.dtype, masks.dtype
        ((4, 32, 32, 3), dtype('float32'), dtype('bool'))
    """
    if not isinstance(cameras, Camera):
        raise TypeError(f"cameras must be a geometry.Camera, got {type(cameras).__name__}")
    if not cameras.has_size:
        raise ValueError("cameras must have width and height set, got a camera with no size")
    require_render_memory(len(cameras), cameras.width, cameras.height)
    if not 0 <= ambient <= 1:
        raise ValueError(f"ambient must be in [0, 1], got {ambient}")
    _check_specular(specular, shininess)
    headlight = isinstance(light, str)
    if headlight and light != "camera":
        raise ValueError(f"light must be a (3,) direction or 'camera', got {light!r}")
    if not headlight:
        light = np.asarray(light, np.float64)
        lights = light.reshape(-1, 3) if light.ndim in (1, 2) and light.shape[-1:] == (3,) and light.size else None
        if lights is None or not np.isfinite(lights).all() or (np.linalg.norm(lights, axis=1) == 0).any():
            raise ValueError(f"light must be a non-zero (3,) direction or (L, 3) of them, got {light.tolist()}")
        light = lights / np.linalg.norm(lights, axis=1, keepdims=True)
    meshes = _as_meshes(mesh_or_scene)
    scene = _Scene(meshes)
    cam = cameras.numpy()
    b, h, w = len(cam), cam.height, cam.width
    bg = _background(background, background_color, b, h, w, seed)
    images = np.empty((b, h, w, 3), np.uint8)
    depths = np.zeros((b, h, w), np.float32)
    masks = np.zeros((b, h, w), bool)
    for i in progress_bar(range(b), desc="render", enabled=progress):
        origins, dirs = pixel_rays(cam[i])
        origins, dirs = origins[0].reshape(-1, 3), dirs[0].reshape(-1, 3)
        ans = scene.cast(origins, dirs)
        t = ans["t_hit"]
        hit = np.isfinite(t)
        color = bg[i].reshape(-1, 3).copy()
        if hit.any():
            gid = ans["geometry_ids"][hit].astype(np.int64)
            face = scene.face_offset[gid] + ans["primitive_ids"][hit].astype(np.int64)
            uv = ans["primitive_uvs"][hit]
            bary = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)[:, :, None]
            albedo = (scene.colors[face] * bary).sum(axis=1)
            normal = (scene.normals[face] * bary).sum(axis=1)
            normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
            d = dirs[hit]
            flip = np.einsum("ij,ij->i", normal, d) > 0
            normal[flip] = -normal[flip]                       # two-sided: face the viewer
            points = origins[hit] + t[hit, None] * d
            for g in np.unique(gid):
                spec = scene.textures[g]
                if spec:
                    sel = gid == g
                    albedo[sel] *= texture_factor(spec, points[sel])
            view = -d / np.linalg.norm(d, axis=1, keepdims=True)
            strength = np.array([specular if s is None else s for s in scene.specular])[gid]  # per hit
            # shading is linear in the Lambert term and the highlight: L lights = the mean of L renders
            lit_color = 0.0
            for ldir in [view] if headlight else [np.broadcast_to(one, normal.shape) for one in light]:
                lambert = np.clip(np.einsum("ij,ij->i", normal, ldir), 0, None)
                if shadows and not headlight:
                    lit = lambert > 0
                    if lit.any():
                        scale = float(np.abs(points).max() + 1.0)
                        start = points[lit] + normal[lit] * (1e-4 * scale)
                        blocked = scene.occluded(start, ldir[lit], tnear=1e-4 * scale)
                        lam = lambert[lit]
                        lam[blocked] = 0
                        lambert[lit] = lam
                lit_color = lit_color + shade(albedo, normal, ldir, view, lambert, ambient, strength, shininess)
            color[hit] = lit_color / (1 if headlight else len(light))
            depths[i].reshape(-1)[hit] = t[hit]
            masks[i].reshape(-1)[hit] = scene.in_mask[gid]
        images[i] = np.clip(color.reshape(h, w, 3) * 255 + 0.5, 0, 255).astype(np.uint8)
    return Rendering(images, depths, masks)


def render_views(mesh_or_scene, cameras: Camera, *, bounds="auto", **render_options):
    """Render and wrap the result as a ``MultiView`` (images, cameras, silhouettes, depths, bounds).

    Args:
        mesh_or_scene, cameras, **render_options: as in :func:`render`.
        bounds: "auto" (the meshes' bounding box grown by 5% per side), a (2, 3) box, or None.

    Returns:
        ``data.MultiView`` with ``format="render"``.
    """
    from data.multiview import MultiView

    meshes = _as_meshes(mesh_or_scene)
    images, depths, masks = render(meshes, cameras, **render_options)
    if isinstance(bounds, str):
        if bounds != "auto":
            raise ValueError(f"bounds must be 'auto', a (2, 3) box or None, got {bounds!r}")
        obj = [m for m in meshes if m.metadata.get("silhouette", True)] or meshes
        lo = np.min([m.bounds[0] for m in obj], axis=0)
        hi = np.max([m.bounds[1] for m in obj], axis=0)
        pad = 0.05 * (hi - lo).max()
        bounds = np.stack([lo - pad, hi + pad])
    return MultiView(list(images), cameras.numpy(), list(masks), bounds, depths=list(depths), format="render")


def synthetic(obj="mug", *, views: int = 36, size=(320, 240), radius: float = 3.6, min_elevation: float = 10.0,
              max_elevation: float = 70.0, fov: float = 40.0, background="noise",
              background_color=(90, 110, 140), seed: int = 0, **render_options):
    """A ready-made synthetic dataset: a built-in object seen from a hemisphere of cameras.

    The project's embedded default: a fresh clone can reconstruct something with no download.

    Args:
        obj: a name in ``data.objects.NAMES`` or a ``trimesh.Trimesh``.
        views: number of cameras (``data.hemisphere``, looking at the origin).
        size: (width, height) of the images in pixels.
        radius, min_elevation, max_elevation, fov: the rig (see ``data.hemisphere``).
        background, background_color, seed, **render_options: as in :func:`render`.

    Returns:
        ``data.MultiView`` with images, exact silhouettes, depths and the object's bounds.

    Example:
        >>> mv = synthetic("torus", views=4, size=(48, 32))
        >>> len(mv), mv.width, mv.height, mv.silhouettes is not None
        (4, 48, 32, True)
    """
    import trimesh

    from data import objects
    from data.rigs import hemisphere

    if not (isinstance(size, (tuple, list)) and len(size) == 2):
        raise ValueError(f"size must be (width, height) in pixels, got {size!r}")
    if all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in (views, *size)):
        require_render_memory(views, *size)  # before the mesh and the rig, which alone can fill the memory
    mesh = obj if isinstance(obj, trimesh.Trimesh) else objects.get(obj)
    cams = hemisphere(views, radius=radius, min_elevation=min_elevation, max_elevation=max_elevation, fov=fov,
                      width=size[0], height=size[1])
    mv = render_views(mesh, cams, background=background, background_color=background_color, seed=seed,
                      **render_options)
    return mv.replace(format="synthetic", names=[f"{i:04d}" for i in range(len(mv))])
