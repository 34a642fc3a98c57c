"""Tests of the applications: colour correction, 3D avatar, attribute stability.

Real data: ``skimage.data.astronaut()`` (public domain, NASA) with landmarks from the project's MTCNN + dlib path;
everything else is small generated data with hand-checked answers.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from normface_lib.apps import attributes as T
from normface_lib.apps import avatar as A
from normface_lib.apps import colour as C
from normface_lib.core.errors import InputError, OverwriteError


@pytest.fixture(scope="module")
def astronaut():
    """Photo [3,512,512], its 68 landmarks, a 112-px canonical crop and the crop's landmarks."""
    import skimage.data

    from normface_lib import faces as P

    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float() / 255
    lm = P.detect_landmarks(photo)
    crops, clm, _ = P.align_faces(photo[None], lm[None], 112)
    return photo, lm, crops[0], clm[0]


# ------------------------------------------------------------------------------------------------------- colour
def test_fit_recovers_exact_affine_and_gain():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(500, 3, generator=g) * 0.8 + 0.1
    A_true = torch.tensor([[0.9, 0.05, 0.0], [0.02, 1.1, 0.03], [0.0, -0.04, 0.8]], dtype=torch.float64)
    b_true = torch.tensor([0.01, -0.02, 0.03], dtype=torch.float64)
    dst = src.double() @ A_true.T + b_true
    t = C.fit_colour_transform(src, dst.float(), "affine", robust=False, space="srgb", clip_margin=0)
    assert torch.allclose(t.matrix[:, :3], A_true, atol=1e-5)
    assert torch.allclose(t.matrix[:, 3], b_true, atol=1e-5)
    # per-channel gains in linear light, with 10% gross outliers: the trimmed fit ignores them
    gains = torch.tensor([0.7, 1.0, 1.3])
    dst = C.linear_to_srgb(C.srgb_to_linear(src) * gains * 0.9)
    dst[:50] = torch.rand(50, 3, generator=g)
    robust = C.fit_colour_transform(src, dst, "gain", robust=True)
    plain = C.fit_colour_transform(src, dst, "gain", robust=False)
    want = (gains * 0.9).double()
    assert torch.allclose(robust.matrix.diag(), want, rtol=0.01)
    assert (robust.matrix.diag() - want).abs().max() < (plain.matrix.diag() - want).abs().max()


def test_apply_colour_transform_shapes_and_clipping():
    img = torch.full((2, 3, 4, 5), 0.6)
    t = C.ColourTransform(torch.cat([torch.eye(3) * 3.0, torch.zeros(3, 1)], 1).double(), "gain", "srgb")
    out = C.apply_colour_transform(img, t)
    assert out.shape == img.shape and float(out.max()) == 1.0
    assert torch.equal(C.apply_colour_transform(img[0], C.ColourTransform.identity("srgb")), img[0])


def test_correct_photo_recovers_known_exposure_and_white_balance(astronaut):
    photo, lm, crop, clm = astronaut
    pert, params = C.perturb_exposure_white_balance(photo, exposure_stops=-0.5, wb_gains=[1.15, 1.0, 0.85])
    assert params == {"exposure_stops": -0.5, "wb_gains": [1.15, 1.0, 0.85]}
    res = C.correct_photo(pert, lm, crop, clm)  # the unperturbed face stands in for the model's normalized face
    assert res.transform.kind == "gain"
    want = 1 / (2 ** -0.5 * torch.tensor([1.15, 1.0, 0.85], dtype=torch.float64))
    assert torch.allclose(res.transform.matrix.diag(), want, rtol=0.03)
    before = C.colour_error(pert, photo)
    after = C.colour_error(res.corrected, photo)
    assert after["mae"] < 0.5 * before["mae"]
    assert after["delta_e"] < 0.5 * before["delta_e"]
    # better than the grey-world baseline, which cannot know the exposure
    assert after["delta_e"] < C.colour_error(C.grey_world(pert), photo)["delta_e"]
    # inside the face mask, where the perturbation did not clip, the correction is nearly exact
    unclipped = res.mask & (pert < 0.99).all(0)
    assert unclipped.sum() > 1000
    assert C.colour_error(res.corrected, photo, unclipped)["delta_e"] < 2.0


