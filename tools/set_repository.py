"""Write the repository of ``_config.yml`` (``repository.url`` and ``repository.branch``, the one setting the book's
launch buttons use) into the Colab install cell of every notebook, adding the cell where it is missing.

    python tools/set_repository.py            # after changing repository.url in _config.yml (e.g. in a fork)
    python tools/set_repository.py --check    # exit 1 if a notebook's cell does not match (the tests run this)

The cell installs normface with version *ranges* (``pyproject.toml``), so Colab keeps its own torch; it does nothing
outside Colab.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MARK = "# In Colab, install normface first"
NOTEBOOKS = ("notebooks/*.ipynb", "book/*.ipynb")


def repository() -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``."""
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return str(repo["url"]).rstrip("/"), str(repo.get("branch", "main"))


def face_packages() -> list[str]:
    """The pinned face packages of ``data/face-packages.txt`` (``name==version`` lines)."""
    lines = (ROOT / "data" / "face-packages.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def colab_cell_source(url: str, branch: str) -> str:
    return (f"{MARK} (elsewhere this cell does nothing). The repository is the one in _config.yml\n"
            "# (repository.url; `python tools/set_repository.py` writes it here). Version ranges: Colab keeps its torch.\n"
            "import subprocess, sys\n"
            "if \"google.colab\" in sys.modules:\n"
            "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\",\n"
            f"                    \"normface[book] @ git+{url}@{branch}\"], check=True)\n"
            "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"--no-deps\",\n"
            f"                    {', '.join(json.dumps(p) for p in face_packages())}], check=True)")


def _cell(source: str) -> dict:
    lines = source.split("\n")
    return {"cell_type": "code", "execution_count": None, "id": "colab-install",
            "metadata": {"tags": ["remove-cell"]}, "outputs": [],
            "source": [ln + "\n" for ln in lines[:-1]] + [lines[-1]]}


def update(check: bool = False) -> list[str]:
    """Bring every notebook's Colab cell in line with ``_config.yml``; return the notebooks that were (``check``:
    would be) changed."""
    want = colab_cell_source(*repository())
    changed = []
    for pattern in NOTEBOOKS:
        for path in sorted(ROOT.glob(pattern)):
            nb = json.loads(path.read_text())
            cells = nb["cells"]
            idx = next((i for i, c in enumerate(cells) if "".join(c["source"]).startswith(MARK)), None)
            if idx is not None and "".join(cells[idx]["source"]) == want:
                continue
            changed.append(str(path.relative_to(ROOT)))
            if check:
                continue
            if idx is None:  # after the title cell
                cells.insert(1, _cell(want))
            else:
                cells[idx]["source"] = _cell(want)["source"]
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False))
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report notebooks whose cell differs")
    args = ap.parse_args(argv)
    changed = update(args.check)
    for p in changed:
        print(("differs: " if args.check else "updated: ") + p)
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
