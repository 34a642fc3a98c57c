"""3D avatars: fit a 3D face mesh to a normalized face's frontal landmarks and texture it (the paper's second
application).

The mesh is MediaPipe's canonical face model (468 vertices, 898 triangles, Apache-2.0), committed as
``normface_lib/assets/canonical_face_model.obj`` (source, checksums and licence: ``data/README.md``). The decoder's output
is frontal and neutral, so fitting needs no pose search: a similarity plus separate x/y scales in the image plane
(scaled orthographic, no rotation out of the plane), then an optional thin-plate-spline deformation in x, y that moves
the 68 landmark vertices onto the landmarks and the rest of the mesh smoothly with them. Each vertex's texture
coordinate is where it projects in the canonical crop, so the normalized face itself is the texture.

Frames. :func:`fit_mesh` returns vertices in **crop pixel units** in a right-handed, y-up frame centred on the crop:
``X = x_px - c``, ``Y = c - y_px``, ``Z`` towards the viewer, with ``c = (S - 1) / 2``; texture coordinates are
``u = (x_px + 0.5) / S``, ``v = (y_px + 0.5) / S`` (image convention, ``v`` down, both in ``[0,1]``). OBJ files store
``1 - v`` (OBJ's ``v`` points up); :func:`load_obj` converts back.

Landmark correspondence. :data:`DLIB68_VERTICES` gives, for each dlib point, a mesh vertex. It was derived here by
:func:`derive_landmark_vertices` (not copied from any published table): a reference 68-point shape (the median
canonical landmarks of 42 photos: ``skimage.data.astronaut``, matplotlib's ``grace_hopper.jpg`` and image 1 of each
ORL person, dlib landmarks) is similarity-aligned to the mesh's frontal projection on 12 unambiguous anchors (eye
corners, mouth corners, inner-lip midpoints, chin, nose tip), then every other point is matched to a vertex by an
optimal one-to-one assignment (Hungarian, scipy) on 2-D distance, jaw points among the vertices of the mesh outline.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..core.checks import as_landmarks
from ..core.errors import InputError, OverwriteError
from ..core.resources import assets_dir, atomic_write
from ..faces import apply_affine, fit_similarity, load_image

#: The committed mesh file.
MESH_PATH = assets_dir() / "canonical_face_model.obj"

#: dlib point → MediaPipe vertex anchors used to align the reference shape in :func:`derive_landmark_vertices`
#: (outer/inner eye corners, mouth corners, inner-lip corners and midpoints, chin, nose tip).
ANCHORS = {36: 33, 39: 133, 42: 362, 45: 263, 48: 61, 54: 291, 60: 78, 64: 308, 62: 13, 66: 14, 8: 152, 30: 1}

#: Mesh vertex of each of the 68 dlib landmarks (dlib / iBUG order), from :func:`derive_landmark_vertices`.
DLIB68_VERTICES = (
    127, 234, 93, 132, 58, 136, 149, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,  # jaw 0-16
    156, 70, 52, 65, 55, 285, 295, 282, 276, 383,  # brows 17-26
    6, 197, 5, 1, 98, 97, 2, 326, 327,  # nose 27-35
    33, 161, 158, 133, 153, 24, 362, 385, 387, 263, 254, 380,  # eyes 36-47
    61, 40, 37, 11, 302, 270, 291, 321, 314, 17, 84, 91,  # outer lips 48-59
    78, 38, 13, 311, 308, 317, 14, 87,  # inner lips 60-67
)


@dataclass
class Mesh:
    """A triangle mesh with per-vertex texture coordinates.

    Attributes:
        vertices: ``[V,3]`` float32.
        faces: ``[F,3]`` int64 vertex indices (0-based), counter-clockwise seen from outside.
        uvs: ``[V,2]`` float32 in ``[0,1]``, image convention (``v`` down), or ``None``.
        texture: ``[3,H,W]`` float in ``[0,1]`` or ``None``.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor | None = None
    texture: torch.Tensor | None = None


