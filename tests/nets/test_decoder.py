"""The decoder: the paper's layer shapes, the warp path, regularisation, errors, and that it can fit a small batch."""
import math

import pytest
import torch

from normface_lib.nets import Decoder, stage_channels, upsampling_plan
from normface_lib.core.errors import InputError


def face_like_shape(size: int) -> torch.Tensor:
    """68 points in a face-like layout (an ellipse of jaw/brow/eye/nose/mouth points) in a size-px crop."""
    t = torch.linspace(0, 2 * math.pi, 68 + 1)[:-1]
    r = 0.28 + 0.05 * torch.cos(3 * t)
    pts = torch.stack([0.5 + r * torch.cos(t), 0.52 + 1.15 * r * torch.sin(t)], dim=1)
    return (pts * size).float()


def test_upsampling_plan_matches_paper_and_small_sizes():
    assert upsampling_plan(224) == (14, 4)
    assert upsampling_plan(112) == (14, 3)
    assert upsampling_plan(56) == (14, 2)
    assert upsampling_plan(64) == (16, 2)
    assert stage_channels(4) == [256, 128, 64, 32, 32]
    assert stage_channels(2, width=0.25) == [64, 32, 16]
    with pytest.raises(InputError):
        upsampling_plan(63)


def test_layer_shapes_at_224_match_the_paper():
    torch.manual_seed(0)
    dec = Decoder(1792, face_like_shape(224), out_size=224).eval()
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append((type(m).__name__, tuple(o.shape))))
             for m in list(dec.upsample) + [dec.to_rgb] if not isinstance(m, torch.nn.ReLU)]
    fc_out = []
    hooks.append(dec.texture_fc.register_forward_hook(lambda m, i, o: fc_out.append(tuple(o.shape))))
    with torch.no_grad():
        out = dec(torch.randn(1, 1792))
    for h in hooks:
        h.remove()
    assert fc_out == [(1, 14 * 14 * 256)]
    assert shapes == [("ConvTranspose2d", (1, 128, 28, 28)), ("ConvTranspose2d", (1, 64, 56, 56)),
                      ("ConvTranspose2d", (1, 32, 112, 112)), ("ConvTranspose2d", (1, 32, 224, 224)),
                      ("Conv2d", (1, 3, 224, 224))]
    convs = [m for m in dec.upsample if isinstance(m, torch.nn.ConvTranspose2d)]
    assert all(c.kernel_size == (5, 5) and c.stride == (2, 2) for c in convs)
    assert dec.to_rgb.kernel_size == (1, 1)
    # the parameter count written in the module docstring
    counts = dec.parameter_counts()
    assert counts["total"] == 54_664_939 and counts["texture_fc"] == 51_430_400
    assert out["image"].shape == out["texture"].shape == (1, 3, 224, 224)
    assert out["landmarks"].shape == (1, 68, 2)


@pytest.mark.parametrize("size", [56, 64, 112])
def test_small_sizes_start_at_the_mean_shape_and_stay_in_range(size):
    torch.manual_seed(1)
    ms = face_like_shape(size)
    dec = Decoder(128, ms, out_size=size, width=0.25).eval()
    with torch.no_grad():
        out = dec(torch.randn(3, 128))
    assert out["image"].shape == (3, 3, size, size)
    assert torch.equal(out["landmarks"], ms.expand(3, -1, -1))  # zero-initialised offsets
    assert 0 <= float(out["image"].min()) and float(out["image"].max()) <= 1
    # landmarks at the mean shape make the warp (nearly) the identity: image ≈ texture
    assert float((out["image"] - out["texture"]).abs().max()) < 2e-3


def test_gradients_from_the_image_reach_both_heads():
    torch.manual_seed(2)
    dec = Decoder(128, face_like_shape(64), out_size=64, width=0.25)
    with torch.no_grad():  # move the landmarks off the mean shape so the warp is not the identity
        dec.landmark_head[-1].bias.normal_(0, 0.01)
    out = dec(torch.randn(4, 128))
    out["image"].mean().backward()
    assert float(dec.landmark_head[-1].bias.grad.abs().sum()) > 0
    assert float(dec.to_rgb.weight.grad.abs().sum()) > 0


