"""The pictures README and the book open with, made by the quick profile's model (trained on first use).

    python tools/make_teaser.py [--out book/images/teaser.png] [--glance book/images/glance.png]

``teaser.png`` (README): Eileen Collins (``skimage.data.astronaut``, NASA) and Grace Hopper (matplotlib's sample
photo, US Navy), public domain, each also under a strong side light and in grey, and their normalized faces.
``glance.png`` (the book's *Results at a glance*): people the decoder never saw (held-out colour people, an ORL person,
two people of the expression set with an expression), their outputs, their reference photos and the outputs of the
baseline that identifies people best in the committed seed study. Each PNG gets a JSON file beside it with the
provenance (commit, library code, the model's sha256).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from normface_lib import data, faces  # noqa: E402
from normface_lib import evaluation as ev  # noqa: E402
from normface_lib.encoders import cached_encode, encode  # noqa: E402
from normface_lib.core import resources  # noqa: E402
from normface_lib.core.provenance import provenance  # noqa: E402
from normface_lib.figures import image_grid  # noqa: E402
from normface_lib.nets.checkpoint import find_checkpoint  # noqa: E402
from normface_lib.pipeline import NormFace, default_checkpoint  # noqa: E402
from normface_lib.study import best_baseline  # noqa: E402


def _save(fig, out: Path, record: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    resources.atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    ckpt = find_checkpoint(default_checkpoint("quick") / "checkpoint")
    resources.write_json({"figure": out.name, **record,
                          "model_sha256": resources.sha256_file(ckpt / "model.safetensors"),
                          "provenance": provenance(tool="make_teaser")}, out.with_suffix(".json"))
    print(f"wrote {out}")


def teaser(model, out: Path) -> None:
    inputs, titles = [], []
    for name, src in data.portrait_paths().items():
        photo = faces.load_image(src, name=name)
        for label, variant in (("photo", photo), ("side light", faces.perturb(photo[None], "light", 0.8, seed=1)[0]),
                               ("grey", faces.perturb(photo[None], "grey", 1.0)[0])):
            inputs.append(variant)
            titles.append(f"{name.split('/')[1].replace('_', ' ')}: {label}")
    results = model.normalize_many(inputs)
    blank = torch.ones(3, model.size, model.size)
    crops = [r[0].input_crop if not isinstance(r, Exception) else blank for r in results]
    outs = [r[0].image if not isinstance(r, Exception) else blank for r in results]
    cfg = model.config
    fig = image_grid(crops + outs, titles=titles + ["→ normalized"] * len(outs), ncols=len(inputs), size=1.8,
                     row_labels=["input (aligned)", "normface"],
                     suptitle=f"normface, quick model ({model.size} px, trained offline on the {cfg.get('dataset')} "
                              f"data set): photos in, normalized faces out")
    _save(fig, out, {"inputs": titles})


def glance(model, out: Path) -> None:
    cfg = model.config
    size = model.size
    tables = data.load_tables(cfg["dataset"], size, mirror=True, **cfg.get("data_options", {}))
    train = tables["train"]
    base = ev.Baselines(train, cached_encode(model.encoder, train.images)["features"])
    try:
        study = json.loads((ROOT / "results" / "quick" / "seeds.json").read_text())
        best = best_baseline(study, study["judge"])
    except FileNotFoundError:
        best = "nearest_identity"
    up = tables["unseen_people"]
    orl = data.held_out_table("orl", size, train.mean_shape)
    ex = data.held_out_table("expressions", size, train.mean_shape)
    columns = [(up.images[i], up.landmarks[i], None, f"held-out {up.photo_ids[i].split('/')[0]}") for i in (0, 40, 80)]
    columns.append((orl.images[3], orl.landmarks[3], orl.images[int(orl.target_row[0])], "ORL, grey"))
    for person, expression in ((1, "happy"), (4, "surprised")):
        i = person * 17 + data.EXPRESSIONS.index(expression)
        columns.append((ex.images[i], ex.landmarks[i], ex.images[int(ex.target_row[person])],
                        f"expression: {expression}"))
    x = torch.stack([c[0] for c in columns])
    lms = torch.stack([c[1] for c in columns])
    feats = encode(model.encoder, x)["features"]
    outs = model.normalize_crops(x)["image"]
    baseline = base.outputs(feats, x, lms)[best]["image"]
    blank = torch.ones(3, size, size)
    refs = [c[2] if c[2] is not None else blank for c in columns]
    fig = image_grid(list(x) + list(outs) + refs + list(baseline), ncols=len(columns), size=1.9,
                     titles=[c[3] for c in columns] + [""] * (3 * len(columns)),
                     row_labels=["input", "normface", "reference", ev_label(best)])
    _save(fig, out, {"columns": [c[3] for c in columns], "best_baseline": best})


def ev_label(method: str) -> str:
    return {"mean_face": "mean face", "nearest_identity": "nearest identity", "linear": "linear map",
            "align_only": "align-only"}[method]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "book" / "images" / "teaser.png"))
    ap.add_argument("--glance", default=str(ROOT / "book" / "images" / "glance.png"))
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    torch.set_num_threads(2)
    model = NormFace.from_profile("quick", device="cpu")
    teaser(model, Path(args.out))
    glance(model, Path(args.glance))
    return 0


if __name__ == "__main__":
    sys.exit(main())