# --------------------------------------------------------------------------------------------------- OBJ I/O
def load_obj(path: str | os.PathLike, load_texture: bool = True) -> Mesh:
    """Read a Wavefront OBJ (``v``, ``vt``, triangular ``f``) with per-vertex texture coordinates.

    Args:
        path: the ``.obj`` file. If it names an ``.mtl`` (``mtllib``) whose ``map_Kd`` image exists and
            ``load_texture`` is true, the texture is read too.

    Returns:
        :class:`Mesh`; ``uvs`` in image convention (``v`` down) or ``None`` when the file has no ``vt``.

    Raises:
        FileNotFoundError: no such file.
        InputError: malformed lines, non-triangular faces, indices out of range, texture indices that differ from
            vertex indices (normface writes one texture coordinate per vertex), coordinates outside ``[0,1]``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OBJ file not found: {path}")
    verts, tex, faces, mtllib = [], [], [], None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            if parts[0] == "v":
                verts.append([float(x) for x in parts[1:4]])
                if len(parts) < 4:
                    raise ValueError
            elif parts[0] == "vt":
                tex.append([float(x) for x in parts[1:3]])
                if len(parts) < 3:
                    raise ValueError
            elif parts[0] == "f":
                if len(parts) != 4:
                    raise InputError(f"{path}:{n}: only triangles are supported, got a face with {len(parts) - 1} "
                                     "corners; triangulate the mesh first.")
                corner = [p.split("/") for p in parts[1:]]
                vi = [int(c[0]) for c in corner]
                if tex and any(len(c) < 2 or c[1] == "" or int(c[1]) != int(c[0]) for c in corner):
                    raise InputError(f"{path}:{n}: texture index differs from vertex index; normface expects one "
                                     "texture coordinate per vertex (as export_obj writes).")
                faces.append(vi)
            elif parts[0] == "mtllib":
                mtllib = line.split(None, 1)[1].strip()
        except InputError:
            raise
        except ValueError:
            raise InputError(f"{path}:{n}: cannot parse {line!r} as an OBJ {parts[0]!r} line.") from None
    if not verts or not faces:
        raise InputError(f"{path} has no vertices or no faces; it is not a triangle mesh.")
    V = torch.tensor(verts, dtype=torch.float32)
    Fc = torch.tensor(faces, dtype=torch.int64)
    Fc = torch.where(Fc < 0, Fc + len(V), Fc - 1)  # OBJ: 1-based, negative = relative to the end
    if int(Fc.min()) < 0 or int(Fc.max()) >= len(V):
        raise InputError(f"{path}: face indices out of range 1..{len(V)}.")
    uvs = None
    if tex:
        if len(tex) != len(verts):
            raise InputError(f"{path}: {len(tex)} texture coordinates for {len(verts)} vertices; expected one each.")
        t = torch.tensor(tex, dtype=torch.float32)
        if float(t.min()) < -1e-6 or float(t.max()) > 1 + 1e-6:
            raise InputError(f"{path}: texture coordinates outside [0,1] (range {float(t.min()):.3g} to "
                             f"{float(t.max()):.3g}).")
        uvs = torch.stack([t[:, 0], 1 - t[:, 1]], 1)
    texture = None
    if load_texture and mtllib:
        mtl = path.parent / mtllib
        if mtl.is_file():
            for line in mtl.read_text().splitlines():
                if line.strip().startswith("map_Kd"):
                    img = path.parent / line.split(None, 1)[1].strip()
                    if img.is_file():
                        texture = load_image(img)
    return Mesh(V, Fc, uvs, texture)


def export_obj(path: str | os.PathLike, vertices: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor,
               texture_image: torch.Tensor, force: bool = False) -> dict[str, Path]:
    """Write a textured mesh as ``name.obj`` + ``name.mtl`` + ``name.png`` (same folder, same stem).

    Args:
        path: the ``.obj`` path, or the name before the suffixes: ``out/john.smith`` writes ``out/john.smith.obj``,
            ``.mtl`` and ``.png`` (a dot in the name is kept). The OBJ names the MTL and the MTL the PNG, and OBJ
            readers split names at blanks: blanks and ``#`` in the name become ``_`` in those two files' names
            (``john smith.obj`` + ``john_smith.mtl`` + ``john_smith.png``).
        vertices: ``[V,3]`` float (any units; :func:`fit_mesh` gives crop pixels, y up).
        faces: ``[F,3]`` integer, 0-based vertex indices.
        uvs: ``[V,2]`` float in ``[0,1]``, image convention (``v`` down); written as ``1 - v``.
        texture_image: ``[3,H,W]`` float in ``[0,1]``.
        force: overwrite existing files.

    Returns:
        ``{"obj": Path, "mtl": Path, "png": Path}``.

    Raises:
        OverwriteError: one of the three files (or a link of that name) exists and ``force`` is false (nothing is
            written). Each file is written atomically; a link in the way is replaced, never written through.
        InputError: wrong shapes, indices out of range, uvs outside ``[0,1]``, non-finite values.
    """
    from PIL import Image

    for what, x in (("vertices", vertices), ("uvs", uvs), ("texture_image", texture_image)):
        if torch.as_tensor(x).is_complex() or torch.as_tensor(x).dtype == torch.bool:
            raise InputError(f"{what} must hold real numbers, got {torch.as_tensor(x).dtype}.")
    V = torch.as_tensor(vertices).detach().float().cpu()
    Fc = torch.as_tensor(faces).detach().cpu()
    T = torch.as_tensor(uvs).detach().float().cpu()
    if V.dim() != 2 or V.shape[1] != 3 or not torch.isfinite(V).all():
        raise InputError(f"vertices must be finite [V,3], got {tuple(V.shape)}.")
    if Fc.dim() != 2 or Fc.shape[1] != 3 or Fc.is_floating_point():
        raise InputError(f"faces must be integer [F,3] triangles, got {tuple(Fc.shape)} {Fc.dtype}.")
    if len(Fc) == 0 or int(Fc.min()) < 0 or int(Fc.max()) >= len(V):
        raise InputError(f"faces must index vertices 0..{len(V) - 1} (0-based), got range "
                         f"{int(Fc.min()) if len(Fc) else '-'}..{int(Fc.max()) if len(Fc) else '-'}.")
    if T.shape != (len(V), 2) or not torch.isfinite(T).all():
        raise InputError(f"uvs must be [V,2] = [{len(V)},2] (one per vertex), got {tuple(T.shape)}.")
    if float(T.min()) < 0 or float(T.max()) > 1:
        raise InputError(f"uvs must lie in [0,1], got {float(T.min()):.3g}..{float(T.max()):.3g}; clamp them.")
    tex = texture_image
    if not isinstance(tex, torch.Tensor) or tex.dim() != 3 or tex.shape[0] != 3 or not tex.is_floating_point():
        raise InputError("texture_image must be a float tensor [3,H,W] in [0,1].")
    path = Path(path)
    base = str(path.with_suffix("")) if path.suffix.lower() == ".obj" else str(path)
    out = {"obj": Path(f"{base}.obj")}
    plain = "".join("_" if c.isspace() or c == "#" else c for c in Path(base).name)  # OBJ names split at blanks
    out.update((k, Path(base).with_name(f"{plain}.{k}")) for k in ("mtl", "png"))
    existing = [str(p) for p in out.values() if os.path.lexists(p)]
    if existing and not force:
        raise OverwriteError(f"{', '.join(existing)} already exist(s); pass force=True (CLI: --force) to overwrite, "
                             "or choose another path.")
    arr = (tex.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    atomic_write(out["png"], lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"), overwrite=force)
    mtl = (f"# normface avatar material\nnewmtl face\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nillum 1\n"
           f"map_Kd {out['png'].name}\n")
    atomic_write(out["mtl"], lambda tmp: Path(tmp).write_bytes(_text_bytes(mtl)), overwrite=force)
    lines = ["# normface avatar (mesh: MediaPipe canonical face model, Apache-2.0)", f"mtllib {out['mtl'].name}"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in V.tolist()]
    lines += [f"vt {u:.6f} {1 - v:.6f}" for u, v in T.tolist()]
    lines.append("usemtl face")
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in (Fc + 1).tolist()]
    atomic_write(out["obj"], lambda tmp: Path(tmp).write_bytes(_text_bytes("\n".join(lines) + "\n")),
                 overwrite=force)
    return out


def _text_bytes(text: str) -> bytes:
    """OBJ/MTL text as bytes: UTF-8, with the file names' own bytes kept (a name that is not UTF-8 included)."""
    return text.encode("utf-8", "surrogateescape")


