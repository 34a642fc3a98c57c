"""normface_lib.evaluation: metric functions on small inputs with answers checkable by hand."""
import math

import pytest
import torch

from normface_lib import evaluation as ev
from normface_lib.faces import interocular
from normface_lib.core.errors import InputError


def _unit(*angles_deg):
    a = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], 1).float()


# ---------------------------------------------------------------------------------------------- threshold
def test_calibrate_threshold_by_hand():
    # 1-D "embeddings": person 0 at 0 and 1, person 1 at 10 and 13 -> different-person distances
    # |0-10|=10, |0-13|=13, |1-10|=9, |1-13|=12 -> sorted 9, 10, 12, 13
    e = torch.tensor([[0.0], [1.0], [10.0], [13.0]])
    p = torch.tensor([0, 0, 1, 1])
    assert ev.calibrate_threshold(e, p, far=0.05) == pytest.approx(9.0)   # floor(0.05*4)=0
    assert ev.calibrate_threshold(e, p, far=0.25) == pytest.approx(10.0)  # floor(1.0)=1
    assert ev.calibrate_threshold(e, p, far=0.5) == pytest.approx(12.0)
    assert ev.calibrate_threshold(e, p, far=0.99) == pytest.approx(13.0)


def test_calibrate_threshold_achieves_far_on_random_data():
    g = torch.Generator().manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(60, 8, generator=g), dim=1)
    p = torch.arange(60) // 3
    t = ev.calibrate_threshold(e, p, far=0.05)
    rates = ev.verification_rates(e, p, t)
    assert rates["far"] <= 0.05
    assert rates["far"] > 0.04  # the largest threshold that keeps the rate at 5 %


def test_calibrate_threshold_rejects_bad_input():
    e = torch.zeros(4, 2)
    with pytest.raises(InputError):
        ev.calibrate_threshold(e, torch.zeros(4, dtype=torch.long))  # one person only
    with pytest.raises(InputError):
        ev.calibrate_threshold(e, torch.tensor([0, 0, 1, 1]), far=1.5)
    with pytest.raises(InputError):
        ev.calibrate_threshold(e, torch.tensor([0, 1, 1]))  # wrong length


# ---------------------------------------------------------------------------------------------- rank-1
def test_rank1_by_hand():
    gallery = _unit(0, 5, 90, 95)
    gp = torch.tensor([0, 0, 1, 1])
    query = _unit(2, 88, 40)  # near person 0, near person 1, nearer to 5° than to 90°
    qp = torch.tensor([0, 1, 1])
    assert ev.rank1(query, qp, gallery, gp).tolist() == [True, True, False]


def test_rank1_exclude_leaves_out_the_photo_itself():
    # each query is gallery photo i itself; excluding it, the nearest other photo decides
    gallery = _unit(0, 10, 12, 90)
    gp = torch.tensor([0, 0, 1, 1])
    got = ev.rank1(gallery, gp, gallery, gp, exclude=torch.arange(4))
    # 0 -> nearest other is 10 (person 0): right; 10 -> 12 (person 1): wrong; 12 -> 10 (person 0): wrong;
    # 90 -> 12 (person 1): right
    assert got.tolist() == [True, False, False, True]
    assert ev.rank1(gallery, gp, gallery, gp).all()  # without exclusion each finds itself


def test_rank1_rejects_bad_exclude():
    g = _unit(0, 90)
    with pytest.raises(InputError):
        ev.rank1(g, torch.tensor([0, 1]), g, torch.tensor([0, 1]), exclude=torch.tensor([0, 5]))


# ---------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_is_reproducible_and_brackets_the_mean():
    g = torch.Generator().manual_seed(1)
    v = torch.rand(40, generator=g)
    people = torch.arange(40) // 4
    a = ev.bootstrap_ci(v, people, n_boot=500, seed=3)
    b = ev.bootstrap_ci(v, people, n_boot=500, seed=3)
    c = ev.bootstrap_ci(v, people, n_boot=500, seed=4)
    assert a == b
    assert a != c
    assert a[0] < float(v.mean()) < a[1]


