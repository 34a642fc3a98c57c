"""A Sphinx extension of the book: every page loads each inline script once, and the build ships nothing no page
loads.

Jupyter Book 1 sets sphinx-thebe up twice, so each page declared ``const THEBE_JS_URL`` twice and a browser reported
``SyntaxError: Identifier 'THEBE_JS_URL' has already been declared`` on every page (tests/book/test_browser.py
checks for console errors). The theme also copies source maps (``*.map``, 2 MB, read only by a developer's tools)
and its translation catalogues (``_static/locales``, read only at build time) into the output; they are removed once
the build has finished."""
from __future__ import annotations

import shutil
from pathlib import Path


def _unique_scripts(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", None) or "",  # an inline script's filename is None or ""
               tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(script)
    context["script_files"] = kept


def _prune(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    for f in static.rglob("*.map"):
        f.unlink()
    shutil.rmtree(static / "locales", ignore_errors=True)


def setup(app):
    app.connect("html-page-context", _unique_scripts)
    app.connect("build-finished", _prune)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