@lru_cache(maxsize=1)
def _canonical() -> Mesh:
    if not MESH_PATH.is_file():
        raise FileNotFoundError(f"The face mesh {MESH_PATH} is missing; it is part of the normface source checkout "
                                "(regenerate it with tools/extract_mediapipe_mesh.py, see data/README.md).")
    return load_obj(MESH_PATH, load_texture=False)


def canonical_mesh() -> Mesh:
    """MediaPipe's canonical face model: ``vertices`` ``[468,3]`` in centimetres (y up, z towards the viewer),
    ``faces`` ``[898,3]``, ``uvs`` ``[468,2]`` (MediaPipe's own texture layout). A fresh copy each call."""
    m = _canonical()
    return Mesh(m.vertices.clone(), m.faces.clone(), None if m.uvs is None else m.uvs.clone())


def boundary_vertices(faces: torch.Tensor) -> list[int]:
    """Vertices on the mesh outline (edges used by one triangle only). ``faces`` ``[F,3]`` int → sorted list."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(1).values
    uniq, counts = torch.unique(e, dim=0, return_counts=True)
    return sorted(set(uniq[counts == 1].flatten().tolist()))


def derive_landmark_vertices(reference_landmarks: torch.Tensor, mesh: Mesh | None = None) -> list[int]:
    """Match each of 68 dlib landmarks to a mesh vertex (how :data:`DLIB68_VERTICES` was made).

    Args:
        reference_landmarks: ``[68,2]`` float, a typical frontal neutral 68-point shape (any pixel units, y down).
        mesh: defaults to :func:`canonical_mesh`.

    Returns:
        68 distinct vertex indices. :data:`ANCHORS` are fixed; the other points are assigned by the Hungarian method
        on distances after a least-squares similarity (fitted on the anchors) maps the reference shape onto the
        mesh's frontal projection ``(x, -y)``; jaw points 0-16 may only take outline vertices.
    """
    from scipy.optimize import linear_sum_assignment


    ref = as_landmarks(reference_landmarks, "reference_landmarks", batched=False)
    mesh = mesh or canonical_mesh()
    P2 = torch.stack([mesh.vertices[:, 0], -mesh.vertices[:, 1]], 1)
    a_idx = list(ANCHORS)
    M = fit_similarity(ref[a_idx][None], P2[list(ANCHORS.values())][None])
    R = apply_affine(ref[None], M)[0].numpy()
    P2 = P2.numpy()
    ids = np.full(68, -1)
    for k, v in ANCHORS.items():
        ids[k] = v
    used = set(ANCHORS.values())
    bnd = [v for v in boundary_vertices(mesh.faces) if v not in used]
    inner = [v for v in range(len(P2)) if v not in used and v not in set(bnd)]
    for pts, cand in ((range(0, 17), bnd), (range(17, 68), inner)):
        pts = [p for p in pts if ids[p] < 0]
        D = np.linalg.norm(R[pts][:, None] - P2[cand][None], axis=-1)
        r, c = linear_sum_assignment(D)
        ids[np.array(pts)[r]] = np.array(cand)[c]
    return [int(i) for i in ids]


# --------------------------------------------------------------------------------------------------- fitting
@dataclass
class FittedMesh(Mesh):
    """A mesh fitted to a canonical crop (see the module docstring for the frame).

    Extra attributes:
        image_points: ``[V,2]`` float32, where each vertex projects in crop pixels.
        size: crop side ``S``.
        landmark_error: RMS distance (crop pixels) between the 68 landmark vertices' projections and the landmarks.
        scale: ``(sx, sy)`` crop pixels per mesh centimetre of the rigid part of the fit.
    """

    image_points: torch.Tensor | None = None
    size: int = 0
    landmark_error: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)


def fit_mesh(landmarks: torch.Tensor, texture: torch.Tensor | None = None, size: int | None = None,
             nonrigid: bool = True, smoothing: float = 1.0, mesh: Mesh | None = None) -> FittedMesh:
    """Fit the face mesh to frontal 68-point landmarks of a canonical crop and texture it with the crop.

    Args:
        landmarks: ``[68,2]`` float, the normalized face's (predicted frontal) landmarks in crop pixels.
        texture: ``[3,S,S]`` float in ``[0,1]``, the normalized face (becomes the texture), or ``None``.
        size: crop side ``S`` (taken from ``texture`` when given).
        nonrigid: after the rigid fit, deform x, y with a thin-plate spline through the 68 residuals
            (``scipy.interpolate.RBFInterpolator``).
        smoothing: the spline's smoothing (pixels²-like; 0 interpolates the landmarks exactly).
        mesh: defaults to :func:`canonical_mesh`.

    Returns:
        :class:`FittedMesh`: ``vertices`` ``[V,3]`` (crop pixels, y up, centred), ``faces``, ``uvs`` ``[V,2]`` in
        ``[0,1]`` (projection into the crop; vertices projecting outside are clamped to the border), ``texture``,
        ``image_points``, ``landmark_error``.
    """
    from scipy.interpolate import RBFInterpolator

    lm = as_landmarks(landmarks, "landmarks", batched=False)
    if texture is not None:
        if not isinstance(texture, torch.Tensor) or texture.dim() != 3 or texture.shape[0] != 3 \
                or texture.shape[1] != texture.shape[2] or not texture.is_floating_point():
            raise InputError("texture must be a canonical crop: float tensor [3,S,S] in [0,1].")
        size = texture.shape[-1]
    if size is None or int(size) < 8:
        raise InputError(f"size must be the crop side S ≥ 8 (or pass texture), got {size}.")
    mesh = mesh or canonical_mesh()
    ids = list(DLIB68_VERTICES)
    Vm = mesh.vertices.double()
    X = torch.stack([Vm[:, 0], -Vm[:, 1]], 1)  # frontal projection, y down
    Y = lm.double()
    # rigid part: in-plane rotation from a similarity, then per-axis scale + translation in the rotated frame

    Ms = fit_similarity(X[ids][None].float(), Y[None].float())[0].double()
    th = torch.atan2(Ms[1, 0], Ms[0, 0])
    Rm = torch.tensor([[torch.cos(th), -torch.sin(th)], [torch.sin(th), torch.cos(th)]], dtype=torch.float64)
    Yr = Y @ Rm  # landmarks rotated back (R^T y)
    s, t = [], []
    for ax in range(2):
        A = torch.stack([X[ids, ax], torch.ones(68, dtype=torch.float64)], 1)
        sol = torch.linalg.lstsq(A, Yr[:, ax:ax + 1]).solution[:, 0]
        s.append(float(sol[0]))
        t.append(float(sol[1]))
    if min(s) <= 0:
        raise InputError("the landmarks are mirrored or degenerate (negative scale); pass dlib-ordered [68,2] "
                         "landmarks of one upright face.")
    S2 = torch.diag(torch.tensor(s, dtype=torch.float64))
    proj = (X @ S2 + torch.tensor(t, dtype=torch.float64)) @ Rm.T  # [V,2] crop pixels
    if nonrigid:
        res = Y - proj[ids]
        rbf = RBFInterpolator(proj[ids].numpy(), res.numpy(), kernel="thin_plate_spline", smoothing=smoothing)
        proj = proj + torch.from_numpy(rbf(proj.numpy()))
    err = float(((proj[ids] - Y) ** 2).sum(1).mean().sqrt())
    c = (size - 1) / 2
    z = Vm[:, 2] * float(np.sqrt(s[0] * s[1]))
    verts = torch.stack([proj[:, 0] - c, c - proj[:, 1], z - z.mean()], 1).float()
    uvs = ((proj + 0.5) / size).clamp(0, 1).float()
    return FittedMesh(verts, mesh.faces.clone(), uvs, texture, proj.float(), int(size), err, (s[0], s[1]))


# --------------------------------------------------------------------------------------------------- rendering
def _rotation(yaw: float, pitch: float) -> np.ndarray:
    a, b = np.radians(yaw), np.radians(pitch)
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return Rx @ Ry


def render_views(mesh: Mesh, texture: torch.Tensor | None = None, angles: Iterable = (-40, -20, 0, 20, 40),
                 size: int = 192, background: float = 1.0, shading: float = 0.35) -> list[torch.Tensor]:
    """Render a textured mesh from several viewpoints with a small z-buffer rasterizer (orthographic, NumPy).

    Args:
        mesh: a :class:`Mesh` with ``uvs`` (e.g. from :func:`fit_mesh` or :func:`load_obj`).
        texture: ``[3,H,W]`` float in ``[0,1]``; defaults to ``mesh.texture``; ``None`` renders flat grey.
        angles: yaw angles in degrees (positive turns the face to the viewer's right), or ``(yaw, pitch)`` pairs.
        size: side of each square output image in pixels.
        background: grey level of the background.
        shading: strength of Lambertian shading from a light at the viewer (0 = texture only).

    Returns:
        A list of ``[3,size,size]`` float32 tensors in ``[0,1]``, one per angle.
    """
    if not isinstance(mesh, Mesh):
        raise InputError(f"mesh must be a normface Mesh (fit_mesh or load_obj), got {type(mesh).__name__}.")
    texture = mesh.texture if texture is None else texture
    if texture is not None:
        if not isinstance(texture, torch.Tensor) or texture.dim() != 3 or texture.shape[0] != 3:
            raise InputError("texture must be a float tensor [3,H,W] in [0,1].")
        if mesh.uvs is None:
            raise InputError("the mesh has no texture coordinates (uvs); fit it with fit_mesh.")
        tex = texture.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    V = mesh.vertices.detach().double().cpu().numpy()
    Fc = mesh.faces.cpu().numpy()
    uv = None if mesh.uvs is None else mesh.uvs.detach().double().cpu().numpy()
    centre = (V.min(0) + V.max(0)) / 2
    radius = np.linalg.norm(V - centre, axis=1).max()
    images = []
    for ang in angles:
        yaw, pitch = (float(ang), 0.0) if np.isscalar(ang) else (float(ang[0]), float(ang[1]))
        P = (V - centre) @ _rotation(yaw, pitch).T
        # screen: x right, y down; scale so the mesh fits with a margin
        k = (size / 2 - 2) / radius
        sx = P[:, 0] * k + (size - 1) / 2
        sy = -P[:, 1] * k + (size - 1) / 2
        sz = P[:, 2]
        img = np.full((size, size, 3), background, dtype=np.float64)
        zbuf = np.full((size, size), -np.inf)
        n = np.cross(P[Fc[:, 1]] - P[Fc[:, 0]], P[Fc[:, 2]] - P[Fc[:, 0]])
        n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)
        for f, tri in enumerate(Fc):
            if n[f, 2] <= 0:  # back face
                continue
            x, y, z = sx[tri], sy[tri], sz[tri]
            x0, x1 = max(int(np.floor(x.min())), 0), min(int(np.ceil(x.max())), size - 1)
            y0, y1 = max(int(np.floor(y.min())), 0), min(int(np.ceil(y.max())), size - 1)
            if x0 > x1 or y0 > y1:
                continue
            gy, gx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
            den = (y[1] - y[2]) * (x[0] - x[2]) + (x[2] - x[1]) * (y[0] - y[2])
            if abs(den) < 1e-12:
                continue
            w0 = ((y[1] - y[2]) * (gx - x[2]) + (x[2] - x[1]) * (gy - y[2])) / den
            w1 = ((y[2] - y[0]) * (gx - x[2]) + (x[0] - x[2]) * (gy - y[2])) / den
            w2 = 1 - w0 - w1
            inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
            if not inside.any():
                continue
            zz = w0 * z[0] + w1 * z[1] + w2 * z[2]
            sub = zbuf[y0:y1 + 1, x0:x1 + 1]
            win = inside & (zz > sub)
            if not win.any():
                continue
            sub[win] = zz[win]
            if texture is not None:
                u = w0 * uv[tri[0], 0] + w1 * uv[tri[1], 0] + w2 * uv[tri[2], 0]
                v = w0 * uv[tri[0], 1] + w1 * uv[tri[1], 1] + w2 * uv[tri[2], 1]
                th, tw = tex.shape[:2]
                col = tex[np.clip(np.round(v * th - 0.5), 0, th - 1).astype(int),
                          np.clip(np.round(u * tw - 0.5), 0, tw - 1).astype(int)]
            else:
                col = np.full(gx.shape + (3,), 0.8)
            light = (1 - shading) + shading * n[f, 2]
            img[y0:y1 + 1, x0:x1 + 1][win] = col[win] * light
        images.append(torch.from_numpy(img.clip(0, 1)).permute(2, 0, 1).float().contiguous())
    return images
