"""VGG-Face (Parkhi, Vedaldi & Zisserman, BMVC 2015; VGG-16 layout) as a frozen :class:`FaceEncoder`.

No registry package ships VGG-Face weights. This module implements the architecture with the parameter names of
Samuel Albanie's published PyTorch conversion of the MatConvNet model (``vgg_face_dag.pth`` from
``https://www.robots.ox.ac.uk/~albanie/pytorch-models.html``; keys ``conv1_1.weight`` ... ``conv5_3.bias``,
``fc6.*``, ``fc7.*``, ``fc8.*``; input 224 x 224 RGB in 0-255 minus the mean ``(129.186, 104.762, 93.594)``,
std 1). Weights come from, in this order: the ``weights_path`` argument, ``$NORMFACE_VGGFACE_WEIGHTS``,
``<cache>/weights/vgg_face_dag.pth``, or a download (only with ``download=True``) through
:func:`normface_lib.core.resources.download`. The publisher gives no checksum, so for the cached file the sha256 is
recorded in ``vgg_face_dag.pth.sha256`` on first use and verified on every later load; the first download itself is
checked by content (the published parameter names and shapes, finite values) before it is kept.

Layers for :meth:`features`: ``"fc7"`` (default, 4096-D after ReLU, the paper's ablation), ``"fc6"`` (4096-D after
ReLU). :meth:`embed` is the L2-normalised fc7. The crop ``VGGFACE_CROP_BOX`` is the whole canonical crop; it and
``threshold`` are not calibrated here (no weights on this machine), so ``threshold`` is ``nan``.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..core import resources
from ..core.errors import ChecksumError, InputError, MissingWeightsError
from .base import FaceEncoder

VGGFACE_URL = "https://www.robots.ox.ac.uk/~albanie/models/pytorch-mcn/vgg_face_dag.pth"
VGGFACE_FILE = "vgg_face_dag.pth"
VGGFACE_MEAN_RGB = (129.186279296875, 104.76238250732422, 93.59396362304688)
VGGFACE_CROP_BOX = (0.5, 0.5, 1.0)
#: (name, in, out) of the 13 convolutions, grouped by block (a 2x2 max pool follows each block).
_BLOCKS = [[("conv1_1", 3, 64), ("conv1_2", 64, 64)],
           [("conv2_1", 64, 128), ("conv2_2", 128, 128)],
           [("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256)],
           [("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512)],
           [("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)]]
NUM_CLASSES = 2622


class VGGFaceNet(nn.Module):
    """VGG-16 with VGG-Face's 2622-way fc8; parameter names as in ``vgg_face_dag.pth``.
    ``forward(x [B,3,224,224] mean-subtracted 0-255) -> (fc6 [B,4096], fc7 [B,4096])`` (both after ReLU)."""

    def __init__(self):
        super().__init__()
        for block in _BLOCKS:
            for name, cin, cout in block:
                setattr(self, name, nn.Conv2d(cin, cout, 3, padding=1))
        self.fc6 = nn.Linear(512 * 7 * 7, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for block in _BLOCKS:
            for name, _, _ in block:
                x = torch.relu(getattr(self, name)(x))
            x = torch.nn.functional.max_pool2d(x, 2, 2)
        fc6 = torch.relu(self.fc6(x.flatten(1)))
        return fc6, torch.relu(self.fc7(fc6))


def expected_keys() -> dict[str, tuple[int, ...]]:
    """The published checkpoint's parameter names and shapes."""
    return {k: tuple(v.shape) for k, v in VGGFaceNet().state_dict().items()}


def load_state_dict_checked(net: VGGFaceNet, state: dict) -> None:
    """Load ``state`` into ``net``, saying exactly which keys or shapes differ from ``vgg_face_dag.pth``."""
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    missing = sorted(set(want) - set(state))
    wrong = sorted(k for k in set(want) & set(state) if tuple(state[k].shape) != want[k])
    if missing or wrong:
        raise InputError(f"VGG-Face weights do not match vgg_face_dag.pth (Albanie's conversion): missing keys "
                         f"{missing[:5]}{'...' if len(missing) > 5 else ''}, wrong shapes "
                         f"{[(k, tuple(state[k].shape), want[k]) for k in wrong[:3]]}. Use the file from {VGGFACE_URL}.")
    net.load_state_dict(OrderedDict((k, state[k]) for k in want))


