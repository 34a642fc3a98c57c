"""The book builds warning-free from the committed notebooks, and its pages load nothing from the network."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg["execute"]["execute_notebooks"] = "off"  # nbval executes the notebooks; here we build from their outputs
    cfg_path = out / "_config.yml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    jb = Path(sys.executable).with_name("jupyter-book")
    r = subprocess.run([str(jb), "build", str(ROOT), "--config", str(cfg_path), "--path-output", str(out), "-W",
                        "--keep-going"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, f"jupyter-book build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return out / "_build" / "html"


def test_book_has_every_page(built_book):
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]] + [c["file"] for c in toc["chapters"]]
    for page in pages:
        assert (built_book / f"{page}.html").exists(), f"{page}.html missing from the built book"
    assert (built_book / "index.html").exists()


def test_pages_load_nothing_from_the_network(built_book):
    offenders = []
    for html in built_book.rglob("*.html"):
        text = html.read_text(errors="replace")
        for m in re.finditer(r'<(script|link|img)[^>]+(src|href)="(https?:)?//[^"]+"', text):
            tag = m.group(0)
            if m.group(1) == "link" and 'rel="stylesheet"' not in tag and "preload" not in tag:
                continue  # plain hyperlinks in <link> (e.g. canonical) are not loaded
            offenders.append(f"{html.name}: {tag[:120]}")
    assert not offenders, "pages load remote resources:\n" + "\n".join(offenders[:20])


def test_maths_and_widgets_are_served_locally(built_book):
    method = (built_book / "book" / "method.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in method
    assert (built_book / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert (built_book / "_static" / "embed-amd.js").exists() and (built_book / "_static" / "require.js").exists()
