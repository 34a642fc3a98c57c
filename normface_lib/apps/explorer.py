"""An interactive explorer of a trained decoder (notebook 05).

Two things a reader wants to *play* with:

* **Identity interpolation.** Pick two faces A and B; a slider ``alpha`` blends their encoder features,
  ``f = (1 - alpha) f_A + alpha f_B``, and the decoder renders the blend (face and landmarks). Because the decoder
  only ever sees identity features, every intermediate is again a frontal, neutral, evenly lit face.
* **Robustness.** Degrade A's input crop with an occluder or a light gradient of growing strength
  (:func:`normface_lib.faces.perturb`) and compare how far the input and the normalized output move.

The widget is built from **precomputed** frames for a discrete set of slider values, switched in the browser by
``ipywidgets.jslink`` links between the controls and ``ipywidgets.Stack`` containers. Nothing calls back into a
Python kernel, so the same widget works in JupyterLab, in Colab and in the static book (whose page embeds the widget
state that papermill saves in the notebook). The price is memory: ``N`` faces and ``K`` slider values make
``N (N - 1) / 2 · K + N`` interpolation frames (frames for (B, A) reuse those of (A, B) in reverse).

    >>> ex = Explorer(model, {"A": crop_a, "B": crop_b})          # doctest: +SKIP
    >>> image, landmarks = ex.interpolate("A", "B", 0.5)          # doctest: +SKIP
    >>> ex.widget()                                               # doctest: +SKIP
"""
from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

import numpy as np
import torch

from ..core.checks import check_images
from ..core.errors import InputError
from ..encoders import encode
from ..faces import PERTURBATIONS, perturb, side_by_side
from ..nets import decode

#: Slider values of the identity blend (9 steps from A to B).
DEFAULT_ALPHAS = tuple(float(a) for a in np.linspace(0.0, 1.0, 9))
#: Perturbation kinds the robustness panel offers, with the strength of each slider step
#: (units of :func:`normface_lib.faces.perturb`: occluder = covered fraction of the crop, light = gradient
#: amplitude).
DEFAULT_STRENGTHS = {"occluder": (0.0, 0.06, 0.12, 0.18, 0.24),
                     "light": (0.0, 0.25, 0.5, 0.75, 1.0)}
#: Colour of the landmark dots drawn on frames (RGB, 0-255).
LANDMARK_COLOUR = (0, 229, 255)
#: Image formats :func:`render_image` writes.
IMAGE_FORMATS = ("png", "jpeg")


