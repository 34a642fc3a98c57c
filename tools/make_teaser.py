"""The picture README and the book open with: public-domain photos in, the quick model's normalized faces out.

    python tools/make_teaser.py [--out book/images/teaser.png]

Inputs are Eileen Collins (``skimage.data.astronaut``, NASA) and Grace Hopper (matplotlib's sample photo, US Navy),
each also under a strong side light and in grey; every face is normalized by the quick profile's model (trained on
first use). Writes the PNG and, beside it, a JSON file with the provenance (commit, library code, the model's sha256).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from normface_lib import data, faces  # noqa: E402
from normface_lib.core import resources  # noqa: E402
from normface_lib.core.provenance import provenance  # noqa: E402
from normface_lib.figures import image_grid  # noqa: E402
from normface_lib.nets.checkpoint import find_checkpoint  # noqa: E402
from normface_lib.pipeline import NormFace, default_checkpoint  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "book" / "images" / "teaser.png"))
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    torch.set_num_threads(2)
    model = NormFace.from_profile("quick", device="cpu")
    inputs, titles = [], []
    for name, src in data.portrait_paths().items():
        photo = faces.load_image(src, name=name)
        for label, variant in (("photo", photo), ("side light", faces.perturb(photo[None], "light", 0.8, seed=1)[0]),
                               ("grey", faces.perturb(photo[None], "grey", 1.0)[0])):
            inputs.append(variant)
            titles.append(f"{name.split('/')[1].replace('_', ' ')}: {label}")
    results = model.normalize_many(inputs)
    crops = [r[0].input_crop if not isinstance(r, Exception) else torch.ones(3, 64, 64) for r in results]
    outs = [r[0].image if not isinstance(r, Exception) else torch.ones(3, 64, 64) for r in results]
    fig = image_grid(crops + outs, titles=titles + ["→ normalized"] * len(outs), ncols=len(inputs), size=1.6,
                     row_labels=["input (aligned)", "normface"],
                     suptitle="normface, quick model (64 px, trained on 32 grey ORL people): photos in, normalized "
                              "faces out")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    resources.atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    ckpt = find_checkpoint(default_checkpoint("quick") / "checkpoint")
    resources.write_json({"figure": out.name, "inputs": titles,
                          "model_sha256": resources.sha256_file(ckpt / "model.safetensors"),
                          "provenance": provenance(tool="make_teaser")}, out.with_suffix(".json"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
