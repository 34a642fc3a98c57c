"""Morphing on real ORL target faces: exact endpoints, linear landmarks, seeded random morphs, bad inputs."""
from __future__ import annotations

import pytest
import torch

from normface_lib import data
from normface_lib.nets import morph, render
from normface_lib.core.errors import InputError

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def table():
    return data.load_orl_table("train", 64)


@pytest.fixture(scope="module")
def faces(table):
    P = 6
    return table.target_textures[:P], table.target_landmarks[:P], table.mean_shape


def test_endpoints_are_the_rendered_originals(faces):
    tex, lm, ms = faces
    a, b = slice(0, 3), slice(3, 6)
    img0, lm0 = morph.morph(tex[a], lm[a], tex[b], lm[b], 0.0, ms)
    img1, lm1 = morph.morph(tex[a], lm[a], tex[b], lm[b], 1.0, ms)
    assert torch.equal(img0, render(tex[a], lm[a], ms)) and torch.equal(lm0, lm[a])
    assert torch.equal(img1, render(tex[b], lm[b], ms)) and torch.equal(lm1, lm[b])
    # per-item alpha
    imgs, lms = morph.morph(tex[a], lm[a], tex[b], lm[b], torch.tensor([0.0, 1.0, 0.25]), ms)
    assert torch.equal(imgs[0], img0[0]) and torch.equal(imgs[1], img1[1])
    assert torch.allclose(lms[2], 0.75 * lm[2] + 0.25 * lm[5], atol=1e-5)
    assert imgs.shape == (3, 3, 64, 64) and 0 <= imgs.min() and imgs.max() <= 1


def test_render_reproduces_the_crop(table, faces):
    tex, lm, ms = faces
    rendered = render(tex, lm, ms)
    crops = table.images[table.target_row[:6]]
    inner = (slice(None), slice(None), slice(16, 56), slice(12, 52))  # the face, away from extrapolated borders
    assert (rendered[inner] - crops[inner]).abs().mean() < 0.03


def test_midway_morph_is_between(faces):
    tex, lm, ms = faces
    mid, mid_lm = morph.morph(tex[:1], lm[:1], tex[1:2], lm[1:2], 0.5, ms)
    assert torch.allclose(mid_lm, (lm[:1] + lm[1:2]) / 2, atol=1e-5)
    ra, rb = render(tex[:1], lm[:1], ms), render(tex[1:2], lm[1:2], ms)
    d_a, d_b, d_ab = (mid - ra).abs().mean(), (mid - rb).abs().mean(), (ra - rb).abs().mean()
    assert d_a < d_ab and d_b < d_ab
    same, _ = morph.morph(tex[:1], lm[:1], tex[:1], lm[:1], 0.37, ms)  # a face morphed with itself stays itself
    # Tolerance from the arithmetic, not from one machine: the blend (1-a)x + ax is x to within 2 float32 ulps, but
    # the spline solve and lattice that place every pixel run in float32 on coordinates up to 64 px, whose ulp is
    # 7.6e-6 px; a few dozen rounded operations (and BLAS blocking that differs between CPUs) move a sampling
    # position by up to ~1e-4 px, and bilinear sampling turns that into at most 1e-4 of intensity (images in [0, 1]
    # change by at most 1 per pixel here). A wrong morph differs by far more (d_ab above is ~0.1).
    assert torch.allclose(same, ra, atol=2e-4)


def test_out_size(faces):
    tex, lm, ms = faces
    img, out_lm = morph.morph(tex[:2], lm[:2], tex[2:4], lm[2:4], 0.3, ms, out_size=128)
    assert img.shape == (2, 3, 128, 128)
    blended = 0.7 * lm[:2] + 0.3 * lm[2:4]
    assert torch.allclose(out_lm, (blended + 0.5) * 2 - 0.5, atol=1e-4)
    small, _ = morph.morph(tex[:2], lm[:2], tex[2:4], lm[2:4], 0.3, ms)
    down = torch.nn.functional.avg_pool2d(img, 2)
    assert (down - small)[..., 12:52, 12:52].abs().mean() < 0.03


