"""The paper's decoder: identity features → (landmarks, texture) → warped, normalized face (Cole et al. 2017, Fig. 3).

Architecture (``width=1``, ``out_size=224``, FaceNet-CASIA features ``D=1792``)::

    features [B,D] ─(standardise with stored training mean/std; dropout + Gaussian noise while training)
      └─ shared FC D→1024 + ReLU ───────────────┬─ landmark MLP: FC 1024→256 + ReLU, FC 256→2L  (offsets from the
                                                 │     mean shape in units of the crop side; last layer starts at
                                                 │     zero, so an untrained decoder predicts the mean shape)
                                                 └─ texture CNN: FC 1024→14·14·256 + ReLU, reshape [256,14,14]
                                                       4 × ConvTranspose2d(k=5, s=2, p=2, output_padding=1) + ReLU,
                                                       channels 128, 64, 32, 32 (max(256/2^i, 32)) → [32,224,224]
                                                       Conv2d 1×1 → 3, sigmoid → texture [B,3,224,224] in (0,1)
    image = warp.warp_image(texture, mean_shape → landmarks)        (differentiable thin-plate-spline warp)

Choices the paper does not state (documented in the book): the widths of the shared layer (1024) and of the landmark
MLP's hidden layer (256), the ReLU after the texture FC, the sigmoid after the 1×1 convolution, and the feature
standardisation. Other output sizes use fewer or more upsampling stages from a base grid close to 14
(56 → 14·2², 112 → 14·2³, 224 → 14·2⁴, 64 → 16·2², 128 → 16·2³).

:meth:`Decoder.parameter_counts` gives the size of each part (the book's *Deviations* chapter tabulates them for the
paper's and the quick profile's settings): at full width the texture FC holds nearly all parameters.

``warp=False`` is the ablation in which the CNN paints the final image directly (no texture/landmark factorisation at
render time; the landmark head is still trained by the landmark loss).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from ..core.errors import InputError
from ..warp import check_mode, warp_image

#: Widths at ``width=1`` (scaled by the width multiplier).
SHARED_DIM = 1024
LANDMARK_HIDDEN = 256
BASE_CHANNELS = 256
MIN_CHANNELS = 32
PAPER_BASE_GRID = 14


def upsampling_plan(out_size: int, base_size: int | None = None) -> tuple[int, int]:
    """``(base_size, n_stages)`` with ``base_size · 2**n_stages == out_size``.

    Without ``base_size``, the base grid closest to the paper's 14 is chosen (ties: the smaller grid), with at
    least one stage. Raises :class:`InputError` when ``out_size`` cannot be reached by doubling an integer grid.
    """
    if not isinstance(out_size, int) or out_size < 4:
        raise InputError(f"out_size must be an integer ≥ 4 (pixels), got {out_size!r}.")
    if base_size is not None:
        n = math.log2(out_size / base_size) if base_size > 0 else -1
        if base_size <= 0 or n < 1 or abs(n - round(n)) > 1e-9:
            raise InputError(f"out_size {out_size} is not base_size {base_size} times a power of two ≥ 2; choose a "
                             f"base_size such as {out_size // 4} or leave it None.")
        return int(base_size), int(round(n))
    options = [(out_size >> n, n) for n in range(1, 12) if out_size % (1 << n) == 0 and (out_size >> n) >= 2]
    if not options:
        raise InputError(f"out_size {out_size} is odd or too small to reach by stride-2 upsampling; use a multiple "
                         "of 4 such as 56, 64, 112 or 224.")
    return min(options, key=lambda o: (abs(o[0] - PAPER_BASE_GRID), o[0]))


def stage_channels(n_stages: int, width: float = 1.0) -> list[int]:
    """Channels ``[c_0, c_1, ..., c_n]``: ``c_0`` of the FC grid, then one per transposed convolution,
    ``c_i = max(256/2^i, 32) · width`` (rounded, at least 1). Paper at 224: ``[256, 128, 64, 32, 32]``."""
    return [max(1, int(round(max(BASE_CHANNELS / 2 ** i, MIN_CHANNELS) * width))) for i in range(n_stages + 1)]


class Decoder(nn.Module):
    """Identity features → normalized face.

    Args:
        feature_dim: ``D``, length of the encoder features (``encoder.feature_dim``).
        mean_shape: ``[L, 2]`` float tensor, the mean landmarks of the training targets in pixels of an
            ``out_size`` canonical crop (``FaceTable.mean_shape``). Stored as a buffer.
        out_size: side ``S`` of the output crop in pixels (56, 64, 112, 224, ...; see :func:`upsampling_plan`).
        n_landmarks: ``L``; only checked against ``mean_shape`` (None: taken from it).
        width: multiplier on every channel count and on the FC widths (paper: 1; the quick profile uses < 1).
        input_dropout: dropout probability on the standardised features (training only).
        input_noise: std of Gaussian noise added to the standardised features (training only).
        warp: True = the paper (texture in the mean-shape frame warped onto the landmarks); False = ablation in
            which the CNN output is the image.
        warp_mode: ``"fast"`` or ``"exact"`` (see :func:`normface_lib.warp.warp_image`).
        base_size: grid side after the texture FC (None: chosen by :func:`upsampling_plan`, 14 at 224).
        shared_dim, landmark_hidden: FC widths at ``width=1`` (defaults 1024 and 256).

    Buffers ``feature_mean``/``feature_std`` ``[D]`` standardise the input (identity until
    :meth:`set_feature_stats` is called with the training features' statistics); they are saved with the weights.
    """

    def __init__(self, feature_dim: int, mean_shape: torch.Tensor, out_size: int = 224,
                 n_landmarks: int | None = None, width: float = 1.0, input_dropout: float = 0.0,
                 input_noise: float = 0.0, warp: bool = True, warp_mode: str = "fast", base_size: int | None = None,
                 shared_dim: int = SHARED_DIM, landmark_hidden: int = LANDMARK_HIDDEN):
        super().__init__()
        if not isinstance(feature_dim, int) or feature_dim < 1:
            raise InputError(f"feature_dim must be a positive int (the encoder's feature_dim), got {feature_dim!r}.")
        mean_shape = torch.as_tensor(mean_shape, dtype=torch.float32)
        if mean_shape.dim() != 2 or mean_shape.shape[1] != 2 or mean_shape.shape[0] < 3:
            raise InputError(f"mean_shape must be [L,2] (x,y) pixels of the out_size crop, got "
                             f"{tuple(mean_shape.shape)}; use FaceTable.mean_shape.")
        if not torch.isfinite(mean_shape).all():
            raise InputError("mean_shape contains NaN or inf values.")
        if n_landmarks is not None and n_landmarks != mean_shape.shape[0]:
            raise InputError(f"n_landmarks={n_landmarks} but mean_shape has {mean_shape.shape[0]} points; make them agree.")
        if width <= 0:
            raise InputError(f"width must be > 0 (1 = the paper's widths), got {width}.")
        if not 0 <= input_dropout < 1:
            raise InputError(f"input_dropout must be in [0, 1), got {input_dropout}.")
        if input_noise < 0:
            raise InputError(f"input_noise must be ≥ 0 (a standard deviation), got {input_noise}.")
        check_mode(warp_mode)
        if mean_shape.min() < -0.5 * out_size or mean_shape.max() > 1.5 * out_size:
            raise InputError(f"mean_shape values [{float(mean_shape.min()):.1f}, {float(mean_shape.max()):.1f}] do "
                             f"not look like pixels of a {out_size}-px crop; rescale it to out_size.")
        self.feature_dim = feature_dim
        self.out_size = out_size
        self.n_landmarks = int(mean_shape.shape[0])
        self.width = float(width)
        self.input_dropout = float(input_dropout)
        self.input_noise = float(input_noise)
        self.warp = bool(warp)
        self.warp_mode = warp_mode
        self.shared_dim_base = int(shared_dim)
        self.landmark_hidden_base = int(landmark_hidden)
        self.base_size, self.n_stages = upsampling_plan(out_size, base_size)
        self.channels = stage_channels(self.n_stages, width)
        h = max(1, int(round(shared_dim * width)))
        lh = max(1, int(round(landmark_hidden * width)))

        self.register_buffer("mean_shape", mean_shape.clone())
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_std", torch.ones(feature_dim))
        self.dropout = nn.Dropout(input_dropout)
        self.shared = nn.Sequential(nn.Linear(feature_dim, h), nn.ReLU(inplace=True))
        self.landmark_head = nn.Sequential(nn.Linear(h, lh), nn.ReLU(inplace=True), nn.Linear(lh, 2 * self.n_landmarks))
        nn.init.zeros_(self.landmark_head[-1].weight)
        nn.init.zeros_(self.landmark_head[-1].bias)
        c = self.channels
        self.texture_fc = nn.Sequential(nn.Linear(h, c[0] * self.base_size ** 2), nn.ReLU(inplace=True))
        ups: list[nn.Module] = []
        for i in range(self.n_stages):
            ups += [nn.ConvTranspose2d(c[i], c[i + 1], kernel_size=5, stride=2, padding=2, output_padding=1),
                    nn.ReLU(inplace=True)]
        self.upsample = nn.Sequential(*ups)
        self.to_rgb = nn.Conv2d(c[-1], 3, kernel_size=1)

    # ------------------------------------------------------------------ configuration
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as a JSON-serialisable dict (``Decoder.from_config(d.get_config())`` rebuilds it)."""
        return dict(feature_dim=self.feature_dim, mean_shape=self.mean_shape.tolist(), out_size=self.out_size,
                    n_landmarks=self.n_landmarks, width=self.width, input_dropout=self.input_dropout,
                    input_noise=self.input_noise, warp=self.warp, warp_mode=self.warp_mode, base_size=self.base_size,
                    shared_dim=self.shared_dim_base, landmark_hidden=self.landmark_hidden_base)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Decoder":
        """Build an (untrained) decoder from :meth:`get_config`'s dict."""
        cfg = dict(config)
        cfg["mean_shape"] = torch.tensor(cfg["mean_shape"], dtype=torch.float32)
        return cls(**cfg)

    @torch.no_grad()
    def set_feature_stats(self, features: torch.Tensor, eps: float = 1e-6) -> None:
        """Store the per-dimension mean and std of training features ``[N, D]`` (float) used to standardise inputs.

        Dimensions with std below ``eps`` (e.g. always-zero ReLU units) are left unscaled."""
        f = self._check_features(features).double()
        std = f.std(dim=0, unbiased=False) if f.shape[0] > 1 else torch.ones_like(f[0])
        self.feature_mean.copy_(f.mean(dim=0).float())
        self.feature_std.copy_(torch.where(std < eps, torch.ones_like(std), std).float())

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per part: ``shared``, ``landmark_head``, ``texture_fc``, ``upsample``, ``to_rgb``,
        ``total``."""
        parts = dict(shared=self.shared, landmark_head=self.landmark_head, texture_fc=self.texture_fc,
                     upsample=self.upsample, to_rgb=self.to_rgb)
        counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
        counts["total"] = sum(counts.values())
        return counts

    # ------------------------------------------------------------------ forward
    def _check_features(self, features: torch.Tensor) -> torch.Tensor:
        if not isinstance(features, torch.Tensor):
            raise InputError(f"features must be a torch.Tensor [B,{self.feature_dim}], got {type(features).__name__}; "
                             "compute them with encoder.features(images).")
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise InputError(f"features must be [B,{self.feature_dim}], got {tuple(features.shape)}; use the encoder "
                             "this decoder was built for (feature_dim must match) and add a batch dimension.")
        if not features.is_floating_point():
            raise InputError(f"features must be floating point, got {features.dtype}.")
        return features

    def predict_landmarks(self, hidden: torch.Tensor) -> torch.Tensor:
        """Landmarks ``[B, L, 2]`` float32 in output-crop pixels from the shared layer's activations ``[B, h]``."""
        offsets = self.landmark_head(hidden).float().view(-1, self.n_landmarks, 2)
        return self.mean_shape + self.out_size * offsets

    def predict_texture(self, hidden: torch.Tensor) -> torch.Tensor:
        """Texture ``[B, 3, S, S]`` in (0, 1) (sigmoid) from the shared layer's activations ``[B, h]``."""
        x = self.texture_fc(hidden).view(-1, self.channels[0], self.base_size, self.base_size)
        # channels-last activations take oneDNN's fast transposed convolutions on a CPU (1.6x at the quick profile's
        # sizes, measured) and suit GPUs as well; the weights keep their layout, so checkpoints do not change
        x = x.contiguous(memory_format=torch.channels_last)
        return torch.sigmoid(self.to_rgb(self.upsample(x))).contiguous()

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Decode features.

        Args:
            features: ``[B, D]`` float encoder features (``encoder.features`` of canonical crops).

        Returns:
            dict with
            ``image`` ``[B, 3, S, S]`` float32 in [0, 1]: the normalized face in the canonical frame;
            ``texture`` ``[B, 3, S, S]`` in (0, 1): the texture in the mean-shape frame (``None`` when ``warp=False``);
            ``landmarks`` ``[B, L, 2]`` float32: predicted landmarks in output-crop pixels.
        """
        features = self._check_features(features)
        x = (features.float() - self.feature_mean) / self.feature_std
        if self.training:
            x = self.dropout(x)
            if self.input_noise > 0:
                x = x + self.input_noise * torch.randn_like(x)
        hidden = self.shared(x)
        landmarks = self.predict_landmarks(hidden)
        texture = self.predict_texture(hidden)
        if not self.warp:
            return dict(image=texture.float(), texture=None, landmarks=landmarks)
        device_type = texture.device.type
        with torch.autocast(device_type=device_type, enabled=False):  # the spline solve and sampling stay in float32
            image = warp_image(texture.float(), self.mean_shape, landmarks.float(), mode=self.warp_mode)
        return dict(image=image.clamp(0, 1), texture=texture.float(), landmarks=landmarks)

    def extra_repr(self) -> str:
        return (f"feature_dim={self.feature_dim}, out_size={self.out_size}, L={self.n_landmarks}, width={self.width}, "
                f"base={self.base_size}x{self.base_size}x{self.channels[0]}, stages={self.n_stages}, warp={self.warp}")


@torch.no_grad()
def decode(decoder: Decoder, features: torch.Tensor, batch: int | None = 64) -> dict[str, torch.Tensor]:
    """Run a decoder in eval mode over many feature rows, in batches.

    Args:
        decoder: a :class:`Decoder` (any device; its train/eval mode is restored afterwards).
        features: ``[N, D]`` float encoder features.
        batch: rows per forward pass (``None``: all at once).

    Returns:
        ``{"image": [N,3,S,S], "landmarks": [N,L,2], "texture": [N,3,S,S] or None}``, float32 on the CPU.
    """
    was = decoder.training
    decoder.eval()
    dev = next(decoder.parameters()).device
    step = batch or max(1, features.shape[0])
    parts = [decoder(features[i:i + step].to(dev)) for i in range(0, features.shape[0], step)]
    decoder.train(was)
    return {k: None if parts[0][k] is None else torch.cat([p[k].float().cpu() for p in parts])
            for k in ("image", "landmarks", "texture")}
