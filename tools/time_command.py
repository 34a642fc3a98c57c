"""Run a command, measure its wall-clock time, and record it (with provenance) in a JSON file of timings.

    python tools/time_command.py --name "make test (fresh clone)" --out results/measured/commands.json -- make test

The reproducing chapter renders that file; timings are never typed by hand. The entry keeps the exit status, so a
failed run cannot pass for a timing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from normface_lib.core.provenance import machine  # noqa: E402
from normface_lib.core.resources import write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True, help="what the entry is called in the table")
    ap.add_argument("--out", required=True, help="JSON file to add the entry to (created if missing)")
    ap.add_argument("--cwd", default=".", help="folder to run the command in")
    ap.add_argument("--note", default="", help="one line on the conditions (fresh clone, emulation settings, ...)")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("give the command after --")
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, cwd=args.cwd)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    table = json.loads(out.read_text()) if out.exists() else {}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=args.cwd, capture_output=True, text=True).stdout.strip()
    table[args.name] = {"command": " ".join(cmd), "seconds": seconds, "exit_status": rc, "note": args.note,
                        "commit": commit, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "machine": machine()}
    write_json(table, out)
    print(f"{args.name}: {seconds / 60:.1f} min, exit status {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
