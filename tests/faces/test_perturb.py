"""normface_lib.faces.perturb: degraded crops with known effects, seeded."""
import pytest
import torch

from normface_lib.core.errors import InputError
from normface_lib.faces import PERTURBATIONS, perturb


# ---------------------------------------------------------------------------------------------- perturbations
@pytest.fixture
def faces():
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 3, 32, 32, generator=g) * 0.5 + 0.25


@pytest.mark.parametrize("kind", PERTURBATIONS)
def test_perturb_shapes_ranges_and_seeds(faces, kind):
    x = faces.clone()
    y = perturb(x, kind, seed=0)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(x, faces)  # input untouched
    assert torch.equal(y, perturb(x, kind, seed=0))  # same seed -> same output
    assert not torch.allclose(y, x)  # it changes the image (the random colour fixture is not grey)


def test_perturb_zero_strength_is_identity(faces):
    for kind in ("occluder", "light", "blur", "grey", "rotation"):
        assert torch.allclose(perturb(faces, kind, 0.0), faces, atol=1e-5), kind


def test_occluder_covers_the_requested_area():
    x = torch.full((3, 3, 40, 40), 0.8)
    y = perturb(x, "occluder", 0.25, seed=2)
    covered = (y[:, 0] != 0.8).float().mean(dim=(1, 2))
    assert torch.allclose(covered, torch.full((3,), 0.25), atol=0.03)
    values = set(torch.unique(y).tolist())
    assert values <= {0.0, 0.5, 0.800000011920929}


def test_light_gradient_darkens_one_side():
    x = torch.full((2, 3, 8, 16), 0.5)
    y = perturb(x, "light", 0.8, seed=0)
    left, right = y[..., :4].mean(dim=(1, 2, 3)), y[..., -4:].mean(dim=(1, 2, 3))
    assert ((left - right).abs() > 0.3).all()
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.full((2,), 0.5), atol=1e-5)  # symmetric ramp, no clipping


def test_blur_smooths_and_keeps_mean():
    x = torch.zeros(1, 3, 33, 33)
    x[..., 16, 16] = 1.0
    y = perturb(x, "blur", 2.0 / 33)  # sigma 2 px
    assert float(y.max()) < 0.05
    assert float(y.sum()) == pytest.approx(3.0, rel=1e-4)


def test_grey_removes_colour():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = perturb(x, "grey", 1.0)
    assert torch.allclose(y[:, 0], y[:, 1]) and torch.allclose(y[:, 1], y[:, 2])


def test_rotation_by_180_flips():
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = perturb(x, "rotation", 180.0)
    assert torch.allclose(y, x.flip(-1).flip(-2), atol=1e-5)


def test_perturb_rejects_bad_input(faces):
    with pytest.raises(InputError):
        perturb(faces, "sunglasses")
    with pytest.raises(InputError):
        perturb(faces, "light", 2.0)
    with pytest.raises(InputError):
        perturb(faces * 255, "blur")