def test_grey_normalized_face_corrects_exposure_only(astronaut):
    photo, lm, crop, clm = astronaut
    grey = (crop * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0, keepdim=True).expand(3, -1, -1)
    pert, _ = C.perturb_exposure_white_balance(photo, exposure_stops=-0.7, wb_gains=[1, 1, 1])
    res = C.correct_photo(pert, lm, grey.contiguous(), clm)
    assert res.transform.kind == "exposure"
    m = res.transform.matrix
    assert torch.allclose(m[:, :3], torch.eye(3, dtype=m.dtype) * m[0, 0])  # one gain for all channels
    assert abs(float(m[0, 0]) - 2 ** 0.7) < 0.05 * 2 ** 0.7
    assert C.colour_error(res.corrected, photo)["mae"] < 0.2 * C.colour_error(pert, photo)["mae"]
    with pytest.raises(InputError, match="grey"):
        C.correct_photo(pert, lm, grey.contiguous(), clm, kind="affine")


def test_perturbation_is_seeded():
    img = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
    a, pa = C.perturb_exposure_white_balance(img, seed=3)
    b, pb = C.perturb_exposure_white_balance(img, seed=3)
    c, pc = C.perturb_exposure_white_balance(img, seed=4)
    assert torch.equal(a, b) and pa == pb and pa != pc
    assert abs(np.prod(pa["wb_gains"]) - 1) < 1e-9


def test_colour_bad_inputs():
    with pytest.raises(InputError, match=r"\[N,3\]"):
        C.fit_colour_transform(torch.rand(10, 4), torch.rand(10, 4))
    with pytest.raises(InputError, match="same shape"):
        C.fit_colour_transform(torch.rand(10, 3), torch.rand(11, 3))
    with pytest.raises(InputError, match="kind"):
        C.fit_colour_transform(torch.rand(10, 3), torch.rand(10, 3), kind="magic")
    with pytest.raises(InputError, match="too few"):
        C.fit_colour_transform(torch.rand(5, 3), torch.rand(5, 3), kind="affine")
    with pytest.raises(InputError, match="0-255|\\[0,1\\]"):
        C.grey_world(torch.full((3, 4, 4), 200.0))
    with pytest.raises(InputError, match=r"\[68,2\]"):
        C.correct_photo(torch.rand(3, 64, 64), torch.rand(5, 2), torch.rand(3, 32, 32), torch.rand(68, 2))
    with pytest.raises(InputError, match="wb_gains"):
        C.perturb_exposure_white_balance(torch.rand(3, 4, 4), 0.0, [1.0, -1.0, 1.0])


# ------------------------------------------------------------------------------------------------------- avatar
def test_canonical_mesh_and_correspondence():
    m = A.canonical_mesh()
    assert m.vertices.shape == (468, 3) and m.faces.shape == (898, 3) and m.uvs.shape == (468, 2)
    V = m.vertices
    n = torch.cross(V[m.faces[:, 1]] - V[m.faces[:, 0]], V[m.faces[:, 2]] - V[m.faces[:, 0]], dim=1)
    assert (n[:, 2] > 0).float().mean() > 0.95  # counter-clockwise seen from the front (+z)
    assert len(set(A.DLIB68_VERTICES)) == 68
    # the derivation reproduces the stored table when fed the mesh's own landmark-vertex projections
    ref = torch.stack([V[list(A.DLIB68_VERTICES), 0], -V[list(A.DLIB68_VERTICES), 1]], 1)
    assert A.derive_landmark_vertices(ref) == list(A.DLIB68_VERTICES)
    # anatomical sanity: left-of-picture eye corner has smaller x than the right one; chin is the lowest point
    assert V[A.DLIB68_VERTICES[36], 0] < V[A.DLIB68_VERTICES[45], 0]
    assert int(V[:, 1].argmin()) == A.DLIB68_VERTICES[8]