def test_bootstrap_constant_within_people_by_hand():
    # two people, values all 0 for one and all 1 for the other: every replicate mean is 0, 0.5 or 1
    v = torch.tensor([0.0, 0.0, 1.0, 1.0])
    lo, hi = ev.bootstrap_ci(v, torch.tensor([0, 0, 1, 1]), n_boot=2000, level=0.9, seed=0)
    assert (lo, hi) == (0.0, 1.0)
    # a single constant value: a degenerate interval
    assert ev.bootstrap_ci(torch.full((6,), 0.3), torch.arange(6), n_boot=50) == pytest.approx((0.3, 0.3))


def test_summarize_mean():
    s = ev.summarize(torch.tensor([1.0, 2.0, 3.0, 6.0]), torch.tensor([0, 0, 1, 1]), n_boot=100)
    assert s["mean"] == pytest.approx(3.0)
    assert s["ci"][0] <= 3.0 <= s["ci"][1]


# ---------------------------------------------------------------------------------------------- invariance, landmarks
def test_embedding_and_pixel_spread_by_hand():
    e = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0], [5.0, 5.0]])
    p = torch.tensor([0, 0, 1, 1])
    assert ev.embedding_spread(e, p).tolist() == [1.0, 0.0]
    imgs = torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2), torch.full((3, 2, 2), 0.5), torch.full((3, 2, 2), 0.5)])
    assert ev.pixel_spread(imgs, p).tolist() == [0.5, 0.0]


def test_pixel_identity_contrast_by_hand():
    g = torch.Generator().manual_seed(0)
    person = torch.arange(6).repeat_interleave(4)
    faces = torch.rand(6, 3, 8, 8, generator=g)[person] * 0.6 + 0.2 * torch.rand(24, 3, 8, 8, generator=g)
    same = ev.pixel_identity_contrast(faces, faces, person, n_boot=200)
    assert same["value"] == pytest.approx(1.0) and same["ci"][0] == pytest.approx(1.0)  # doing nothing scores 1
    flat = ev.pixel_identity_contrast(faces.mean(0, keepdim=True).expand_as(faces), faces, person, n_boot=200)
    assert flat["value"] == 0.0 and flat["outputs_ratio"] == 0.0  # one face for everyone: a collapse scores 0
    shrunk = ev.pixel_identity_contrast(0.2 * faces + 0.8 * faces.mean(0, keepdim=True), faces, person, n_boot=200)
    assert shrunk["value"] == pytest.approx(1.0)  # a global contrast change keeps the ratio
    means = torch.stack([faces[person == p].mean(0) for p in range(6)])[person]
    noisy = (means + 0.02 * torch.randn(faces.shape, generator=g)).clamp(0, 1)  # consistent within a person, distinct between
    sharp = ev.pixel_identity_contrast(noisy, faces, person, n_boot=200)
    assert sharp["value"] > 5 and sharp["ci"][0] <= sharp["value"] <= sharp["ci"][1] and sharp["n_people"] == 6
    # by hand: 2 people, 2 photos each, one pixel value per photo
    x = torch.tensor([0.0, 0.1, 0.5, 0.6]).reshape(4, 1, 1, 1).expand(4, 3, 1, 1)
    r = ev.pixel_identity_ratio(x, torch.tensor([0, 0, 1, 1]))  # within 0.0025, between 0.0625
    assert float(r[0]) == pytest.approx(25.0)
    # strata (folds whose models differ): a constant output per fold, different between folds, is still no contrast
    fold = person // 3
    per_fold_mean = torch.stack([faces[fold == f].mean(0) for f in range(2)])[fold]
    strat = ev.pixel_identity_contrast(per_fold_mean, faces, person, n_boot=200, strata=fold)
    assert strat["value"] == 0.0 and ev.pixel_identity_contrast(per_fold_mean, faces, person, n_boot=50)["value"] > 1
    assert ev.pixel_identity_contrast(faces, faces, person, n_boot=50, strata=fold)["value"] == pytest.approx(1.0)
    with pytest.raises(InputError, match="strata"):
        ev.pixel_identity_ratio(faces, person, strata=torch.arange(24) % 2)  # a person split across strata
    with pytest.raises(InputError, match="same shape"):
        ev.pixel_identity_contrast(faces[:3], faces, person)
    with pytest.raises(InputError, match="at least 2 people"):
        ev.pixel_identity_ratio(faces[:4], person[:4])


