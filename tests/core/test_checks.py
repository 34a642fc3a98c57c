"""normface_lib.core.checks: every kind of input gets one check, with a message that names the input and the fix."""
import numpy as np
import pytest
import torch

from normface_lib.core import checks
from normface_lib.core.errors import InputError


def test_images_shape_dtype_range_and_nan():
    ok = torch.rand(2, 3, 8, 8)
    assert checks.check_images(ok, square=True) is ok
    with pytest.raises(InputError, match=r"\[B,3,H,W\]"):
        checks.check_images(ok[0])
    with pytest.raises(InputError, match="floating-point"):
        checks.check_images((ok * 255).to(torch.uint8))
    with pytest.raises(InputError, match="square"):
        checks.check_images(torch.rand(1, 3, 8, 9), square=True)
    with pytest.raises(InputError, match="divide by 255"):
        checks.check_images(ok * 255)
    bad = ok.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        checks.check_images(bad)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="lie in"):
        checks.check_images(bad)
    with pytest.raises(InputError, match="torch.Tensor"):
        checks.check_images(ok.numpy())


def test_value_checks_can_be_skipped_in_hot_loops_and_come_back():
    bad = torch.full((1, 3, 4, 4), float("nan"))
    with checks.skip_value_checks():
        assert not checks.value_checks_enabled()
        assert checks.check_images(bad) is bad  # shape and dtype still checked, values not
        with pytest.raises(InputError):
            checks.check_images(bad[0])
    assert checks.value_checks_enabled()
    with pytest.raises(InputError, match="NaN"):
        checks.check_images(bad)


def test_one_image_and_landmarks():
    img = torch.rand(3, 5, 7)
    assert checks.check_image(img) is img
    with pytest.raises(InputError, match=r"\[3,H,W\]"):
        checks.check_image(img[None])
    lm = torch.rand(2, 68, 2)
    assert checks.check_landmarks(lm, batch=2, batched=True) is lm
    with pytest.raises(InputError, match="3 landmark sets for 2 images"):
        checks.check_landmarks(torch.rand(3, 68, 2), batch=2)
    with pytest.raises(InputError, match=r"\[68,2\]"):
        checks.check_landmarks(lm, batched=False)
    with pytest.raises(InputError, match=r"\[B,68,2\]"):
        checks.check_landmarks(lm[0], batched=True)
    with pytest.raises(InputError, match="floating point"):
        checks.check_landmarks(lm.long())
    lm[0, 3, 1] = float("nan")
    checks.check_landmarks(lm)  # finiteness only on request
    with pytest.raises(InputError, match="NaN or inf"):
        checks.check_landmarks(lm, finite=True)


def test_as_landmarks_takes_arrays_and_converts():
    arr = np.arange(136, dtype=np.float64).reshape(68, 2)
    out = checks.as_landmarks(arr, batched=False)
    assert out.dtype == torch.float32 and out.shape == (68, 2) and out[67, 1] == 135
    assert checks.as_landmarks(arr, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(InputError, match="NaN or inf"):
        checks.as_landmarks(np.full((68, 2), np.inf))


def test_rows_labels_size():
    assert checks.check_rows(torch.zeros(3, 4), "x", rows=3).shape == (3, 4)
    with pytest.raises(InputError, match="2 rows, expected 3"):
        checks.check_rows(torch.zeros(2, 4), "x", rows=3)
    assert checks.check_labels([0, 1, 1], "p", 3).dtype == torch.long
    with pytest.raises(InputError, match="integer"):
        checks.check_labels(torch.zeros(3), "p", 3)
    assert checks.check_size(np.int64(64)) == 64
    for bad in (True, 7, 64.0, "64"):
        with pytest.raises(InputError, match="crop side"):
            checks.check_size(bad)
