import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A real (tiny) decoder trained by the `normface train` code path on the quick profile's colour faces for a few
    steps."""
    from normface_lib.training import profile_config, train

    out = tmp_path_factory.mktemp("run")
    config = profile_config("quick", steps=6, batch_size=8, morph_bank_size=8, identity_every=0, checkpoint_every=6,
                            eval_splits=())
    train(config, out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_grey_checkpoint(tmp_path_factory):
    """The same tiny run, trained on the grey ORL photos (the 32-grey-identity ablation's data): a model that renders
    grey faces."""
    from normface_lib.training import profile_config, train

    out = tmp_path_factory.mktemp("grey-run")
    config = profile_config("quick", dataset="orl", steps=6, batch_size=8, morph_bank_size=8, identity_every=0,
                            checkpoint_every=6, eval_splits=())
    train(config, out, progress=False)
    return out


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """Public-domain portraits for the command-line tests: Eileen Collins (astronaut.jpg), Grace Hopper (hopper.jpg)
    and Hopper one stop darker (dark.png); plus bad inputs: a text file and a blank image with no face."""
    import matplotlib.cbook
    import numpy as np
    import skimage.data
    from PIL import Image

    from normface_lib.apps.colour import perturb_exposure_white_balance
    from normface_lib.faces import load_image

    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage.data.astronaut()).save(d / "astronaut.jpg")
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        (d / "hopper.jpg").write_bytes(f.read())
    dark, _ = perturb_exposure_white_balance(load_image(d / "hopper.jpg"), exposure_stops=-1.0, wb_gains=[1, 1, 1])
    Image.fromarray((dark.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(d / "dark.png")
    (d / "notes.txt").write_text("not an image")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(d / "blank.png")
    return d


ATTRS = ["Eyeglasses", "Male", "Mouth_Slightly_Open", "Smiling"]


def _fake_celeba(root):
    """5 people (ORL s1..s5) x 4 photos laid out as torchvision's CelebA expects; person 5 smiles in every photo."""
    from PIL import Image

    from normface_lib.core import resources

    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    orl = resources.orl_dir()
    rows = []
    for p in range(5):
        for k in range(4):
            n = len(rows) + 1
            fname = f"{n:06d}.jpg"
            face = Image.open(orl / f"s{p + 1}" / f"{k + 1}.pgm").convert("RGB").resize((138, 168))
            canvas = Image.new("RGB", (178, 218), (120, 110, 100))
            canvas.paste(face, (20, 25))
            canvas.save(base / "img_align_celeba" / fname, quality=95)
            smiling = 1 if (p == 4 or k == 0) else -1  # photo 1 of everyone and all of person 5: "smiling"
            rows.append((fname, 1000 + p, [-1, 1, -1, smiling], n % 3))
    N = len(rows)
    (base / "list_attr_celeba.txt").write_text(f"{N}\n{' '.join(ATTRS)}\n" + "".join(
        f"{f} " + " ".join(f"{a:2d}" for a in attrs) + "\n" for f, _, attrs, _ in rows))
    (base / "identity_CelebA.txt").write_text("".join(f"{f} {i}\n" for f, i, _, _ in rows))
    (base / "list_eval_partition.txt").write_text("".join(f"{f} {s}\n" for f, _, _, s in rows))
    (base / "list_bbox_celeba.txt").write_text(f"{N}\nimage_id x_1 y_1 width height\n" + "".join(
        f"{f} 20 25 138 168\n" for f, _, _, _ in rows))
    (base / "list_landmarks_align_celeba.txt").write_text(
        f"{N}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
        "rightmouth_y\n" + "".join(f"{f} 69 111 108 111 89 135 73 152 104 152\n" for f, _, _, _ in rows))
    return rows


@pytest.fixture(scope="session")
def fake_celeba():
    """``fake_celeba(root)`` lays out a CelebA-shaped folder under ``root`` (5 ORL people × 4 photos; person 5
    smiles in every photo) and returns its rows ``(file, identity, attributes, partition)``."""
    return _fake_celeba
