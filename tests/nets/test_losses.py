"""Losses: values on known inputs, scale conventions, the combined loss, and that the identity loss pulls the decoder's
output toward the input identity (real dlib ResNet encoder, real ORL face)."""
import pytest
import torch

from normface_lib.core.errors import InputError
from normface_lib.nets import (NormFaceLoss, embedding_distance, identity_loss, landmark_loss, texture_loss)


@pytest.fixture(scope="module")
def encoder():
    from normface_lib.encoders import load_encoder
    return load_encoder("dlib-resnet")


@pytest.fixture(scope="module")
def orl_faces():
    from normface_lib.data import load_orl_table
    return load_orl_table("unseen_people", size=64)


def test_landmark_loss_is_in_units_of_the_crop_side():
    target = torch.zeros(2, 68, 2)
    # a 1-pixel error in x everywhere: (1/S)^2 averaged over x and y = 0.5 / S^2
    assert float(landmark_loss(target + torch.tensor([1.0, 0.0]), target, 64)) == pytest.approx(0.5 / 64 ** 2)
    # the same relative error at 224 px gives the same value
    a = landmark_loss(target + torch.tensor([64 / 32, 0.0]), target, 64)
    b = landmark_loss(target + torch.tensor([224 / 32, 0.0]), target, 224)
    assert float(a) == pytest.approx(float(b))
    with pytest.raises(InputError):
        landmark_loss(torch.zeros(2, 68, 2), torch.zeros(2, 5, 2), 64)


def test_texture_loss_is_mean_absolute_error():
    a = torch.zeros(1, 3, 4, 4)
    b = a.clone()
    b[0, 0] = 0.5  # one of three channels off by 0.5
    assert float(texture_loss(a, b)) == pytest.approx(0.5 / 3)
    with pytest.raises(InputError):
        texture_loss(a, torch.zeros(1, 3, 8, 8))


def test_embedding_distances_on_unit_vectors():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(5, 128, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(5, 128, generator=g), dim=1)
    sq = embedding_distance(a, b, "sq_l2")
    cos = embedding_distance(a, b, "cosine")
    assert torch.allclose(sq, 2 * cos, atol=1e-5)
    assert torch.allclose(embedding_distance(a, a), torch.zeros(5), atol=1e-6)
    assert torch.allclose(embedding_distance(a, -a), torch.full((5,), 4.0), atol=1e-5)
    with pytest.raises(InputError):
        embedding_distance(a, b, "l1")


def test_identity_loss_of_a_face_with_itself_is_zero_and_of_another_person_is_not(encoder, orl_faces):
    faces = orl_faces.images[[0, 10]]  # two different people
    same = identity_loss(faces, encoder, input_images=faces)
    other = identity_loss(faces, encoder, input_images=faces.flip(0))
    assert float(same) < 1e-6
    assert float(other) > 0.1  # different people are apart (measured 0.26 for this pair)
    emb = encoder.embed(faces)
    assert float(identity_loss(faces, encoder, input_embeddings=emb)) == pytest.approx(float(same), abs=1e-6)
    with pytest.raises(InputError):
        identity_loss(faces, encoder)


def test_normface_loss_combines_weighted_parts(encoder, orl_faces):
    t = orl_faces
    out = {"image": t.images[:2], "texture": t.target_textures[:2].flip(-1), "landmarks": t.landmarks[:2]}
    batch = {"target_landmarks": t.target_landmarks[:2], "target_texture": t.target_textures[:2],
             "embedding": encoder.embed(t.images[[5, 15]])}
    loss = NormFaceLoss(encoder, landmark_weight=10.0, texture_weight=2.0, identity_weight=0.5)
    total, parts = loss(out, batch)
    assert set(parts) == {"landmark", "texture", "identity", "total"}
    assert parts["total"] == pytest.approx(10 * parts["landmark"] + 2 * parts["texture"] + 0.5 * parts["identity"],
                                           rel=1e-5)
    assert float(total) == pytest.approx(parts["total"], rel=1e-6)
    assert all(v > 0 for v in parts.values())
    _, no_id = loss(out, batch, use_identity=False)
    assert "identity" not in no_id
    # warp=False ablation: the pixel loss is taken on the image against the target photo
    _, abl = NormFaceLoss()({"image": t.images[:2], "texture": None, "landmarks": t.landmarks[:2]},
                            {"target_landmarks": t.target_landmarks[:2], "target_image": t.images[:2]})
    assert abl["texture"] == 0.0
    with pytest.raises(InputError, match="encoder"):
        NormFaceLoss(None, identity_weight=1.0)


@pytest.mark.slow
def test_identity_loss_moves_the_output_toward_the_input_identity(encoder, orl_faces):
    """A few AdamW steps on a fresh decoder with only the identity loss shrink the embedding distance between its
    output and the input face (measured: squared distance 0.295 → 0.165 in 12 steps)."""
    from normface_lib.nets import Decoder
    torch.manual_seed(0)
    face = orl_faces.images[:1]
    with torch.no_grad():
        feats, target = encoder.features_and_embed(face)
    dec = Decoder(encoder.feature_dim, orl_faces.mean_shape, out_size=64, width=0.125)
    opt = torch.optim.AdamW(dec.parameters(), lr=3e-3)

    def dist():
        return identity_loss(dec(feats)["image"], encoder, input_embeddings=target)

    with torch.no_grad():
        d0 = float(dist())
    for _ in range(12):
        loss = dist()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        d1 = float(dist())
    assert d1 < 0.75 * d0, (d0, d1)
