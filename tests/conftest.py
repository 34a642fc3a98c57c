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
    """A real (tiny) decoder trained by the `normface train` code path on grey ORL faces for a few steps."""
    from normface_lib.training import profile_config, train

    out = tmp_path_factory.mktemp("run")
    config = profile_config("quick", steps=6, batch_size=8, morph_bank_size=8, identity_every=0, checkpoint_every=6,
                            eval_splits=())
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
