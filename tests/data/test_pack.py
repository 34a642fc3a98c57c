"""The portable training pack: written from real faces, read back with what a GPU node has, verified on reading, and
a few paper-profile steps from it matching the same steps from the original data."""
from __future__ import annotations

import json

import pytest
import torch

from normface_lib import data
from normface_lib.core.errors import ChecksumError, InputError, OverwriteError
from normface_lib.encoders import load_encoder
from normface_lib.training import PROFILES, profile_config, train

S = PROFILES["quick"]["size"]  # the colour store the other tests and the notebooks build is reused


@pytest.fixture(scope="module")
def original():
    return data.load_tables("colour", S, mirror=False, n_train_people=8)


@pytest.fixture(scope="module")
def pack(original, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "pack"
    orl = data.held_out_table("orl", S, original["train"].mean_shape)
    held = {"expressions": data.held_out_table("expressions", S, original["train"].mean_shape)}
    return data.write_pack(out, original, held, load_encoder("facenet-casia", device="cpu"), "int8", 92,
                           orl.images[:40], {"test": True})


def test_a_pack_reads_back_the_same_tables(original, pack):
    m = data.read_manifest(pack)
    assert m["size"] == S and set(m["splits"]) == {"train", "unseen_people"} and set(m["held_out"]) == {"expressions"}
    back = data.read_tables(pack, mirror=True)
    t, o = back["train"], original["train"]
    assert len(t) == 2 * len(o) and t.photo_ids[:len(o)] == o.photo_ids  # mirrored on reading
    assert torch.equal(t.landmarks[:len(o)], o.landmarks) and torch.equal(t.mean_shape, o.mean_shape)
    assert t.training_inputs == o.training_inputs and torch.equal(t.target_index[:len(o)], o.target_index)
    # JPEG at quality 92 with full-resolution colour: a few 8-bit levels at most on average
    err = (t.images[:len(o)] - o.images).abs()
    assert float(err.mean()) < 2 / 255 and float(err.max()) < 0.25
    up = back["unseen_people"]
    assert up.photo_ids == original["unseen_people"].photo_ids
    ex = data.held_out_table("pack", S, t.mean_shape, data_root=pack, held_out_set="expressions")
    assert len(ex) == 170 and int(ex.input_mask.sum()) == 160
    diff = m["encoder"]["difference_from_fp32"]
    assert diff["n_images"] == 40 and diff["embedding_max"] < 0.1  # a same-person threshold is about 1


def test_a_damaged_or_foreign_pack_is_refused(pack, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(pack, bad)
    with open(bad / "train.npz", "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    with pytest.raises(ChecksumError, match="train.npz"):
        data.read_manifest(bad)
    with pytest.raises(OverwriteError, match="not empty"):
        data.write_pack(bad, {"train": None}, force=False)
    with pytest.raises(InputError, match="px crops, not 32"):
        data.load_tables("pack", 32, data_root=pack)
    with pytest.raises(FileNotFoundError, match="not a normface pack"):
        data.read_manifest(tmp_path)


@pytest.mark.slow
def test_paper_steps_from_a_pack_match_the_original_data(original, pack, tmp_path):
    """Three steps of the paper profile (online morphs, the FaceNet loss every step) from the pack, with the encoder
    it carries (int8), against the same steps from the original tables with the packaged encoder. The inputs differ
    by JPEG rounding and the encoder by its int8 weights (embeddings within 0.1), so the losses agree closely but not
    bit for bit: within 5 % of each other at every step."""
    cfg = dict(size=S, steps=3, batch_size=8, width=0.125, compile=False, warmup_steps=1, checkpoint_every=3,
               eval_splits=(), num_threads=2)
    mirrored = data.load_tables("colour", S, (), mirror=True, n_train_people=8)
    a = train(profile_config("paper", **cfg), tmp_path / "original", progress=False, tables=mirrored)
    b = train(profile_config("paper", dataset="pack", data_root=str(pack), **cfg), tmp_path / "pack",
              progress=False)
    la = [json.loads(x) for x in (tmp_path / "original" / "losses.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "pack" / "losses.jsonl").read_text().splitlines()]
    assert len(la) == len(lb) == 3
    for ra, rb in zip(la, lb):
        for k in ("texture", "landmark", "identity", "total"):
            assert rb[k] == pytest.approx(ra[k], rel=0.05), (ra["step"], k)
    assert a["steps_done"] == b["steps_done"] == 3