def test_random_morphs_seeded(table):
    m1 = morph.random_morphs(table, 5, torch.Generator().manual_seed(3))
    m2 = morph.random_morphs(table, 5, 3)
    m3 = morph.random_morphs(table, 5, 4)
    assert torch.equal(m1.images, m2.images) and torch.equal(m1.pairs, m2.pairs)
    assert not torch.equal(m1.pairs, m3.pairs)
    # the faces blended are the table's targets: under the paper's training every frontal, neutral row is its own
    assert len(table.target_row) == len(table) > len(table.people)
    assert bool((m1.pairs[:, 0] != m1.pairs[:, 1]).all()) and int(m1.pairs.max()) < len(table.target_row)
    assert bool(((m1.alpha >= 0) & (m1.alpha < 1)).all())
    assert m1.images.shape == (5, 3, 64, 64) and m1.textures.shape == (5, 3, 64, 64)
    i, j = m1.pairs[0]
    a = m1.alpha[0]
    expect = (1 - a) * table.target_landmarks[i] + a * table.target_landmarks[j]
    assert torch.allclose(m1.landmarks[0], expect, atol=1e-5)
    # from tensors instead of a table
    tex, lm = table.target_textures[:4], table.target_landmarks[:4]
    m4 = morph.random_morphs(tex, 3, 0, landmarks=lm, mean_shape=table.mean_shape)
    assert m4.images.shape == (3, 3, 64, 64) and int(m4.pairs.max()) < 4


def test_morph_bad_inputs(faces):
    tex, lm, ms = faces
    with pytest.raises(InputError, match="alpha"):
        morph.morph(tex[:2], lm[:2], tex[2:4], lm[2:4], torch.tensor([0.1, 0.2, 0.3]), ms)
    with pytest.raises(InputError, match="landmarks_b"):
        morph.morph(tex[:2], lm[:2], tex[2:4], lm[2:3], 0.5, ms)
    with pytest.raises(InputError, match="same shape"):
        morph.morph(tex[:2], lm[:2], tex[2:4, :, :32, :32], lm[2:4], 0.5, ms)
    with pytest.raises(InputError, match="mean_shape"):
        morph.morph(tex[:2], lm[:2], tex[2:4], lm[2:4], 0.5, ms[:10])
    with pytest.raises(InputError, match="68"):
        morph.morph(tex[:2], lm[:2, :5], tex[2:4], lm[2:4], 0.5, ms)
    with pytest.raises(InputError, match="at least 2"):
        morph.random_morphs(tex[:1], 3, 0, landmarks=lm[:1], mean_shape=ms)
    with pytest.raises(InputError, match="landmarks"):
        morph.random_morphs(tex, 3, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_morphs_match_cpu():
    """Online morphs rendered on the training GPU: the same pairs and weights as on the CPU (drawn on the CPU
    generator), images within float32 warp differences (as in tests/warp's CUDA test)."""
    from normface_lib.faces.landmarks import load_mean_shape
    g = torch.Generator().manual_seed(5)
    mean = load_mean_shape(64)
    tex = torch.nn.functional.interpolate(torch.rand(6, 3, 8, 8, generator=g), size=(64, 64), mode="bilinear")
    lm = mean + torch.randn(6, 68, 2, generator=g) * 0.5
    cpu = morph.random_morphs(tex, 7, 11, landmarks=lm, mean_shape=mean)
    gpu = morph.random_morphs(tex.cuda(), 7, 11, landmarks=lm.cuda(), mean_shape=mean.cuda())
    assert gpu.images.is_cuda and torch.equal(gpu.pairs, cpu.pairs) and torch.equal(gpu.alpha, cpu.alpha)
    assert (gpu.images.cpu() - cpu.images).abs().max() < 1e-4
    assert (gpu.landmarks.cpu() - cpu.landmarks).abs().max() < 1e-4
