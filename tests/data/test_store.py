"""The streamed data layer on real photos: a person-folder data set (jittered ORL photos) preprocessed into an on-disk
store by parallel workers, read row by row, resumed after an interruption, and its errors."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from normface_lib import data
from normface_lib import faces as fc
from normface_lib.core.errors import InputError, OverwriteError
from normface_lib.data.resampled import write_person_folder

S = 64


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_person_folder(tmp_path_factory.mktemp("people") / "photos", people=5, photos_per_person=4, seed=1)


@pytest.fixture(scope="module")
def built(folder, tmp_path_factory):
    store_dir = tmp_path_factory.mktemp("store") / "s"
    store = data.FaceStore(data.folder_photos(folder), S, store_dir=store_dir, shard_size=6, workers=2,
                           progress=False).build()
    return store, data.stream_tables(store, mirror=True, n_unseen_people=1, n_unseen_photos=1, inputs="paired")


@pytest.mark.slow
def test_store_rows_are_the_aligned_photos(folder, built):
    store, tables = built
    assert len(store.photos) == 20 and bool(store.ok.all()) and store.n_shards == 4 and not store.errors
    train = tables["train"]
    assert isinstance(train, data.StreamTable) and isinstance(train.images, data.DiskImages)
    assert len(train.people) == 8 and len(train) == 2 * 4 * 3  # 4 training people (+ mirrors), 3 photos each
    # a row is the photo's canonical crop, quantised to 8 bits like the photo
    i = train.photo_ids.index("folder/p00000/0001.jpg")
    face = fc.face_from_photo(folder / "p00000" / "0001.jpg", S, cache=False)
    assert (train.images[i] - face.crop).abs().max() <= 0.5 / 255 + 1e-6
    assert torch.allclose(train.landmarks[i], face.landmarks, atol=1e-4)
    # its mirror image is flipped on reading, its landmarks mirrored
    n = len(train) // 2
    assert torch.equal(train.images[i + n], train.images[i].flip(-1))
    assert torch.allclose(train.landmarks[i + n], fc.mirror_landmarks(train.landmarks[i:i + 1], S)[0])
    row = train[i]
    assert row["image"].shape == (3, S, S) and row["target_texture"].shape == (3, S, S)
    assert row["target_texture"].min() >= 0 and row["target_texture"].max() <= 1
    p = int(train.person[i])
    assert torch.equal(row["target_image"], train.images[int(train.target_row[p])])
    # the held-out person is in no training row; held-out tables share the training mean shape
    assert not set(tables["unseen_people"].people) & {q.removesuffix("+m") for q in train.people}
    assert torch.equal(tables["unseen_people"].mean_shape, train.mean_shape)
    # a seeded sample read into memory keeps each row's person and target
    sample = train.materialize(train.sample_rows(5, seed=3))
    assert isinstance(sample.images, torch.Tensor) and int(sample.input_mask.sum()) == 5
    for k in range(len(sample)):
        j = train.photo_ids.index(sample.photo_ids[k])
        assert torch.equal(sample.images[k], train.images[j])
        assert sample.people[int(sample.person[k])] == train.people[int(train.person[j])]
    assert torch.equal(train.sample_rows(5, seed=3), train.sample_rows(5, seed=3))


@pytest.mark.slow
def test_streamed_frontal_neutral_tables_map_each_input_to_itself(built):
    """The paper's training on a streamed data set: the training rows are the frontal, neutral photos (or a person's
    single best one), each its own target (mirror images included); the other photos are unseen photos."""
    store, paired = built
    tables = data.stream_tables(store, mirror=True, n_unseen_people=1)
    train, uph = tables["train"], tables["unseen_photos"]
    assert train.training_inputs == "frontal_neutral" and paired["train"].training_inputs == "paired"
    n = len(train) // 2
    assert len(train.target_row) == 2 * n and torch.equal(train.target_index, torch.arange(2 * n))
    for i in (0, n - 1, n):
        row = train[i]
        assert torch.equal(row["target_image"], train.images[i])
        assert torch.equal(row["target_landmarks"], train.landmarks[i])
    passed = fc.is_frontal_neutral(train.landmarks[:n])
    people = {train.people[int(p)] for p in train.person[:n][~passed]}
    assert all(int((train.person[:n] == train.people.index(q)).sum()) == 1 for q in people)  # fallbacks: one photo
    ins = {i for i, m in zip(uph.photo_ids, uph.input_mask) if m}
    assert not ins & set(train.photo_ids) and len(ins) + n == 4 * 4  # 4 training people × 4 photos
    sample = train.materialize(torch.tensor([0, n]))
    assert sample.training_inputs == "frontal_neutral"
    assert torch.equal(sample[1]["target_image"], train.images[n]) and len(sample.target_row) == 2


@pytest.mark.slow
def test_an_interrupted_store_build_resumes_where_it_stopped(folder, built, tmp_path):
    store, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(store.folder, copy)
    (copy / "meta-00002.npz").unlink()  # as if killed while shard 2 was being written
    before = {f: os.stat(copy / f).st_mtime_ns for f in ("crops-00000.u8", "meta-00001.npz")}
    again = data.FaceStore(data.folder_photos(folder), S, store_dir=copy, shard_size=6, workers=0,
                           progress=False).build()
    assert {f: os.stat(copy / f).st_mtime_ns for f in before} == before  # finished shards were not redone
    assert torch.equal(again.crop_landmarks, store.crop_landmarks)
    assert torch.equal(again.images(torch.arange(20))[:], store.images(torch.arange(20))[:])


def test_store_errors_say_what_to_fix(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="sub-folder"):
        data.folder_photos(tmp_path / "missing")
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(folder / "p00000" / "0000.jpg", loose / "a.jpg")
    with pytest.raises(InputError, match="one sub-folder per person"):
        data.folder_photos(loose)
    with pytest.raises(InputError, match="data_root"):
        data.load_tables("folder", S)
    with pytest.raises(OverwriteError):
        write_person_folder(folder, 1, 1)
    # a truncated crops file is reported with how to mend it, not read as a wrong picture
    f = tmp_path / "crops.u8"
    f.write_bytes(b"\0" * (S * S * 3 + 10))
    rows = data.DiskImages([str(f)], 2, S, torch.tensor([0, 1]))
    assert rows[0].shape == (3, S, S)
    with pytest.raises(InputError, match="truncated"):
        rows[1]
