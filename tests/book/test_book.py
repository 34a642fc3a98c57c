"""The book builds warning-free from the committed notebooks, and its pages load nothing from the network."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


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