def vggface_weights_path(weights_path: str | os.PathLike | None = None, download: bool = False) -> Path:
    """Locate (or, with ``download=True``, fetch) ``vgg_face_dag.pth`` and verify its recorded sha256.

    Raises :class:`MissingWeightsError` naming the file and where to put it; :class:`ChecksumError` when the file
    differs from the one recorded at first use.
    """
    default = resources.cache_dir("weights") / VGGFACE_FILE
    path = Path(weights_path or os.environ.get("NORMFACE_VGGFACE_WEIGHTS") or default)
    if not path.exists():
        if weights_path is not None or not download:
            raise MissingWeightsError(
                f"VGG-Face weights not found at {path}. No registry package ships them. Download {VGGFACE_URL} "
                f"(Albanie's PyTorch conversion of VGG-Face, 580 MB) and place it at {default}, or pass "
                "weights_path=... / set NORMFACE_VGGFACE_WEIGHTS, or call load_encoder('vggface', download=True) "
                "on a machine with internet.")
        resources.download(VGGFACE_URL, path, sha256=None, verify=_verify_download)
    sha = Path(str(path) + ".sha256")
    got = resources.sha256_file(path)
    recorded = sha.read_text().split() if sha.exists() else []
    if recorded:
        want = recorded[0]
        if got != want:
            raise ChecksumError(f"{path} has sha256 {got}, but {sha.name} recorded {want} at first use; replace the "
                                f"file with the original from {VGGFACE_URL} or delete {sha} if you changed it on "
                                "purpose.")
    elif path == default:  # record only for our own cache, never write next to a user's file
        resources.atomic_write(sha, lambda tmp: Path(tmp).write_text(got + "\n"))
    return path


def _verify_download(path: Path) -> None:
    """The publisher gives no checksum, so a fresh download is checked by content before it is kept: a PyTorch state
    dict with exactly the published parameter names and shapes, all finite (:class:`ChecksumError` otherwise)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        load_state_dict_checked(VGGFaceNet(), state)
    except Exception as e:  # any unreadable or foreign content
        raise ChecksumError(f"the file downloaded from {VGGFACE_URL} is not the VGG-Face checkpoint ({e}); nothing "
                            "was saved.") from e
    if not all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()):
        raise ChecksumError(f"the file downloaded from {VGGFACE_URL} holds NaN or inf weights; nothing was saved.")


class VGGFaceEncoder(FaceEncoder):
    """VGG-Face behind :class:`FaceEncoder` (see module docstring). Input 224 x 224, ``255 x - mean_rgb``."""

    LAYERS = {"fc7": 4096, "fc6": 4096}

    def __init__(self, net: VGGFaceNet, layer: str | None = None):
        super().__init__()
        self._choose_layer("vggface", layer)
        self.net = net
        self.embed_dim, self.input_size = 4096, 224
        self.crop_box = VGGFACE_CROP_BOX
        self.threshold = float("nan")
        self.threshold_source = "not calibrated: VGG-Face weights are not available on the machines that built this"
        self.register_buffer("mean_rgb", torch.tensor(VGGFACE_MEAN_RGB).view(1, 3, 1, 1))
        self.freeze()

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,3,224,224]`` in ``[0,1]`` -> ``255 x - mean_rgb`` (range about ``[-130, 162]``)."""
        return x * 255.0 - self.mean_rgb

    def network_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fc6, fc7 = self.net(x)
        return (fc7 if self.layer == "fc7" else fc6), fc7


def load_vggface(layer: str | None = None, weights_path: str | os.PathLike | None = None, download: bool = False,
                 state_dict: dict | None = None) -> VGGFaceEncoder:
    """Build the VGG-Face encoder from ``state_dict`` (published key names) or from the weights file."""
    net = VGGFaceNet()
    if state_dict is None:
        path = vggface_weights_path(weights_path, download)
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    load_state_dict_checked(net, state_dict)
    return VGGFaceEncoder(net.eval(), layer)
