"""Tests of normface_lib.warp: identity, scipy agreement, gradients, fast-vs-exact accuracy, degenerate and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from normface_lib import warp
from normface_lib.warp import lattice
from normface_lib.core import resources
from normface_lib.core.errors import InputError

torch.set_num_threads(min(2, torch.get_num_threads()))


def _random_points(b, n, size, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, n, 2, generator=g, dtype=dtype) * 0.8 + 0.1) * (size - 1)


@pytest.fixture(scope="module")
def orl_landmarks():
    """dlib 68 landmarks of 6 real ORL photos, similarity-scaled into a 64 px frame, plus their mean shape."""
    dlib = pytest.importorskip("dlib")
    from PIL import Image
    pred = dlib.shape_predictor(str(resources.dlib_model_path("shape_predictor_68_face_landmarks.dat")))
    lms = []
    for i in (1, 2, 3, 4, 9, 10):
        arr = np.asarray(Image.open(resources.orl_dir() / f"s{i}" / "1.pgm").convert("L"))
        h, w = arr.shape
        s = pred(arr, dlib.rectangle(0, 0, w - 1, h - 1))
        lm = torch.tensor([[s.part(k).x, s.part(k).y] for k in range(68)], dtype=torch.float32)
        # eyes/mouth-centred crop scaled to 64 px (integer dlib points keep their coincidences)
        centre = torch.stack([lm[36:48].mean(0), lm[48:68].mean(0)]).mean(0)
        lms.append((lm - centre) * (64 / 92) + 31.5)
    lms = torch.stack(lms)
    return lms, lms.mean(0)


def test_pixel_normalized_roundtrip_and_convention():
    p = torch.tensor([[0.0, 0.0], [9.0, 4.0], [-0.5, -0.5]])
    n = warp.pixels_to_normalized(p, (5, 10))  # H=5, W=10
    # centre of the top-left pixel, bottom-right pixel, outer corner
    assert torch.allclose(n[0], torch.tensor([-0.9, -0.8]))
    assert torch.allclose(n[1], torch.tensor([0.9, 0.8]))
    assert torch.allclose(n[2], torch.tensor([-1.0, -1.0]))
    assert torch.allclose(warp.normalized_to_pixels(n, (5, 10)), p, atol=1e-6)


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_identical_points_give_identity(mode):
    # a real photo in float32 (float32 positions are good to a few 1e-6 px)
    from PIL import Image
    arr = np.asarray(Image.open(resources.orl_dir() / "s5" / "1.pgm").convert("L"), dtype=np.float32) / 255
    img = torch.from_numpy(arr)[None, None].expand(2, 3, -1, -1).contiguous()
    pts = _random_points(2, 12, 92, 1, torch.float32)
    out = warp.warp_image(img, pts, pts, mode=mode)
    assert out.shape == img.shape
    assert (out - img).abs().max() < 1e-5
    # random texture in float64: identity to rounding
    g = torch.Generator().manual_seed(0)
    img64 = torch.rand(2, 3, 40, 48, generator=g, dtype=torch.float64)
    pts64 = _random_points(2, 12, 40, 1)
    assert (warp.warp_image(img64, pts64, pts64, mode=mode) - img64).abs().max() < 1e-9


def test_affine_points_reproduce_affine_map():
    src = _random_points(1, 10, 32, 2)
    A = torch.tensor([[1.1, 0.2], [-0.1, 0.9]], dtype=torch.float64)
    dst = src @ A.T + torch.tensor([1.5, -2.0], dtype=torch.float64)
    flow = warp.dense_flow(src, dst, 32, mode="exact")
    ys, xs = torch.meshgrid(torch.arange(32.0, dtype=torch.float64), torch.arange(32.0, dtype=torch.float64),
                            indexing="ij")
    q = torch.stack([xs, ys], -1)
    expect = (q - torch.tensor([1.5, -2.0], dtype=torch.float64)) @ torch.linalg.inv(A).T
    assert (flow[0] - expect).abs().max() < 1e-8


@pytest.mark.parametrize("reg", [0.0, 1e-3])
def test_exact_mode_matches_scipy(reg):
    from scipy.interpolate import RBFInterpolator
    H, W = 30, 44
    S = max(H, W)
    src = _random_points(3, 15, 30, 3)
    dst = src + torch.randn(3, 15, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2
    flow = warp.dense_flow(src, dst, (H, W), mode="exact", reg=reg)
    ys, xs = np.meshgrid(np.arange(H, dtype=float), np.arange(W, dtype=float), indexing="ij")
    q = np.stack([xs.ravel(), ys.ravel()], 1)
    for b in range(3):
        # reg is in the unit frame (pixels / max(H, W)); thin-plate smoothing scales with the square of the frame
        ref = RBFInterpolator(dst[b].numpy(), src[b].numpy(), kernel="thin_plate_spline", smoothing=reg * S ** 2)(q)
        assert np.abs(flow[b].reshape(-1, 2).numpy() - ref).max() <= 1e-4
    # and it reaches the landmarks exactly when reg = 0
    if reg == 0:
        idx = dst.round().long()
        inside = (idx[..., 0] >= 0) & (idx[..., 0] < W) & (idx[..., 1] >= 0) & (idx[..., 1] < H)
        assert inside.any()


def test_shared_and_batched_centres_agree():
    src = _random_points(1, 9, 24, 8)[0]
    dst = _random_points(3, 9, 24, 9)
    a = warp.dense_flow(src, dst, 24, mode="exact")  # src shared
    b = warp.dense_flow(src.expand(3, -1, -1), dst, 24, mode="exact")
    assert torch.allclose(a, b, atol=1e-9)
    c = warp.dense_flow(dst, src, 24, mode="fast")  # centres shared by the batch (one factorisation)
    d = warp.dense_flow(dst, src.expand(3, -1, -1), 24, mode="fast")
    assert torch.allclose(c, d, atol=1e-9)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_gradcheck_image_and_points(mode):
    H, W = 5, 6
    g = torch.Generator().manual_seed(10)
    img = torch.rand(2, 1, H, W, generator=g, dtype=torch.float64, requires_grad=True)
    src = (_random_points(2, 5, 5, 11) + 0.37).requires_grad_()
    dst = (_random_points(2, 5, 5, 12) + 0.21).requires_grad_()

    def f(im, s, d):
        return warp.warp_image(im, s, d, mode=mode, reg=1e-3, grid=2.0, padding_mode="zeros")

    assert torch.autograd.gradcheck(f, (img, src, dst), eps=1e-6, atol=1e-5)


def test_gradcheck_fit_and_lattice():
    """The closed-form backwards (spline solve, lattice kernel) against finite differences, with batched and shared
    centres, and with two coincident centres."""
    c = _random_points(2, 9, 2, 30)  # in [0.1, 0.9]
    v = torch.randn(2, 9, 2, generator=torch.Generator().manual_seed(31), dtype=torch.float64)
    c[0, 4] = c[0, 7]
    c.requires_grad_()
    v.requires_grad_()
    q = _random_points(1, 6, 2, 32)[0]

    def fit_eval(cc, vv):
        return warp.eval_spline(warp.fit_spline(cc, vv, reg=1e-2), q)

    assert torch.autograd.gradcheck(fit_eval, (c, v), eps=1e-7, atol=1e-5)
    shared = c[1:].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(fit_eval, (shared, v), eps=1e-7, atol=1e-5)

    def flow(cc, vv):  # the lattice kernel (fast mode evaluates on a lattice, then upsamples)
        return warp.dense_flow(vv * 7, cc * 7, 7, mode="fast", reg=1e-2, grid=2.0)

    assert torch.autograd.gradcheck(flow, (c, v), eps=1e-7, atol=1e-5)


def test_row_chunking_changes_nothing(monkeypatch):
    """The lattice is evaluated in row chunks (uneven last chunk included): results and gradients must not depend
    on the chunk size."""
    src = _random_points(2, 12, 30, 40)
    dst = _random_points(2, 12, 30, 41)

    def run():
        s, d = src.clone().requires_grad_(), dst.clone().requires_grad_()
        flow = warp.dense_flow(s, d, (29, 31), mode="exact")
        flow.square().sum().backward()
        return flow.detach(), s.grad, d.grad

    whole = run()
    monkeypatch.setattr(lattice, "_CHUNK_ELEMS", 2 * 12 * 31 * 4)  # 4 rows a chunk: 8 chunks, the last one of 1 row
    assert len(lattice._row_chunks(2, 12, 29, 31)[0]) > 2
    chunked = run()
    for a, b in zip(whole, chunked):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


def test_gradient_reaches_image_and_points_float32():
    img = torch.rand(2, 3, 32, 32, requires_grad=True)
    src = _random_points(1, 8, 32, 13, torch.float32)[0]
    dst = (src + torch.randn(2, 8, 2, generator=torch.Generator().manual_seed(14))).requires_grad_()
    warp.warp_image(img, src, dst).square().sum().backward()
    assert img.grad.abs().sum() > 0 and dst.grad.abs().sum() > 0
    assert torch.isfinite(dst.grad).all()


def test_fast_mode_accuracy_on_real_landmarks(orl_landmarks):
    lms, mean = orl_landmarks
    exact = warp.dense_flow(mean.double(), lms.double(), 64, mode="exact")
    fast = warp.dense_flow(mean, lms, 64, mode="fast")
    err = (fast.double() - exact).norm(dim=-1).flatten()
    assert float(err.mean()) <= 0.02
    assert float(torch.quantile(err, 0.99)) <= 0.1
    # fast mode really is approximate (the test can fail): a coarser lattice is worse
    coarse = warp.dense_flow(mean, lms, 64, mode="fast", grid=16.0)
    assert float((coarse.double() - exact).norm(dim=-1).mean()) > float(err.mean())


def test_coincident_points_stay_finite(orl_landmarks):
    lms, mean = orl_landmarks
    dup = lms.clone()
    dup[:, 66] = dup[:, 62]  # force a closed mouth: inner-lip points coincide, the mean shape's do not
    img = torch.rand(len(dup), 3, 64, 64)
    d = dup.clone().requires_grad_()
    for mode in ("fast", "exact"):
        out = warp.warp_image(img, mean, d, mode=mode)
        assert torch.isfinite(out).all()
        out.sum().backward()
        assert torch.isfinite(d.grad).all()
        d.grad = None
    # with the default ridge the fit there is the mean of the two targets
    flow = warp.dense_flow(mean.double(), dup.double(), 64, mode="exact")
    x, y = dup[0, 62].round().long().tolist()
    if abs(dup[0, 62, 0] - x) < 1e-6 and abs(dup[0, 62, 1] - y) < 1e-6:
        target = (mean[62] + mean[66]).double() / 2
        assert (flow[0, y, x] - target).norm() < 0.1
    # exact interpolation through coincident points is impossible: a clear error, not garbage
    with pytest.raises(InputError, match="coincide"):
        warp.dense_flow(mean, dup, 64, reg=0.0)


def test_out_size_and_backward_mapping_direction():
    # a bright dot at src moves to dst
    img = torch.zeros(1, 1, 32, 32)
    img[0, 0, 10, 8] = 1.0  # (x=8, y=10)
    src = torch.tensor([[8.0, 10.0], [0.0, 0.0], [31.0, 0.0], [0.0, 31.0], [31.0, 31.0]])
    dst = src.clone()
    dst[0] = torch.tensor([20.0, 14.0])
    out = warp.warp_image(img, src, dst, mode="exact", reg=0.0)
    assert out[0, 0, 14, 20] > 0.99
    out2 = warp.warp_image(img, src, dst * 0.5, out_size=16, mode="exact", reg=0.0)
    assert out2.shape == (1, 1, 16, 16)


def test_bad_inputs_raise_input_error():
    img = torch.rand(2, 3, 16, 16)
    pts = _random_points(2, 5, 16, 15, torch.float32)
    with pytest.raises(InputError, match="B, C, H, W"):
        warp.warp_image(img[0], pts, pts)
    with pytest.raises(InputError, match="floating point"):
        warp.warp_image((img * 255).to(torch.uint8), pts, pts)
    with pytest.raises(InputError, match="same number of points"):
        warp.warp_image(img, pts, pts[:, :4])
    with pytest.raises(InputError, match="floating point"):
        warp.warp_image(img, pts.long(), pts)
    with pytest.raises(InputError, match=r"\(x, y\)"):
        warp.warp_image(img, pts[..., :1], pts)
    with pytest.raises(InputError, match="batch size"):
        warp.warp_image(img, pts.repeat(2, 1, 1), pts.repeat(2, 1, 1))
    with pytest.raises(InputError, match="mode"):
        warp.warp_image(img, pts, pts, mode="cubic")
    with pytest.raises(InputError, match="reg"):
        warp.warp_image(img, pts, pts, reg=-1.0)
    with pytest.raises(InputError, match="grid"):
        warp.warp_image(img, pts, pts, grid=0)
    with pytest.raises(InputError, match="torch.Tensor"):
        warp.warp_image(img, pts.numpy(), pts)
    with pytest.raises(InputError, match="at least 3"):
        warp.warp_image(img, pts[:, :2], pts[:, :2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu():
    img = torch.rand(2, 3, 48, 48)
    src = _random_points(1, 10, 48, 16, torch.float32)[0]
    dst = src + torch.randn(2, 10, 2, generator=torch.Generator().manual_seed(17))
    for mode in ("fast", "exact"):
        cpu = warp.warp_image(img, src, dst, mode=mode)
        d = dst.cuda().requires_grad_()
        gpu = warp.warp_image(img.cuda(), src.cuda(), d, mode=mode)
        assert (gpu.cpu() - cpu).abs().max() < 1e-4
        gpu.sum().backward()
        assert torch.isfinite(d.grad).all()