def test_fit_mesh_export_reload(astronaut, tmp_path):
    _, _, crop, clm = astronaut
    rigid = A.fit_mesh(clm, crop, nonrigid=False)
    fm = A.fit_mesh(clm, crop, nonrigid=True, smoothing=0.0)
    assert fm.landmark_error < 0.05 < rigid.landmark_error < 5.0
    assert float(fm.uvs.min()) >= 0 and float(fm.uvs.max()) <= 1
    # uv of a landmark vertex = its landmark position in the crop, normalised to [0,1]
    assert torch.allclose(fm.uvs[A.DLIB68_VERTICES[30]], (clm[30] + 0.5) / 112, atol=1e-3)
    paths = A.export_obj(tmp_path / "face.obj", fm.vertices, fm.faces, fm.uvs, crop)
    assert all(p.exists() for p in paths.values())
    text = paths["obj"].read_text()
    assert text.count("\nv ") == 468 and text.count("\nvt ") == 468 and text.count("\nf ") == 898
    back = A.load_obj(paths["obj"])
    assert torch.allclose(back.vertices, fm.vertices, atol=1e-5)
    assert torch.equal(back.faces, fm.faces)
    assert torch.allclose(back.uvs, fm.uvs, atol=1e-6)
    assert (back.texture - crop).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(OverwriteError, match="force=True"):
        A.export_obj(tmp_path / "face.obj", fm.vertices, fm.faces, fm.uvs, crop)
    before = paths["obj"].stat().st_mtime_ns
    A.export_obj(tmp_path / "face.obj", fm.vertices * 2, fm.faces, fm.uvs, crop, force=True)
    assert torch.allclose(A.load_obj(paths["obj"]).vertices, fm.vertices * 2, atol=1e-4)
    assert paths["obj"].stat().st_mtime_ns >= before


def test_render_views(astronaut):
    _, _, crop, clm = astronaut
    fm = A.fit_mesh(clm, crop)
    views = A.render_views(fm, angles=(-30, 0, (0, 15)), size=64)
    assert len(views) == 3 and all(v.shape == (3, 64, 64) for v in views)
    front = views[1]
    covered = (front < 0.999).any(0)
    assert 0.2 < covered.float().mean() < 0.95  # the face fills part of the frame, background around it
    assert covered[32, 32] and not covered[0, 0]
    assert not torch.equal(views[0], views[1])


def test_avatar_bad_inputs(tmp_path):
    m = A.canonical_mesh()
    with pytest.raises(InputError, match=r"\[68,2\]"):
        A.fit_mesh(torch.rand(2, 68, 2), size=64)
    with pytest.raises(InputError, match="uvs"):
        A.export_obj(tmp_path / "x.obj", m.vertices, m.faces, m.uvs * 2, torch.rand(3, 8, 8))
    with pytest.raises(InputError, match="faces"):
        A.export_obj(tmp_path / "x.obj", m.vertices, m.faces + 1000, m.uvs, torch.rand(3, 8, 8))
    bad = tmp_path / "quad.obj"
    bad.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n")
    with pytest.raises(InputError, match="triangles"):
        A.load_obj(bad)
    with pytest.raises(FileNotFoundError):
        A.load_obj(tmp_path / "missing.obj")


