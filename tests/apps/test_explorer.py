"""The explorer (notebook 05): frames for every slider value, perturbation shapes, the kernel-free widget.

The model is a real (untrained, seeded) 64-px decoder on the real frozen FaceNet encoder: the tests check the
explorer's plumbing, not the decoder's quality. Faces: the two public-domain portraits.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from normface_lib.apps.explorer import Explorer, render_image
from normface_lib.core.errors import InputError


@pytest.fixture(scope="module")
def model():
    from normface_lib.nets import Decoder
    from normface_lib.encoders import load_encoder
    from normface_lib.pipeline import NormFace
    from normface_lib.faces import load_mean_shape

    torch.manual_seed(0)
    encoder = load_encoder("facenet-casia")
    decoder = Decoder(encoder.feature_dim, load_mean_shape(64), out_size=64, width=0.125)
    return NormFace(decoder, encoder)


@pytest.fixture(scope="module")
def faces():
    from normface_lib.data import load_portraits

    fs = load_portraits(64)
    assert len(fs) == 2, fs.errors
    crops = {"astronaut": fs.images[0], "hopper": fs.images[1]}
    crops["hopper dimmed"] = fs.images[1] * 0.6
    return crops


@pytest.fixture(scope="module")
def explorer(model, faces):
    return Explorer(model, faces, alphas=(0.0, 0.25, 0.5, 0.75, 1.0),
                    strengths={"occluder": (0.0, 0.1, 0.2), "light": (0.0, 0.5, 1.0)}, display_size=96)


JPEG = b"\xff\xd8\xff"


def _png_size(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def test_update_returns_an_image_for_every_slider_value(explorer):
    frames = explorer.interpolation_frames("astronaut", "hopper")
    assert len(frames) == len(explorer.alphas) == 5
    for k, png in enumerate(frames):
        assert png[:3] == JPEG and _png_size(png) == (96, 96)
        assert explorer.update("astronaut", "hopper", k) == png  # the update function is what the stack shows
    assert len(set(frames)) > 1  # the blend changes along the slider
    with pytest.raises(InputError, match="alpha_index"):
        explorer.update("astronaut", "hopper", 5)


def test_interpolation_endpoints_are_the_two_faces(explorer, model):
    a, b = explorer.crops[0:1], explorer.crops[1:2]
    with torch.no_grad():
        want_a = model.decoder(model.encoder.features(a))
        want_b = model.decoder(model.encoder.features(b))
    img0, lm0 = explorer.interpolate("astronaut", "hopper", 0.0)
    img1, lm1 = explorer.interpolate(0, 1, 1.0)
    assert img0.shape == (3, 64, 64) and lm0.shape == (68, 2) and img0.dtype == torch.float32
    assert torch.allclose(img0, want_a["image"][0], atol=1e-5) and torch.allclose(lm0, want_a["landmarks"][0], atol=1e-4)
    assert torch.allclose(img1, want_b["image"][0], atol=1e-5)
    half, _ = explorer.interpolate("astronaut", "hopper", 0.5)
    assert 0 <= float(half.min()) and float(half.max()) <= 1
    # symmetric: (A, B, alpha) == (B, A, 1 - alpha)
    back, _ = explorer.interpolate("hopper", "astronaut", 0.75)
    fwd, _ = explorer.interpolate("astronaut", "hopper", 0.25)
    assert torch.allclose(back, fwd, atol=1e-5)
    with pytest.raises(InputError, match=r"\[0,1\]"):
        explorer.interpolate("astronaut", "hopper", 1.5)
    with pytest.raises(InputError, match="unknown face"):
        explorer.interpolate("astronaut", "nobody", 0.5)


def test_perturbed_shapes_and_determinism(explorer):
    for kind in ("occluder", "light"):
        x, y = explorer.perturbed("hopper", kind, 0.2)
        assert x.shape == (3, 64, 64) and y.shape == (3, 64, 64)
        assert 0 <= float(x.min()) and float(x.max()) <= 1 and 0 <= float(y.min()) and float(y.max()) <= 1
        x2, y2 = explorer.perturbed("hopper", kind, 0.2)
        assert torch.equal(x, x2) and torch.equal(y, y2)
    clean, _ = explorer.perturbed("hopper", "occluder", 0.0)
    assert torch.equal(clean, explorer.crops[1])
    rows = explorer.stability("hopper", "occluder")
    assert [r["strength"] for r in rows] == [0.0, 0.1, 0.2]
    assert rows[0]["input_change"] == 0 and rows[0]["output_change"] == pytest.approx(0, abs=1e-6)
    assert rows[2]["input_change"] > rows[1]["input_change"] > 0
    frames = explorer.perturbation_frames("hopper", "light")
    assert len(frames) == 3 and all(_png_size(png) == (96 * 2 + 3, 96) for png, _ in frames)


def test_widget_is_kernel_free_and_complete(explorer):
    import ipywidgets as W

    box = explorer.widget(["astronaut", "hopper"])
    links = box.normface_links
    from ipywidgets.widgets.widget_link import Link

    assert links and all(isinstance(l, Link) for l in links)  # jslink: works in static HTML, no Python callbacks

    def walk(w):
        yield w
        for c in getattr(w, "children", ()):
            yield from walk(c)

    widgets = list(walk(box))
    images = [w for w in widgets if isinstance(w, W.Image)]
    assert images and all(w.value[:3] == JPEG and w.format == "jpeg" for w in images)
    stacks = [w for w in widgets if isinstance(w, W.Stack)]
    # 2 faces: 4 (A,B) alpha stacks of 5 frames; robustness: 2 faces x 2 kinds stacks of 3 strengths
    assert sum(len(s.children) == 5 for s in stacks) == 4
    assert sum(len(s.children) == 3 for s in stacks) == 4
    slider = next(w for w in widgets if isinstance(w, W.SelectionSlider))
    assert len(slider.options) == 5  # one step per alpha
    targets = [l.target[0] for l in links if l.source[0] is slider]
    assert len(targets) == 4 and all(isinstance(t, W.Stack) and len(t.children) == 5 for t in targets)  # (A, B) pairs
    assert not any(isinstance(w, W.Play) for w in widgets)  # see Explorer.widget: Play breaks the static page


def test_render_image_and_bad_inputs(model, faces):
    png = render_image(torch.zeros(3, 32, 32), torch.tensor([[15.5, 15.5]]), size=64, dot=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    arr = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert arr.shape == (64, 64, 3) and tuple(arr[32, 32]) == (0, 229, 255) and tuple(arr[5, 5]) == (0, 0, 0)
    with pytest.raises(InputError, match=r"\[0,1\]"):
        render_image(torch.full((3, 8, 8), 255.0))
    with pytest.raises(InputError, match="format"):
        render_image(torch.zeros(3, 8, 8), format="gif")
    jpg = render_image(torch.full((3, 16, 16), 0.5), size=32, format="jpeg")
    assert jpg[:3] == JPEG and abs(int(np.asarray(Image.open(io.BytesIO(jpg)))[16, 16, 0]) - 128) <= 2
    with pytest.raises(InputError, match="at least two"):
        Explorer(model, {"one": faces["hopper"]})
    with pytest.raises(InputError, match="same shape"):
        Explorer(model, {"a": faces["hopper"], "b": torch.rand(3, 32, 32)})
    with pytest.raises(InputError, match="increasing"):
        Explorer(model, faces, alphas=(0.0, 1.0, 0.5))
    with pytest.raises(InputError, match="unknown perturbation"):
        Explorer(model, faces, strengths={"sunburn": (0.1,)})
    with pytest.raises(InputError, match="same number"):
        Explorer(model, faces, strengths={"occluder": (0.1,), "light": (0.1, 0.2)})