def test_landmark_error_normalised_by_eye_distance():
    t = torch.zeros(1, 68, 2)
    t[0, 36:42, 0] = 10.0
    t[0, 42:48, 0] = 30.0  # eye centres 20 px apart
    shifted = t + torch.tensor([3.0, 4.0])  # every point off by 5 px
    assert interocular(t).item() == pytest.approx(20.0)
    assert ev.landmark_error(shifted, t).item() == pytest.approx(0.25)
    assert ev.landmark_error(t, t).item() == 0.0


# ---------------------------------------------------------------------------------------------- baselines
def test_nearest_identity_returns_the_nearest_persons_target():
    feats = torch.tensor([[0.0, 0.0], [0.2, 0.0], [10.0, 10.0], [10.2, 10.0]])
    person = torch.tensor([0, 0, 1, 1])
    targets = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    nn = ev.NearestIdentity(feats, person, targets)
    out = nn(torch.tensor([[9.0, 9.5], [0.5, -0.5]]))
    assert out["person"].tolist() == [1, 0]
    assert torch.equal(out["image"][0], targets[1])


def test_linear_map_recovers_a_linear_relation():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(48, 6, generator=g)
    W = torch.randn(6, 3 * 4 * 4, generator=g) * 0.02  # small: no clipping at 0 or 1
    targets = (0.5 + feats @ W).clamp(0, 1).reshape(48, 3, 4, 4)
    lin = ev.LinearMap(feats, targets, torch.arange(48) // 4, lambdas=(1e-4, 1.0, 100.0))
    assert lin.lam == 1e-4  # cross-validation picks the small ridge on noise-free data
    pred = lin(feats[:5])["image"]
    assert pred.shape == (5, 3, 4, 4)
    assert float(targets.min()) > 0 and float(targets.max()) < 1
    assert float((pred - targets[:5]).abs().max()) < 1e-3


def test_mean_face_is_the_mean_texture():
    class T:
        target_textures = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    assert torch.allclose(ev.mean_face(T), torch.full((3, 4, 4), 0.5))


def test_independent_judge():
    assert ev.independent_judge("facenet-casia") == "dlib-resnet"
    assert ev.independent_judge("dlib-resnet") == "facenet-casia"


def test_to_json_rejects_nan(tmp_path):
    with pytest.raises(InputError):
        ev.to_json({"a": float("nan")}, tmp_path / "m.json")
    p = ev.to_json({"a": 1 / 3, "_hidden": object()}, tmp_path / "m.json", nd=3)
    assert p.read_text().strip() == '{\n "a": 0.333\n}'


# ---------------------------------------------------------------------------------------------- new measures
def test_face_colour_difference_by_hand():
    x = torch.full((2, 3, 32, 32), 0.5)
    y = x.clone()
    y[1] += 10 / 255  # the second output 10 levels brighter everywhere
    d = ev.face_colour_difference(y, x)
    assert d[0] == 0 and abs(d[1] - 10) < 1e-4  # float64 mean of float32 pixels: error ≲ 1e-5 levels
    with pytest.raises(InputError):
        ev.face_colour_difference(y[:1], x)


def test_ratio_of_means_by_hand():
    r = ev.ratio_of_means(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 2.0]), n_boot=200)
    assert r["value"] == 1.0 and r["ci"][0] <= 1.0 <= r["ci"][1]
    same = ev.ratio_of_means(torch.ones(4), torch.ones(4), n_boot=50)
    assert same["value"] == same["ci"][0] == same["ci"][1] == 1.0