# ------------------------------------------------------------------------------------------------------- attributes
def test_within_person_spread_hand_checked():
    values = [1.0, 3.0, 2.0, 2.0, 5.0, 9.0]
    ids = ["a", "a", "b", "b", "c", "c"]
    # person stds (ddof 0): 1, 0, 2 -> mean 1; overall std: sqrt(65/9)
    assert within(values, ids) == pytest.approx(1 / np.sqrt(65 / 9))
    assert within([4.0, 4.0, 7.0, 7.0], [0, 0, 1, 1]) == 0.0
    rows = T.spread_table({"x": values, "y": [1, 1, 1, 1, 1, 2]}, {"x": [2.0, 2.0, 4.0, 4.0, 6.0, 7.0]}, ids)
    assert len(rows) == 1 and rows[0]["attribute"] == "x"
    # normalized: person stds 0, 0, 0.5 -> mean 1/6, divided by the overall std of the six values
    v = np.array([2.0, 2.0, 4.0, 4.0, 6.0, 7.0])
    assert rows[0]["normalized_spread"] == pytest.approx((0.5 / 3) / v.std())
    assert rows[0]["ratio"] == pytest.approx(rows[0]["normalized_spread"] / rows[0]["raw_spread"])
    with pytest.raises(InputError, match="two or more"):
        T.within_person_spread([1.0, 2.0], ["a", "b"])
    with pytest.raises(InputError, match="same length"):
        T.within_person_spread([1.0, 2.0, 3.0], ["a", "a"])
    with pytest.raises(InputError, match="share no"):
        T.spread_table({"x": values}, {"z": values}, ids)


def within(values, ids):
    return T.within_person_spread(values, ids)


def test_geometric_attributes_hand_checked_and_invariant(astronaut):
    _, _, _, clm = astronaut
    lm = clm.clone().double()
    # a hand-made eye: width 3, both lid distances 2 -> aspect ratio 4 / (2*3) = 2/3, for both eyes
    eye = torch.tensor([[0, 0], [1, -1], [2, -1], [3, 0], [2, 1], [1, 1]], dtype=torch.float64)
    lm[36:42] = eye + lm[36:42].mean(0) - eye.mean(0)
    lm[42:48] = eye + lm[42:48].mean(0) - eye.mean(0)
    # a hand-made inner mouth: width 4, openings 1, 2, 1 -> (1+2+1) / (3*4) = 1/3
    c = lm[60:68].mean(0)
    lm[60:68] = c + torch.tensor([[-2, 0], [-1, -0.5], [0, -1], [1, -0.5], [2, 0], [1, 0.5], [0, 1], [-1, 0.5]],
                                 dtype=torch.float64)
    g = T.geometric_attributes(lm)
    assert set(g) == set(T.GEOMETRIC_ATTRIBUTES)
    assert float(g["eye_aspect_ratio"][0]) == pytest.approx(2 / 3)
    assert float(g["mouth_opening"][0]) == pytest.approx(1 / 3)
    assert float(g["face_width_height"][0]) == pytest.approx(
        float((lm[16] - lm[0]).norm() / ((lm[19] + lm[24]) / 2 - lm[8]).norm()))
    # scale-, rotation- and translation-free
    th = 0.3
    R = torch.tensor([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]], dtype=torch.float64)
    moved = T.geometric_attributes(torch.stack([lm, 2.5 * lm @ R.T + 7]))
    for k, v in moved.items():
        assert v.shape == (2,) and float(v[0]) == pytest.approx(float(v[1]), rel=1e-9), k
    with pytest.raises(InputError, match=r"\[B,68,2\]"):
        T.geometric_attributes(torch.zeros(3, 5, 2))
    with pytest.raises(InputError, match="degenerate"):
        T.geometric_attributes(torch.zeros(68, 2))


def test_appearance_attributes_on_uniform_grey(astronaut):
    _, _, crop, clm = astronaut
    imgs = torch.stack([torch.full_like(crop, 0.5), crop])
    a = T.appearance_attributes(imgs, torch.stack([clm, clm]))
    assert set(a) == set(T.APPEARANCE_ATTRIBUTES)
    assert float(a["skin_lightness"][0]) == pytest.approx(53.39, abs=0.01)  # L* of sRGB mid-grey
    assert abs(float(a["skin_a"][0])) < 0.01 and abs(float(a["skin_chroma"][0])) < 0.01
    assert float(a["skin_a"][1]) > 2 and float(a["skin_b"][1]) > 5  # real skin is reddish-yellow
    mask = T.skin_mask(clm, 112, 112)
    assert 100 < int(mask.sum()) < 0.4 * 112 * 112
    with pytest.raises(InputError, match="landmark sets"):
        T.appearance_attributes(imgs, clm[None])
