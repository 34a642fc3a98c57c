"""Preprocessing on real faces: loading odd formats, detection, landmarks, alignment, caching, registration,
mirroring, pose scores, and the errors bad inputs get."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from normface_lib import faces as fc
from normface_lib.nets import register_textures
from normface_lib import warp
from normface_lib.core import resources
from normface_lib.core.errors import InputError, NoFaceError, UnreadableImageError

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def orl_photo():
    return resources.orl_dir() / "s1" / "1.pgm"


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()  # [512,512,3] uint8, public domain (NASA)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMFACE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_landmarks_inside_face_box(orl_photo):
    image = fc.load_image(orl_photo)
    assert image.shape == (3, 112, 92) and torch.equal(image[0], image[2])  # grey → 3 equal channels
    boxes, probs = fc.detect_faces(image)
    assert len(boxes) >= 1 and probs[0] > 0.9
    lm = fc.detect_landmarks(image)
    x0, y0, x1, y1 = boxes[0].tolist()
    inner = lm[17:]  # brows, nose, eyes, mouth: strictly inside the box
    assert bool(((inner[:, 0] > x0) & (inner[:, 0] < x1) & (inner[:, 1] > y0) & (inner[:, 1] < y1)).all())
    mx, my = 0.2 * (x1 - x0), 0.2 * (y1 - y0)  # the jaw line may touch the box edge
    assert bool(((lm[:, 0] > x0 - mx) & (lm[:, 0] < x1 + mx) & (lm[:, 1] > y0 - my) & (lm[:, 1] < y1 + my)).all())
    # anatomy: left-of-picture eye left of the other, eyes above nose tip above mouth
    a = fc.anchor_points(lm)
    assert a[0, 0] < a[1, 0] and a[:2, 1].max() < lm[fc.NOSE_TIP, 1] < a[2, 1]


def test_face_from_photo_canonical_anchors(orl_photo):
    face = fc.face_from_photo(orl_photo, 64, cache=False)
    assert face.crop.shape == (3, 64, 64) and face.crop.dtype == torch.float32
    assert 0 <= face.crop.min() and face.crop.max() <= 1
    anchors = fc.anchor_points(face.landmarks)
    target = fc.CANONICAL_ANCHORS * 64 - 0.5
    assert (anchors - target).norm(dim=-1).max() < 3.0  # least squares over 3 anchors, a few px at most


def test_grey_rgba_palette_and_exif_images(tmp_path, astronaut, orl_photo):
    ref = fc.face_from_photo(astronaut, 64, cache=False)
    # RGBA with a transparent border: composited on white
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    rgba[:20, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    im = fc.load_image(tmp_path / "rgba.png")
    assert im.shape == (3, 512, 512) and torch.allclose(im[:, :20], torch.ones(3, 20, 512))
    # palette
    Image.fromarray(astronaut).convert("P").save(tmp_path / "pal.png")
    for name in ("rgba.png", "pal.png"):
        f = fc.face_from_photo(tmp_path / name, 64, cache=False)
        assert (f.landmarks - ref.landmarks).norm(dim=-1).mean() < 1.5, name
    # EXIF orientation 6 ("rotate 90° clockwise to view"): stored sideways, loaded upright
    upright = Image.open(orl_photo).convert("L")
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "exif.jpg", exif=exif.tobytes(), quality=95)
    im = fc.load_image(tmp_path / "exif.jpg")
    assert im.shape == (3, 112, 92)
    assert (im[0] - torch.from_numpy(np.asarray(upright, np.float32) / 255)).abs().mean() < 0.02
    fc.face_from_photo(tmp_path / "exif.jpg", 64, cache=False)


@pytest.mark.slow
def test_tiny_and_huge_images(astronaut):
    from skimage import data

    tiny = data.lfw_subset()[0].astype(np.float32)  # 25x25 grey
    f = fc.face_from_photo(tiny, 32, cache=False)
    assert f.photo_landmarks.shape == (68, 2)
    assert bool(((f.photo_landmarks[17:] > -1) & (f.photo_landmarks[17:] < 25)).all())
    small = fc.face_from_photo(astronaut, 64, cache=False)
    big = torch.nn.functional.interpolate(fc.load_image(astronaut)[None], size=(4000, 4000), mode="bilinear",
                                          align_corners=False)[0]
    huge = fc.face_from_photo(big, 64, cache=False)
    scale = 4000 / 512
    expected = (small.photo_landmarks + 0.5) * scale - 0.5
    iod = fc.pose_measures(huge.photo_landmarks)["iod"]
    assert (huge.photo_landmarks - expected).norm(dim=-1).mean() < 0.05 * iod
    # antialiased downscaling: the crop of the 4000-px photo matches the crop of the 512-px one
    assert (huge.crop - small.crop).abs().mean() < 0.03


def test_no_face_missing_and_unreadable_files(tmp_path):
    grey = tmp_path / "flat_grey.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(grey)
    with pytest.raises(NoFaceError, match="flat_grey.png"):
        fc.face_from_photo(grey, 64, cache=False)
    with pytest.raises(FileNotFoundError, match="nowhere.jpg"):
        fc.face_from_photo(tmp_path / "nowhere.jpg", 64)
    (tmp_path / "notes.jpg").write_text("this is not an image")
    with pytest.raises(UnreadableImageError, match="notes.jpg"):
        fc.face_from_photo(tmp_path / "notes.jpg", 64)
    with pytest.raises(UnreadableImageError, match="folder"):
        fc.load_image(tmp_path)
    with pytest.raises(InputError, match="size"):
        fc.face_from_photo(grey, 0)


def test_several_faces_largest_or_index(orl_photo):
    a = Image.open(orl_photo).convert("L")
    b = Image.open(resources.orl_dir() / "s2" / "1.pgm").convert("L").resize((46, 56))
    canvas = Image.new("L", (300, 160), 100)
    canvas.paste(a, (20, 20))
    canvas.paste(b, (200, 60))
    image = fc.load_image(canvas)
    boxes, _ = fc.detect_faces(image)
    assert len(boxes) == 2
    big = fc.face_from_photo(image, 64, cache=False)
    second = fc.face_from_photo(image, 64, face=1, cache=False)
    assert big.photo_landmarks[:, 0].mean() < 150 < second.photo_landmarks[:, 0].mean()
    with pytest.raises(NoFaceError, match="only 2"):
        fc.face_from_photo(image, 64, face=5, cache=False)


def test_landmark_cache_roundtrip(tmp_cache, orl_photo):
    f1 = fc.face_from_photo(orl_photo, 64, cache=True)
    files = list((tmp_cache / "faces").glob("*.json"))
    assert len(files) == 1 and files[0].stat().st_size < 5000
    # the entry is what a second call uses: tamper with it and see the change
    data = json.loads(files[0].read_text())
    data["landmarks"] = (torch.tensor(data["landmarks"]) + 1.0).tolist()
    files[0].write_text(json.dumps(data))
    f2 = fc.face_from_photo(orl_photo, 112, cache=True)  # another crop size reuses the same landmarks
    assert torch.allclose(f2.photo_landmarks, f1.photo_landmarks + 1.0)
    fc.face_from_photo(orl_photo, 64, face=0, cache=True)  # another face choice is another key
    assert len(list((tmp_cache / "faces").glob("*.json"))) == 2


def test_faces_from_photos_reports_per_file_errors(tmp_cache, tmp_path, orl_photo):
    Image.fromarray(np.full((120, 120), 90, np.uint8)).save(tmp_path / "blank.png")
    faces, errors = fc.faces_from_photos([orl_photo, tmp_path / "missing.png", tmp_path / "blank.png"], 48)
    assert len(faces) == 1 and faces[0].crop.shape == (3, 48, 48)
    assert [e[0] for e in errors] == [str(tmp_path / "missing.png"), str(tmp_path / "blank.png")]
    assert "FileNotFoundError" in errors[0][1] and "NoFaceError" in errors[1][1]


def test_mirroring_landmarks(orl_photo):
    image = fc.load_image(orl_photo)
    lm = fc.detect_landmarks(image)
    W = image.shape[-1]
    m = fc.mirror_landmarks(lm, W)
    assert torch.allclose(fc.mirror_landmarks(m, W), lm)  # twice = identity
    # the mirrored left eye (36-41) is the flipped right eye (42-47)
    assert torch.allclose(m[fc.LEFT_EYE].mean(0)[0], W - 1 - lm[fc.RIGHT_EYE].mean(0)[0])
    assert m[fc.LEFT_EYE].mean(0)[0] < m[fc.RIGHT_EYE].mean(0)[0]
    # detection on the flipped photo agrees with the permuted landmarks (a wrong permutation would be far off)
    flipped, fl = fc.mirror_faces(image[None], lm[None])
    redetected = fc.detect_landmarks(flipped[0])
    assert (redetected - fl[0]).norm(dim=-1).mean() < 2.0
    with pytest.raises(InputError, match="68"):
        fc.mirror_landmarks(torch.zeros(5, 2), W)


def test_pose_measures_and_score():
    ms = fc.load_mean_shape(100)
    m = fc.pose_measures(ms)
    assert abs(float(m["yaw_nose"])) < 0.01 and abs(float(m["yaw_jaw"])) < 0.01 and abs(float(m["roll"])) < 1e-3
    # similarity invariance (except roll)
    R = torch.tensor([[0.0, -1.0], [1.0, 0.0]]) * 2.5
    m2 = fc.pose_measures(ms @ R.T + 7)
    for k in ("yaw_nose", "yaw_jaw", "pitch", "mouth_open", "smile"):
        assert abs(float(m[k] - m2[k])) < 1e-4, k
    turned = ms.clone()
    turned[27:36, 0] += 8  # nose moved sideways: a head turn
    opened = ms.clone()
    opened[[65, 66, 67], 1] += 8  # lower inner lip moved down: an open mouth
    score = fc.frontal_neutral_score(torch.stack([ms, turned, opened]), reference={"pitch": float(m["pitch"])})
    assert score[0] < 0.05 and score[1] > score[0] + 0.3 and score[2] > score[0] + 0.3


@pytest.mark.slow
def test_mean_shape_and_registration():
    from normface_lib import data

    table = data.load_orl_table("train", 112, inputs="paired")  # one target per person: the 32 targets
    tl, tex, ms = table.target_landmarks, table.target_textures, table.mean_shape
    assert torch.allclose(fc.mean_shape(tl[:32], symmetric=True, size=112), ms, atol=1e-4)
    assert torch.allclose(fc.mirror_landmarks(ms, 112), ms, atol=1e-4)  # symmetric
    # the committed file is this mean shape up to the change of 4 targets since it was made (tests/data/test_data.py)
    assert (fc.load_mean_shape(112) - ms).norm(dim=-1).max() < 0.25
    # backward map of the registration: mean-shape pixel i samples the crop at landmarks[i]
    back = warp.warp_points(ms, tl, ms, size=(112, 112))
    assert (back - tl).norm(dim=-1).mean() < 0.1
    # landmarks detected again on the registered textures sit near the mean shape: much less spread than before
    redetected = torch.stack([fc.detect_landmarks(t) for t in tex[:16]])
    spread = lambda x: float(x.std(0).norm(dim=-1).mean())  # noqa: E731
    assert spread(redetected) < 0.6 * spread(tl[:16])
    assert (redetected - ms).norm(dim=-1).mean() < 1.5


def test_register_textures_bad_inputs():
    crops = torch.rand(2, 3, 32, 32)
    lm = torch.rand(2, 68, 2) * 31
    ms = lm[0]
    assert register_textures(crops, lm, ms).shape == (2, 3, 32, 32)
    with pytest.raises(InputError, match="68"):
        register_textures(crops, lm[:, :5], ms)
    with pytest.raises(InputError, match="2 images|landmark sets"):
        register_textures(crops, lm[:1], ms)
    with pytest.raises(InputError, match=r"\[0,1\]"):
        register_textures(crops * 255, lm, ms)
    with pytest.raises(InputError, match="square"):
        register_textures(torch.rand(2, 3, 32, 30), lm, ms)
    with pytest.raises(InputError, match="mean_shape"):
        register_textures(crops, lm, torch.zeros(68, 3))
    with pytest.raises(InputError, match="non-empty"):
        fc.mean_shape(torch.zeros(0, 68, 2))
