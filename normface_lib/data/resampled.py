"""Person-folder data sets of any size made from the ORL photos (offline): for trying the streamed data layer on a
machine without a large data set, and for measuring it (``benchmarks/data_memory.py``). Each photo is a real ORL photo,
resampled and jittered (scale, rotation, shift, brightness); the "people" are ORL's 40 people reused, so they are not
distinct identities beyond 40: use these folders for plumbing and memory, never for quality figures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from ..core import resources
from ..core.errors import InputError, OverwriteError


def write_person_folder(root, people: int, photos_per_person: int, seed: int = 0, side: tuple[int, int] = (140, 200),
                        quality: int = 90) -> Path:
    """Write ``root/<person>/<k>.jpg``: ``people × photos_per_person`` jittered ORL photos (person ``p`` shows ORL
    person ``p mod 40``; photo ``k`` starts from that person's photo ``k mod 10``).

    Jitter per photo (seeded): height resampled to ``side`` pixels (uniform), rotation ±6°, shift ±4 % of the side,
    brightness ×0.85–1.15; grey as ORL, saved as JPEG. ``root`` must not exist yet (nothing is overwritten).

    Returns ``root``.
    """
    root = Path(root)
    if people < 1 or photos_per_person < 1:
        raise InputError(f"people and photos_per_person must be ≥ 1, got {people} and {photos_per_person}.")
    if root.exists():
        raise OverwriteError(f"{root} exists; write_person_folder makes a new folder (choose another path).")
    orl = resources.orl_dir()
    sources = {(p, k): Image.open(orl / f"s{p + 1}" / f"{k + 1}.pgm").convert("L") for p in range(40)
               for k in range(10)}
    rng = np.random.default_rng(seed)
    tmp = root.with_name(root.name + ".part")
    for p in range(people):
        d = tmp / f"p{p:05d}"
        d.mkdir(parents=True, exist_ok=True)
        for k in range(photos_per_person):
            im = sources[(p % 40, k % 10)]
            h = int(rng.integers(side[0], side[1] + 1))
            w = round(h * im.width / im.height)
            im = im.resize((w, h), Image.BICUBIC)
            angle, dx, dy = rng.uniform(-6, 6), rng.uniform(-0.04, 0.04) * w, rng.uniform(-0.04, 0.04) * h
            im = im.rotate(angle, resample=Image.BICUBIC, translate=(dx, dy), fillcolor=128)
            im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.85, 1.15))
            im.save(d / f"{k:04d}.jpg", quality=quality)
    tmp.rename(root)
    return root
