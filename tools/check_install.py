"""``pip check`` for the installed environment, except the face packages of ``data/face-packages.txt``: they are
installed without their dependencies on purpose (normface reads their photo files and never imports them), so their
unmet requirements are expected. Any other broken requirement fails (exit 1)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    names = {re.split(r"[=<>]", ln.strip(), maxsplit=1)[0].lower()
             for ln in (ROOT / "data" / "face-packages.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")}
    r = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("No broken requirements")]
    broken = [ln for ln in lines if ln.split()[0].lower() not in names]
    for ln in broken:
        print(ln)
    if broken:
        print(f"check_install: {len(broken)} broken requirement(s) outside the face packages")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
