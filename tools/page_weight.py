"""Measure what each page of the built book makes a browser download (the page and the scripts, style sheets and
images it names; fonts a style sheet asks for later are not counted) and the size of the whole build.

    python tools/page_weight.py _build/html --json results/measured/page_weight.json

The reproducing chapter renders that file; tests/book/test_browser.py checks the same bound in a real browser.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from normface_lib.core.resources import write_json  # noqa: E402

#: the attributes through which a page names what it loads
_REFS = re.compile(r'<(?:script|img|link)\b[^>]*?\b(?:src|href)="([^"#]+)"', re.I)


def page_weights(html_root: Path) -> dict:
    """``{"total_mib", "pages": {page: {"mib", "files"}}}`` for every HTML page under ``html_root`` (a built book)."""
    html_root = Path(html_root)
    if not (html_root / "index.html").is_file():
        raise SystemExit(f"{html_root} is not a built book (no index.html); run `make book` first.")
    pages = {}
    for page in sorted(html_root.rglob("*.html")):
        rel = page.relative_to(html_root).as_posix()
        text = page.read_text(encoding="utf-8", errors="replace")
        files = {page}
        for ref in _REFS.findall(text):
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc or ref.startswith("data:"):
                continue
            f = (page.parent / unquote(parts.path)).resolve()
            if f.is_file() and f.suffix != ".html":
                files.add(f)
        pages[rel] = {"mib": round(sum(f.stat().st_size for f in files) / 2 ** 20, 2), "files": len(files)}
    total = sum(f.stat().st_size for f in html_root.rglob("*") if f.is_file())
    return {"total_mib": round(total / 2 ** 20, 1), "pages": pages}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("html", type=Path, help="the built book, e.g. _build/html")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    w = page_weights(args.html)
    for k, v in sorted(w["pages"].items(), key=lambda kv: -kv[1]["mib"]):
        print(f"{v['mib']:7.2f} MiB  {v['files']:3d} files  {k}")
    print(f"whole build: {w['total_mib']} MiB")
    if args.json:
        write_json(w, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