def test_warp_false_ablation_paints_the_image_directly():
    dec = Decoder(128, face_like_shape(64), out_size=64, width=0.25, warp=False).eval()
    out = dec(torch.randn(2, 128))
    assert out["texture"] is None and out["image"].shape == (2, 3, 64, 64)


def test_noise_and_dropout_only_while_training_and_feature_stats():
    torch.manual_seed(3)
    dec = Decoder(16, face_like_shape(64), out_size=64, width=0.125, input_dropout=0.2, input_noise=0.5)
    feats = torch.randn(20, 16) * 5 + 3
    dec.set_feature_stats(feats)
    assert torch.allclose(dec.feature_mean, feats.mean(0), atol=1e-5)
    assert torch.allclose(dec.feature_std, feats.std(0, unbiased=False), atol=1e-5)
    with torch.no_grad():
        dec.landmark_head[-1].bias.normal_(0, 0.01)
        dec.eval()
        a, b = dec(feats[:2]), dec(feats[:2])
        assert torch.equal(a["image"], b["image"])
        dec.train()
        c, d = dec(feats[:2]), dec(feats[:2])
        assert not torch.equal(c["texture"], d["texture"])


def test_config_round_trip_rebuilds_the_same_architecture():
    dec = Decoder(128, face_like_shape(64), out_size=64, width=0.25, input_noise=0.1)
    again = Decoder.from_config(dec.get_config())
    assert again.get_config() == dec.get_config()
    again.load_state_dict(dec.state_dict())  # same parameter names and shapes


def test_bad_inputs_raise_clear_errors():
    ms = face_like_shape(64)
    dec = Decoder(128, ms, out_size=64, width=0.25)
    with pytest.raises(InputError, match=r"\[B,128\]"):
        dec(torch.randn(2, 127))
    with pytest.raises(InputError):
        dec(torch.randn(128))
    with pytest.raises(InputError, match="mean_shape"):
        Decoder(128, torch.randn(68, 3), out_size=64)
    with pytest.raises(InputError, match="pixels"):
        Decoder(128, ms / 64 * 1000, out_size=64)
    with pytest.raises(InputError, match="n_landmarks"):
        Decoder(128, ms, out_size=64, n_landmarks=5)
    with pytest.raises(InputError):
        Decoder(128, ms, out_size=64, input_dropout=1.5)


@pytest.mark.slow
def test_a_small_batch_overfits():
    """8 feature vectors → 8 smooth target textures and landmark sets: 60 AdamW steps cut both losses ≥ 5×
    (measured: texture L1 0.214 → 0.017, landmark MSE 9.3e-4 → 3.4e-7)."""
    from normface_lib.nets import landmark_loss, texture_loss
    torch.manual_seed(4)
    size, n = 32, 8
    ms = face_like_shape(size)
    feats = torch.randn(n, 64)
    tex = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4), size=(size, size), mode="bicubic",
                                          align_corners=False).clamp(0, 1)
    lms = ms + 1.0 * torch.randn(n, 68, 2)
    dec = Decoder(64, ms, out_size=size, width=0.125)
    dec.set_feature_stats(feats)
    opt = torch.optim.AdamW(dec.parameters(), lr=3e-3)

    def losses():
        out = dec(feats)
        return landmark_loss(out["landmarks"], lms, size), texture_loss(out["texture"], tex)

    with torch.no_grad():
        lm0, tx0 = (float(v) for v in losses())
    for _ in range(60):
        lm, tx = losses()
        opt.zero_grad()
        (lm * 100 + tx).backward()
        opt.step()
    with torch.no_grad():
        lm1, tx1 = (float(v) for v in losses())
    assert tx1 < tx0 / 5, (tx0, tx1)
    assert lm1 < lm0 / 5, (lm0, lm1)
