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
    from normface_lib.train import profile_config, train

    out = tmp_path_factory.mktemp("run")
    config = profile_config("quick", steps=6, batch_size=8, morph_bank_size=8, identity_every=0, checkpoint_every=6,
                            eval_splits=())
    train(config, out, progress=False)
    return out