def render_image(image: torch.Tensor, landmarks: torch.Tensor | None = None, size: int = 128,
                 dot: float | None = None, format: str = "png", quality: int = 85) -> bytes:
    """Encode a face as image-file bytes for a widget, upscaled, with its landmarks drawn as dots.

    Args:
        image: ``[3,S,S]`` (or ``[3,H,W]``) float in ``[0,1]``.
        landmarks: optional ``[L,2]`` float, ``(x, y)`` pixels of ``image`` (pixel-centre convention).
        size: output height in pixels (width scaled by the same factor); bilinear resampling.
        dot: dot radius in output pixels (default ``size / 100``, at least 1).
        format: ``"png"`` (lossless) or ``"jpeg"`` (about 4× smaller; what the widget stores).
        quality: JPEG quality, 1-95.

    Returns:
        The file contents (``bytes``), RGB, ``size`` pixels high.

    Raises:
        InputError: wrong shape, dtype or value range.
    """
    from PIL import Image, ImageDraw

    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise InputError(f"image must be a float tensor [3,H,W] in [0,1], got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}.")
    if not isinstance(size, int) or size < 8:
        raise InputError(f"size must be an integer ≥ 8 pixels, got {size!r}.")
    if format not in IMAGE_FORMATS:
        raise InputError(f"format must be one of {IMAGE_FORMATS}, got {format!r}.")
    lo, hi = float(image.min()), float(image.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(f"image values must lie in [0,1], got [{lo:.3g}, {hi:.3g}].")
    h, w = image.shape[-2:]
    k = size / h
    arr = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    pil = Image.fromarray(arr).resize((max(1, round(w * k)), size), Image.BILINEAR)
    if landmarks is not None:
        lm = torch.as_tensor(landmarks).detach().float().cpu()
        if lm.dim() != 2 or lm.shape[1] != 2 or not torch.isfinite(lm).all():
            raise InputError(f"landmarks must be finite [L,2] pixel coordinates, got {tuple(lm.shape)}.")
        r = max(1.0, size / 100) if dot is None else float(dot)
        draw = ImageDraw.Draw(pil)
        for x, y in ((lm + 0.5) * k - 0.5).tolist():
            draw.ellipse([x - r, y - r, x + r, y + r], fill=LANDMARK_COLOUR)
    buf = io.BytesIO()
    if format == "png":
        pil.save(buf, format="PNG", optimize=True)
    else:
        pil.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


class Explorer:
    """Identity interpolation and robustness for a set of faces, with a kernel-free ipywidgets UI.

    Args:
        model: a :class:`normface_lib.pipeline.NormFace` (decoder + frozen encoder).
        faces: ``{name: crop}`` with each crop a canonical crop ``[3,S',S']`` float32 in ``[0,1]`` (any side
            ``S'``, all the same; e.g. rows of a :class:`~normface_lib.data.FaceTable` or
            :class:`~normface_lib.data.FaceSet`). At least two faces.
        alphas: the blend weights the slider offers, each in ``[0,1]``, increasing (default :data:`DEFAULT_ALPHAS`).
        strengths: ``{kind: strengths}`` for the robustness panel (default :data:`DEFAULT_STRENGTHS`); every kind
            must have the same number of steps (one slider drives them all); kinds of
            :func:`normface_lib.faces.perturb`.
        seed: seed of the perturbations (occluder position and colour, light direction); the same for every face.
        display_size: height in pixels of the frames the widget shows.
        image_format: ``"jpeg"`` (default; keeps the saved widget state of a notebook around 1 MB) or ``"png"``.

    Attributes:
        names: the face names, in the order given.
        crops: ``[N,3,S',S']`` float32, the input crops.
        features: ``[N,D]`` float32, their encoder features (computed once).
    """

    def __init__(self, model, faces: Mapping[str, torch.Tensor], alphas: Sequence[float] = DEFAULT_ALPHAS,
                 strengths: Mapping[str, Sequence[float]] | None = None, seed: int = 0, display_size: int = 128,
                 image_format: str = "jpeg"):
        if not hasattr(model, "decoder") or not hasattr(model, "encoder"):
            raise InputError(f"model must be a NormFace (NormFace.from_pretrained), got {type(model).__name__}.")
        if not isinstance(faces, Mapping) or len(faces) < 2:
            raise InputError("faces must be a dict {name: crop [3,S,S]} with at least two faces to interpolate "
                             "between.")
        names = [str(k) for k in faces]
        if len(set(names)) != len(names):
            raise InputError("face names must be unique.")
        crops = list(faces.values())
        if any(not isinstance(c, torch.Tensor) or c.dim() != 3 for c in crops):
            raise InputError("every face must be a single canonical crop tensor [3,S,S] in [0,1].")
        if len({tuple(c.shape) for c in crops}) != 1:
            raise InputError(f"all crops must have the same shape, got {sorted({tuple(c.shape) for c in crops})}; "
                             "align them to one size with normface_lib.faces.align_faces.")
        self.crops = check_images(torch.stack([c.detach().float().cpu() for c in crops]), "faces", square=True)
        a = np.asarray(list(alphas), dtype=np.float64)
        if a.ndim != 1 or len(a) < 2 or not np.isfinite(a).all() or a.min() < 0 or a.max() > 1 \
                or (np.diff(a) <= 0).any():
            raise InputError(f"alphas must be at least two increasing numbers in [0,1], got {list(alphas)!r}.")
        strengths = dict(DEFAULT_STRENGTHS if strengths is None else strengths)
        if not strengths:
            raise InputError("strengths must name at least one perturbation kind.")
        for kind, s in strengths.items():
            if kind not in PERTURBATIONS:
                raise InputError(f"unknown perturbation kind {kind!r}; choose from {', '.join(PERTURBATIONS)}.")
            if len(s) < 1 or any(not math.isfinite(float(v)) or float(v) < 0 for v in s):
                raise InputError(f"strengths[{kind!r}] must be finite numbers ≥ 0, got {list(s)!r}.")
        if len({len(s) for s in strengths.values()}) != 1:
            raise InputError("every perturbation kind needs the same number of strength steps (one slider drives "
                             f"them all), got {({k: len(v) for k, v in strengths.items()})}.")
        if not isinstance(display_size, int) or display_size < 16:
            raise InputError(f"display_size must be an integer ≥ 16 pixels, got {display_size!r}.")
        if image_format not in IMAGE_FORMATS:
            raise InputError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}.")
        self.model = model
        self.names = names
        self.alphas = tuple(float(v) for v in a)
        self.strengths = {k: tuple(float(v) for v in s) for k, s in strengths.items()}
        self.seed = int(seed)
        self.display_size = display_size
        self.image_format = image_format
        self.features = encode(model.encoder, self.crops, batch=None)["features"]
        self._clean: dict[int, torch.Tensor] = {}
        self._series: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _frame(self, image: torch.Tensor, landmarks: torch.Tensor | None = None) -> bytes:
        """A face as the widget's image bytes (:func:`render_image` at :attr:`display_size`)."""
        return render_image(image, landmarks, self.display_size, format=self.image_format)

    # ------------------------------------------------------------------ computation
    def _index(self, who: str | int) -> int:
        if isinstance(who, (int, np.integer)) and not isinstance(who, bool):
            if not 0 <= int(who) < len(self.names):
                raise InputError(f"face index {who} out of range 0..{len(self.names) - 1}.")
            return int(who)
        if who not in self.names:
            raise InputError(f"unknown face {who!r}; choose one of {self.names}.")
        return self.names.index(who)

    def interpolate(self, a: str | int, b: str | int, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode the blend ``(1 - alpha) f_a + alpha f_b`` of two faces' encoder features.

        Args:
            a, b: face names (or indices into :attr:`names`).
            alpha: blend weight in ``[0,1]`` (0 = face ``a``, 1 = face ``b``).

        Returns:
            ``image`` ``[3,S,S]`` float32 in ``[0,1]`` (the decoded face, canonical frame, ``S`` = the model's size)
            and ``landmarks`` ``[68,2]`` float32 (its predicted landmarks, pixels of ``image``).
        """
        return self.interpolate_many(a, b, [alpha])[0]

    def interpolate_many(self, a: str | int, b: str | int,
                         alphas: Sequence[float] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`interpolate` for several blend weights in one decoder batch (default: :attr:`alphas`).

        Returns a list of ``(image [3,S,S], landmarks [68,2])``, one per weight, in order.
        """
        i, j = self._index(a), self._index(b)
        w = torch.as_tensor(list(self.alphas if alphas is None else alphas), dtype=torch.float32)
        if w.dim() != 1 or len(w) == 0 or not torch.isfinite(w).all() or float(w.min()) < 0 or float(w.max()) > 1:
            raise InputError(f"alpha must lie in [0,1] (0 = the first face, 1 = the second), got {w.tolist()}.")
        f = (1 - w)[:, None] * self.features[i] + w[:, None] * self.features[j]
        out = decode(self.model.decoder, f, batch=None)
        return [(out["image"][k], out["landmarks"][k]) for k in range(len(w))]

    def perturbed(self, a: str | int, kind: str, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Degrade face ``a``'s input crop and normalize the result.

        Args:
            a: face name or index.
            kind: a kind of :func:`normface_lib.faces.perturb` (``"occluder"``, ``"light"``, ``"blur"`` ...).
            strength: its strength (units of :func:`~normface_lib.faces.perturb`); 0 leaves the input as it is.

        Returns:
            ``input_image`` ``[3,S',S']`` float32 in ``[0,1]`` (the degraded crop the encoder sees) and
            ``output_image`` ``[3,S,S]`` float32 in ``[0,1]`` (the normalized face decoded from it). The
            perturbation is seeded with :attr:`seed`, so the same arguments give the same images.
        """
        xs, ys = self.perturbed_series(a, kind, [strength])
        return xs[0], ys[0]

    def perturbed_series(self, a: str | int, kind: str,
                         strengths: Sequence[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`perturbed` for several strengths (default :attr:`strengths` ``[kind]``) in one encoder and one
        decoder batch; each input is perturbed on its own with :attr:`seed`, so row ``k`` equals
        ``perturbed(a, kind, strengths[k])``. Results are memoised.

        Returns:
            ``inputs`` ``[K,3,S',S']`` and ``outputs`` ``[K,3,S,S]``, float32 in ``[0,1]``.
        """
        i, strengths = self._index(a), self._strengths(kind, strengths)
        key = (i, kind, strengths)
        if key not in self._series:
            xs = torch.cat([perturb(self.crops[i:i + 1], kind, s, seed=self.seed) for s in strengths])
            feats = encode(self.model.encoder, xs, batch=None)["features"]
            self._series[key] = (xs, decode(self.model.decoder, feats, batch=None)["image"])
        return self._series[key]

    def _rows(self, i: int, xs: torch.Tensor, ys: torch.Tensor, strengths: Sequence[float]) -> list[dict]:
        clean_out = self._clean_output(i)
        return [{"strength": float(s), "input_change": float((x - self.crops[i]).abs().mean()),
                 "output_change": float((y - clean_out).abs().mean())} for s, x, y in zip(strengths, xs, ys)]

    def stability(self, a: str | int, kind: str, strengths: Sequence[float] | None = None) -> list[dict]:
        """How much input and output move as a perturbation grows (the robustness panel's captions).

        Args:
            a: face name or index.
            kind: perturbation kind; strengths default to :attr:`strengths` ``[kind]``.

        Returns:
            One dict per strength: ``{"strength", "input_change", "output_change"}``, each change the mean absolute
            pixel difference (``[0,1]`` scale) from the unperturbed input crop / from the output for the unperturbed
            input.
        """
        strengths = self._strengths(kind, strengths)
        i = self._index(a)
        return self._rows(i, *self.perturbed_series(i, kind, strengths), strengths)

    def _strengths(self, kind: str, strengths: Sequence[float] | None) -> tuple[float, ...]:
        if not isinstance(kind, str):
            raise InputError(f"kind must be a perturbation name such as 'occluder' or 'light', got {kind!r}.")
        if strengths is None:
            if kind not in self.strengths:
                raise InputError(f"no default strengths for {kind!r}; pass strengths= or use one of "
                                 f"{sorted(self.strengths)}.")
            strengths = self.strengths[kind]
        return tuple(float(s) for s in strengths)

    def _clean_output(self, i: int) -> torch.Tensor:
        if i not in self._clean:
            self._clean[i] = decode(self.model.decoder, self.features[i:i + 1], batch=None)["image"][0]
        return self._clean[i]

    # ------------------------------------------------------------------ frames (what the widget shows)
    def interpolation_frames(self, a: str | int, b: str | int) -> list[bytes]:
        """Encoded frames (face + landmarks, :attr:`display_size` pixels high, :attr:`image_format`) for every value
        of the alpha slider, from face ``a`` (first) to face ``b`` (last): ``len(alphas)`` ``bytes`` objects."""
        return [self._frame(img, lm) for img, lm in self.interpolate_many(a, b)]

    def update(self, a: str | int, b: str | int, alpha_index: int) -> bytes:
        """The frame the widget shows when the slider stands at ``alpha_index`` (``0..len(alphas)-1``): encoded
        image bytes (:attr:`image_format`), the same as ``interpolation_frames(a, b)[alpha_index]``."""
        if not isinstance(alpha_index, (int, np.integer)) or not 0 <= int(alpha_index) < len(self.alphas):
            raise InputError(f"alpha_index must be an integer in 0..{len(self.alphas) - 1}, got {alpha_index!r}.")
        img, lm = self.interpolate(a, b, self.alphas[int(alpha_index)])
        return self._frame(img, lm)

    def perturbation_frames(self, a: str | int, kind: str) -> list[tuple[bytes, dict]]:
        """For each strength of ``kind`` (:attr:`strengths`): an encoded image with the degraded input (left) and its
        normalized output (right), :attr:`display_size` pixels high, and the :meth:`stability` row of that
        strength."""
        i = self._index(a)
        strengths = self._strengths(kind, None)
        xs, ys = self.perturbed_series(i, kind, strengths)
        rows = self._rows(i, xs, ys, strengths)
        return [(self._frame(side_by_side(x, y)), row) for x, y, row in zip(xs, ys, rows)]

    # ------------------------------------------------------------------ the widget
    def widget(self, faces: Sequence[str | int] | None = None):
        """Build the kernel-free ipywidgets UI.

        Args:
            faces: which faces to offer (names or indices; default all). Every pair and slider value is rendered
                now, so keep this to a handful.

        Returns:
            An ``ipywidgets.VBox`` with two panels: *identity interpolation* (dropdowns A and B, an alpha slider, the
            inputs and the decoded blend with landmarks) and *robustness* (a perturbation kind,
            a strength slider, degraded input | normalized output, and how much each moved). Controls are tied to
            ``ipywidgets.Stack`` containers with ``jslink``, so it works without a kernel (static HTML included);
            the ``Link`` widgets are listed in the box's ``normface_links`` attribute.
        """
        import ipywidgets as W

        idx = [self._index(f) for f in (faces if faces is not None else range(len(self.names)))]
        if len(idx) < 2:
            raise InputError("the widget needs at least two faces.")
        names = [self.names[i] for i in idx]
        K = len(self.alphas)
        # one Layout object shared by all frames and one by all containers: each widget would otherwise carry its
        # own (empty) Layout model in the saved state
        img_layout = W.Layout(width=f"{self.display_size}px", height=f"{self.display_size}px")
        box_layout = W.Layout()

        def image(data: bytes, layout=img_layout) -> W.Image:
            return W.Image(value=data, format=self.image_format, layout=layout)

        def stack(children, index=0) -> W.Stack:
            return W.Stack(children=list(children), selected_index=index, layout=box_layout)

        # --- identity interpolation: Stack[a] → Stack[b] → Stack[alpha] → Image
        dd_a = W.Dropdown(options=names, index=0, description="face A")
        dd_b = W.Dropdown(options=names, index=1, description="face B")
        slider = W.SelectionSlider(options=[f"{v:.3g}" for v in self.alphas], index=0, description="alpha",
                                   continuous_update=True, layout=W.Layout(width="360px"))
        # (no ipywidgets.Play button: its view looks up an <i> icon that the book theme's Font Awesome script turns
        # into an <svg>, and the error it then raises on every change stops the other links in the static page)
        links = []
        frames: dict[tuple[int, int], list[W.Image]] = {}
        for p, i in enumerate(idx):
            for q, j in enumerate(idx):
                if q < p:
                    frames[(p, q)] = frames[(q, p)][::-1]  # (B, A) is (A, B) run backwards
                elif q == p:  # A with itself: the same decoded face at every alpha (one image, shown K times)
                    frames[(p, q)] = [image(self.update(i, i, 0))] * K
                else:
                    frames[(p, q)] = [image(f) for f in self.interpolation_frames(i, j)]
        inner = {}
        for (p, q), imgs in frames.items():
            inner[(p, q)] = stack(imgs)
            links.append(W.jslink((slider, "index"), (inner[(p, q)], "selected_index")))
        by_a = []
        for p in range(len(idx)):
            s = stack([inner[(p, q)] for q in range(len(idx))], dd_b.index)
            links.append(W.jslink((dd_b, "index"), (s, "selected_index")))
            by_a.append(s)
        blend = stack(by_a, dd_a.index)
        links.append(W.jslink((dd_a, "index"), (blend, "selected_index")))
        inputs = []
        for dd in (dd_a, dd_b):
            s = stack([image(self._frame(self.crops[i])) for i in idx], dd.index)
            links.append(W.jslink((dd, "index"), (s, "selected_index")))
            inputs.append(s)
        caption = W.HTML("<small>inputs A and B (aligned crops) &nbsp;→&nbsp; decoded blend of their identity "
                         "features, with predicted landmarks</small>")
        interp = W.VBox([W.HTML("<b>Identity interpolation</b>"), W.HBox([dd_a, dd_b]), slider,
                         W.HBox([inputs[0], inputs[1], W.HTML("&nbsp;→&nbsp;"), blend]), caption])

        # --- robustness: Stack[a] → Stack[kind] → VBox(Stack[strength] → Image, HTML table of the changes)
        kinds = list(self.strengths)
        n_steps = len(next(iter(self.strengths.values())))
        kind_buttons = W.ToggleButtons(options=kinds, index=0, description="degrade")
        level = W.IntSlider(value=0, min=0, max=n_steps - 1, step=1, description="strength step",
                            style={"description_width": "initial"}, layout=W.Layout(width="360px"))
        wide = W.Layout(width=f"{round(self.display_size * (2 + 2 / self.crops.shape[-1]))}px",
                        height=f"{self.display_size}px")
        per_a = []
        for i in idx:
            per_kind = []
            for kind in kinds:
                made = self.perturbation_frames(i, kind)
                st = stack([image(f, wide) for f, _ in made])
                links.append(W.jslink((level, "value"), (st, "selected_index")))
                cells = "".join(f"<tr><td>{r['strength']:.3g}</td><td>{255 * r['input_change']:.1f}</td>"
                                f"<td>{255 * r['output_change']:.1f}</td></tr>" for _, r in made)
                table = W.HTML(f"<small><table><tr><th>{kind} strength</th><th>input moved</th><th>output moved"
                               f"</th></tr>{cells}</table>mean |Δ| in grey levels (0-255) from the clean input / "
                               "its output</small>", layout=box_layout)
                per_kind.append(W.VBox([st, table], layout=box_layout))
            ks = stack(per_kind)
            links.append(W.jslink((kind_buttons, "index"), (ks, "selected_index")))
            per_a.append(ks)
        robust = stack(per_a, dd_a.index)
        links.append(W.jslink((dd_a, "index"), (robust, "selected_index")))
        panel = W.VBox([W.HTML("<b>Robustness</b> (face A): degraded input | normalized output"),
                        W.HBox([kind_buttons]), level, robust])
        box = W.VBox([interp, W.HTML("<hr>"), panel])
        box.normface_links = links  # the jslink Link widgets, kept referenced alongside the UI
        return box


__all__ = ["Explorer", "render_image", "DEFAULT_ALPHAS", "DEFAULT_STRENGTHS", "IMAGE_FORMATS"]
