"""The records a bench keeps in the repository, beside the documentation's figures.

A record file is docs/bench-<name>/records.json, a JSON list of runs, oldest first:

    {"at": "2026-11-27 06:14 UTC", "commit": "<sha of the code measured>",
     "source": "bench" | "recorded from commit <sha>'s message, not re-run: '<its words>'",
     "label": "<what the run measured, as the documentation's row names it>",
     "config": {<the settings it ran under>}, "figures": {<what it measured>}}

The failover bench keeps its own richer file (docs/bench-failover/records.json, every request);
its runs carry their configuration in figures["config"]. tests/bench/figures.py turns the
records into the tables of docs/failover.md and docs/design.md; tests/unit/test_figures.py checks them. No lab here:
this module is imported by the unit tier.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def path_of(name: str) -> Path:
    return DOCS / f"bench-{name}" / "records.json"


def load(name: str) -> list[dict]:
    path = path_of(name)
    return json.loads(path.read_text()) if path.exists() else []


def commit() -> str:
    """The code measured: HEAD, with "+changes" when the work tree differs from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    head = git("rev-parse", "HEAD").stdout.strip() or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no").stdout.strip() else "")


def append(name: str, label: str, config: dict, figures: dict) -> Path:
    """Add one run of bench `name` to its record file (created when missing)."""
    path = path_of(name)
    runs = load(name)
    runs.append({"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit(), "source": "bench",
                 "label": label, "config": config, "figures": figures})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(runs, indent=1) + "\n")
    return path
