"""The book built once for the tests of this folder (from the committed, executed notebooks)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """The book's HTML folder: ``$NORMFACE_BUILT_BOOK`` when set (a build made already, e.g. by ``make book``),
    else built here from the committed notebooks."""
    if os.environ.get("NORMFACE_BUILT_BOOK"):
        return Path(os.environ["NORMFACE_BUILT_BOOK"])
    out = tmp_path_factory.mktemp("book")
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg["execute"]["execute_notebooks"] = "off"  # nbval executes the notebooks; here we build from their outputs
    # a local extension's folder is read relative to the configuration file, which moves to out/
    cfg["sphinx"]["local_extensions"] = {k: str(ROOT / v) for k, v in cfg["sphinx"].get("local_extensions", {}).items()}
    cfg_path = out / "_config.yml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    jb = Path(sys.executable).with_name("jupyter-book")
    r = subprocess.run([str(jb), "build", str(ROOT), "--config", str(cfg_path), "--path-output", str(out), "-W",
                        "--keep-going"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, f"jupyter-book build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return out / "_build" / "html"
