"""Data tables on real faces: ORL splits and tables, mirroring, a CelebA-shaped folder, LFW subset, portraits,
user folders. Nothing downloads."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from normface_lib import data
from normface_lib import faces as fc
from normface_lib.core import resources
from normface_lib.core.errors import InputError

torch.set_num_threads(2)
S = 64


@pytest.fixture(scope="module")
def splits():
    return data.orl_splits()


@pytest.fixture(scope="module")
def train():
    return data.load_orl_table("train", S)


def test_orl_splits_disjoint_and_seeded(splits):
    tr, up, uph, tg = splits["train_people"], splits["unseen_people"], splits["unseen_photos"], splits["targets"]
    ins = splits["train_inputs"]
    assert splits["inputs"] == "frontal_neutral"  # the paper's setup is the default
    assert len(tr) == 32 and len(up) == 8 and not set(tr) & set(up) and len(set(tr) | set(up)) == 40
    # every photo of a training person is either a training input (frontal, neutral) or unseen, never both
    assert set(uph) == set(tr) == set(ins)
    assert all(sorted(ins[p] + uph[p]) == list(range(1, 11)) and not set(ins[p]) & set(uph[p]) for p in tr)
    assert all(tg[p] in ins[p] for p in tr) and all(1 <= tg[p] <= 10 for p in tr + up)
    assert data.orl_splits(seed=0) == splits  # reproducible
    other = data.orl_splits(seed=1)
    assert other["unseen_people"] != up and other["targets"] == tg  # targets do not depend on the seed
    assert len(data.orl_splits(n_unseen_people=4, n_unseen_photos=3)["unseen_people"]) == 4
    paired = data.orl_splits(inputs="paired")
    assert paired["unseen_people"] == up and paired["targets"] == tg  # the ablation changes the inputs only
    assert all(len(v) == 2 and tg[p] not in v and len(paired["train_inputs"][p]) == 8
               for p, v in paired["unseen_photos"].items())


def test_frontal_neutral_inputs_follow_the_stated_limits(splits):
    _, lms, _, _ = data.orl_landmarks()
    fn = data.orl_frontal()
    passed = fc.is_frontal_neutral(lms)
    assert torch.equal(fn["passed"], passed) and 0 < int(passed.sum()) < 400
    m = fc.pose_measures(lms[passed])
    for k, (lo, hi) in fc.FRONTAL_NEUTRAL_LIMITS.items():
        assert (lo is None or bool((m[k] >= lo).all())) and (hi is None or bool((m[k] <= hi).all()))
    # a turned head fails: the photo with the largest nose-tip yaw is not frontal
    assert not bool(passed[fc.pose_measures(lms)["yaw_nose"].abs().argmax()])
    for name, numbers in fn["frontal"].items():
        k = int(name.split("/s")[1]) - 1
        if name in fn["fallback"]:  # no photo passes: its single most frontal, neutral photo
            assert len(numbers) == 1 and fn["per_person"][name] == 0 and not bool(passed[10 * k:10 * k + 10].any())
        else:
            assert numbers == [r + 1 for r in range(10) if bool(passed[10 * k + r])]
        assert fn["targets"][name] in numbers
    with pytest.raises(InputError, match="unknown pose measures"):
        fc.is_frontal_neutral(lms, limits={"tilt": (0, 1)})


def test_orl_tables_follow_the_split(splits, train):
    up = data.load_orl_table("unseen_people", S)
    uph = data.load_orl_table("unseen_photos", S)
    n_in = sum(len(v) for v in splits["train_inputs"].values())
    n_unseen = sum(len(v) for v in splits["unseen_photos"].values())
    assert n_in + n_unseen == 320 and len(train) == n_in and len(up) == 80 and len(uph) == n_unseen + 32
    assert train.images.shape == (n_in, 3, S, S) and train.images.dtype == torch.float32
    # the paper's training: every input is its own target
    assert train.training_inputs == "frontal_neutral" and torch.equal(train.target_index, torch.arange(n_in))
    assert torch.equal(train.target_row, torch.arange(n_in))
    assert train.target_textures.shape == (n_in, 3, S, S) and torch.equal(train.target_landmarks, train.landmarks)
    ids_train = set(train.photo_ids)
    ids_up = set(up.photo_ids)
    ids_uph_inputs = {i for i, m in zip(uph.photo_ids, uph.input_mask) if m}
    assert not ids_train & ids_up and not ids_train & ids_uph_inputs and not ids_up & ids_uph_inputs
    assert {i.rsplit("/", 1)[0] for i in ids_up} == set(splits["unseen_people"])
    # unseen-photos tables point at the (training) target photos, which are not inputs there
    assert int(uph.input_mask.sum()) == n_unseen and set(uph.photo_ids[int(r)] for r in uph.target_row) <= ids_train
    for table in (up, uph):
        assert table.training_inputs == "paired" and table.target_of is None
        for p, name in enumerate(table.people):
            row = int(table.target_row[p])
            assert table.photo_ids[row] == f"{name}/{splits['targets'][name]}" and int(table.person[row]) == p
    for table in (train, up, uph):
        assert torch.equal(table.mean_shape, train.mean_shape)  # held-out tables reuse the training mean shape
    item = train[5]
    assert set(item) == {"image", "landmarks", "person", "target_landmarks", "target_texture", "target_image"}
    assert torch.equal(item["target_image"], train.images[5]) and torch.equal(item["target_landmarks"],
                                                                              train.landmarks[5])
    # paired (the ablation): every row's target is its person's target photo
    pt = data.load_orl_table("train", S, inputs="paired")
    assert len(pt) == 256 and pt.training_inputs == "paired" and pt.target_textures.shape[0] == 32
    item = pt[5]
    p = int(item["person"])
    assert torch.equal(item["target_image"], pt.images[pt.target_row[p]])
    assert pt.photo_ids[int(pt.target_row[p])] == f"{pt.people[p]}/{splits['targets'][pt.people[p]]}"
    # canonical frame: every crop's anchors sit near the canonical anchors
    anchors = fc.anchor_points(train.landmarks)
    assert (anchors - (fc.CANONICAL_ANCHORS * S - 0.5)).norm(dim=-1).max() < 3


def test_kfold_and_nested_training_people():
    folds = [data.orl_splits(fold=f, n_folds=5) for f in range(5)]
    unseen = [p for sp in folds for p in sp["unseen_people"]]
    assert len(unseen) == 40 and len(set(unseen)) == 40  # every person unseen exactly once
    assert folds[0]["unseen_people"] == data.orl_splits()["unseen_people"]  # fold 0 is the default split
    assert all(not set(sp["train_people"]) & set(sp["unseen_people"]) for sp in folds)
    sizes = [4, 8, 16, 24, 32]
    subsets = [data.orl_splits(n_train_people=n)["train_people"] for n in sizes]
    assert [len(s) for s in subsets] == sizes
    assert all(set(a) <= set(b) for a, b in zip(subsets, subsets[1:]))  # nested
    t = data.load_orl_table("train", S, n_train_people=4)
    assert {p.removesuffix("+m") for p in t.people} == set(subsets[0]) and "people=4" in t.source
    with pytest.raises(InputError, match="fold"):
        data.orl_splits(fold=5, n_folds=5)
    with pytest.raises(InputError, match="n_train_people"):
        data.orl_splits(n_train_people=33)
    with pytest.raises(InputError, match="training inputs"):
        data.orl_splits(inputs="all")


def test_targets_are_frontal_and_neutral(train, splits):
    _, lms, _, _ = data.orl_landmarks()
    score = fc.frontal_neutral_score(lms).reshape(40, 10)
    rows = [int(p.split("/s")[1]) * 10 - 11 + splits["targets"][p] for p in splits["train_people"]]
    m = fc.pose_measures(lms[rows])
    assert float(m["yaw_nose"].abs().median()) < 0.05 and float(m["mouth_open"].median()) < 0.05
    assert float(score.flatten()[rows].mean()) < 0.5 * float(score.mean())
    t = fc.pose_measures(train.landmarks)  # every training input is within the limits (or a person's fallback)
    fallback = torch.tensor([i.split("/", 1)[1].rsplit("/", 1)[0] in {f.split("/")[1] for f in
                                                                       data.orl_frontal()["fallback"]}
                             for i in train.photo_ids])
    assert bool((t["yaw_nose"].abs()[~fallback] <= 0.12).all())


def test_orl_landmark_cache_is_read_not_rebuilt(train):
    files = sorted(resources.cache_dir("landmarks").glob("orl-*.npz"))
    assert files and all(f.stat().st_size < 500_000 for f in files)
    before = [f.stat().st_mtime_ns for f in files]
    data.orl._ORL_MEMO.clear()  # force a read from disk
    _, lms, _, _ = data.orl_landmarks()
    # the cache was read (same contents), not detected again and rewritten (no timing involved)
    assert sorted(resources.cache_dir("landmarks").glob("orl-*.npz")) == files
    assert [f.stat().st_mtime_ns for f in files] == before
    assert any(np.array_equal(lms.numpy(), np.load(f)["landmarks"]) for f in files)


def test_mirrored_table(train):
    mt = data.load_orl_table("train", S, mirror=True)
    N, P, T = len(train), len(train.people), len(train.target_row)
    assert len(mt) == 2 * N and len(mt.people) == 2 * P and mt.people[P] == train.people[0] + "+m"
    assert mt.photo_ids[N] == train.photo_ids[0] + "+m" and len(mt.target_row) == 2 * T
    assert torch.equal(mt.images[N], train.images[0].flip(-1))
    assert torch.allclose(mt.landmarks[N], fc.mirror_landmarks(train.landmarks[0], S))
    row = mt[N]  # a mirrored input has the mirrored target
    assert torch.equal(row["target_image"], train[0]["target_image"].flip(-1))
    assert int(mt.target_index[N]) == int(train.target_index[0]) + T
    # with a symmetric mean shape, registering the mirrored target is flipping the registered target
    assert (mt.target_textures[T] - train.target_textures[0].flip(-1)).abs().mean() < 0.01


def test_mean_shape_file_matches():
    ms = fc.load_mean_shape(224)
    # the committed file was made when each person's target was its best-scoring photo of all ten; targets are now
    # the best-scoring frontal, neutral photo (which changed 4 of the 40 people's), moving the mean by a fraction of a
    # pixel at 224 px. It stays as committed: the LFW landmark fallback, and every committed figure, rest on it.
    assert (ms - data.orl_mean_shape(224)).norm(dim=1).max() < 0.5
    with pytest.raises(FileNotFoundError, match="mean shape"):
        fc.load_mean_shape(64, path="/nonexistent/mean.json")


def test_bad_arguments():
    with pytest.raises(InputError, match="split"):
        data.load_orl_table("validation", S)
    with pytest.raises(InputError, match="size"):
        data.load_orl_table("train", 3)
    with pytest.raises(InputError, match="n_unseen_people"):
        data.orl_splits(n_unseen_people=40)
    with pytest.raises(InputError, match="mean_shape"):
        data.load_orl_table("train", S, mean_shape=torch.zeros(5, 2))


# ------------------------------------------------------------------------------------------------ CelebA-shaped folder
@pytest.mark.slow
def test_fake_celeba_folder_loads(tmp_path, monkeypatch, fake_celeba):
    monkeypatch.setenv("NORMFACE_CACHE", str(tmp_path / "cache"))
    rows = fake_celeba(tmp_path)
    opts = dict(check_md5=False, n_unseen_people=1, n_unseen_photos=1, inputs="paired")
    t = data.load_celeba_table(tmp_path, "train", S, **opts)
    assert len(t.people) == 3 and "celeba/1004" not in t.people  # person 5 has no non-smiling photo
    assert len(t) == 3 * 3 and t.images.shape == (9, 3, S, S) and not t.errors
    smiling = {f for f, _, a, _ in rows if a[3] == 1}
    for p in range(len(t.people)):
        assert t.photo_ids[int(t.target_row[p])].split("/", 1)[1] not in smiling
    up = data.load_celeba_table(tmp_path, "unseen_people", S, **opts)
    uph = data.load_celeba_table(tmp_path, "unseen_photos", S, **opts)
    assert len(up.people) == 1 and not set(up.people) & set(t.people) and len(up) == 4
    assert int(uph.input_mask.sum()) == 3 and not {i for i, m in zip(uph.photo_ids, uph.input_mask) if m} & set(
        t.photo_ids)
    assert torch.equal(up.mean_shape, t.mean_shape)
    # the paper's training (the default): only photos allowed by the attributes and within the landmark limits
    fn = data.load_celeba_table(tmp_path, "train", S, check_md5=False, n_unseen_people=1)
    assert fn.training_inputs == "frontal_neutral" and set(fn.people) == set(t.people)
    assert not {i.split("/", 1)[1] for i in fn.photo_ids} & smiling and len(fn) <= len(t)
    with pytest.raises(FileNotFoundError, match="CelebA"):  # torchvision's checksums reject home-made list files
        data.load_celeba_table(tmp_path, "train", S)


# ------------------------------------------------------------------------------------------------ LFW, portraits, folders
@pytest.mark.slow
def test_lfw_subset():
    lfw = data.load_lfw(32)
    assert len(lfw) == 100 and lfw.images.shape == (100, 3, 32, 32)
    assert int(lfw.detected.sum()) >= 90  # 100 of 100 detected on this machine
    strict = data.load_lfw(32, fallback=False)
    assert len(strict) == int(lfw.detected.sum())


def test_portraits_are_colour():
    ps = data.load_portraits(S)
    assert ps.photo_ids == ["skimage/astronaut", "matplotlib/grace_hopper"] and not ps.errors
    assert float((ps.images[:, 0] - ps.images[:, 2]).abs().mean()) > 0.02  # really colour
    assert (fc.anchor_points(ps.landmarks) - (fc.CANONICAL_ANCHORS * S - 0.5)).norm(dim=-1).max() < 3


def test_load_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMFACE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "photos"
    orl = resources.orl_dir()
    for person, src in (("alice", "s1/1"), ("alice", "s1/2"), ("bob", "s2/1")):
        (root / person).mkdir(parents=True, exist_ok=True)
        Image.open(orl / f"{src}.pgm").save(root / person / f"{src.replace('/', '_')}.png")
    Image.fromarray(np.full((100, 100), 128, np.uint8)).save(root / "bob" / "blank.png")
    (root / "notes.txt").write_text("not a photo")
    (root / "broken.jpg").write_text("not a jpeg either")
    fs = data.load_folder(root, S)
    assert len(fs) == 3 and fs.people == ["alice", "bob"] and fs.person.tolist() == [0, 0, 1]
    errs = {e[0].rsplit("/", 1)[1]: e[1] for e in fs.errors}
    assert set(errs) == {"notes.txt", "broken.jpg", "blank.png"}
    assert "skipped" in errs["notes.txt"] and "Unreadable" in errs["broken.jpg"] and "NoFace" in errs["blank.png"]
    with pytest.raises(FileNotFoundError):
        data.load_folder(tmp_path / "nope", S)


def test_a_truncated_landmark_cache_is_detected_again(tmp_path, monkeypatch, capsys):
    data.orl_landmarks()  # the good cache file exists
    good = sorted(resources.cache_dir("landmarks").glob("orl-*.npz"))[0]
    monkeypatch.setenv("NORMFACE_CACHE", str(tmp_path))
    bad = resources.cache_dir("landmarks") / good.name
    bad.write_bytes(good.read_bytes()[:1000])
    monkeypatch.setattr(data.orl, "_ORL_MEMO", {})
    _, lms, _, _ = data.orl_landmarks()
    assert "unreadable" in capsys.readouterr().out
    assert lms.shape == (400, 68, 2) and torch.equal(lms, torch.from_numpy(np.load(good)["landmarks"]))
    assert np.load(bad)["landmarks"].shape == (400, 68, 2)  # rewritten whole
