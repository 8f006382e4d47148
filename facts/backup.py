"""Backups on backup_node: the manifests of its backup directory and the schedule's period; the
sha256 of artifacts as found now (restore.py)."""

from __future__ import annotations

import json
import shlex
from datetime import datetime, timezone

from pyinfra.api import FactBase

from facts.backup_manifest import Manifest, load, to_dict
from facts.probe import NO_OUTPUT

MARK = "=== manifest "  # one line before each manifest's text
PERIOD = "=== elapse "  # the full calendar's next elapses (systemd-analyze calendar)


class BackupManifests(FactBase):
    """
    Every backup manifest of a backup directory (facts.backup_manifest's format, loaded: a
    broken one is listed with why), and the next two times the full backup's calendar elapses
    (its period, for the age of the newest backup):

    .. code:: python

        {"manifests": [{"id": "20261206T010000Z-full", "kind": "full", "status": "ok", ...}],
         "broken": ["x.manifest.json: broken backup manifest: kind missing"],
         "elapses": ["2026-12-07T01:00:00+00:00", "2026-12-08T01:00:00+00:00"],
         "error": None}

    A directory that does not exist yet has no manifests (no error).
    """

    @staticmethod
    def default():
        return {"manifests": [], "broken": [], "elapses": [], "error": NO_OUTPUT}

    def command(self, directory: str, calendar: str, suffix: str = ".manifest.json"):
        d, cal = shlex.quote(directory), shlex.quote(calendar)
        return (f"TZ=UTC systemd-analyze calendar --iterations=2 {cal} 2>/dev/null "
                f"| sed -n 's/^ *\\(Next elapse\\|Iter\\. #2\\): \\w\\{{3\\}} \\(.*\\) UTC$/{PERIOD}\\2/p'; "
                f"if [ -d {d} ]; then for f in {d}/*{suffix}; do [ -e \"$f\" ] || continue; "
                f"echo \"{MARK}${{f##*/}}\"; cat \"$f\"; echo; done; fi; echo '=== end'")

    def process(self, output):
        manifests, broken, elapses, name, text = [], [], [], None, []

        def flush():
            if name is not None:
                got = load("\n".join(text), name)
                (manifests if not hasattr(got, "why") else broken).append(got)

        for line in output:
            if line.startswith(PERIOD):
                try:
                    elapses.append(datetime.strptime(line[len(PERIOD):], "%Y-%m-%d %H:%M:%S")
                                   .replace(tzinfo=timezone.utc).isoformat())
                except ValueError:
                    pass
            elif line.startswith(MARK) or line == "=== end":
                flush()
                name, text = (line[len(MARK):], []) if line.startswith(MARK) else (None, [])
            elif name is not None:
                text.append(line)
        if "=== end" not in output:
            return {**self.default(), "error": "backup manifests: the listing did not finish"}
        return {"manifests": [to_dict(m) for m in manifests], "broken": [str(b) for b in broken],
                "elapses": elapses, "error": None}


def manifests_of(fact: dict) -> list[Manifest]:
    """The Manifests of a BackupManifests result (its broken ones are in fact["broken"])."""
    loaded = (load(json.dumps(d), str(d.get("id", "?"))) for d in fact.get("manifests") or [])
    return [m for m in loaded if isinstance(m, Manifest)]


class BackupSpace(FactBase):
    """
    The free space where the backups go (the nearest existing directory) and the size of the
    datadir (a full backup's size before there is one), in bytes:

    .. code:: python

        {"free_bytes": 80530636800, "datadir_bytes": 290753575, "error": None}
    """

    @staticmethod
    def default():
        return {"free_bytes": None, "datadir_bytes": None, "error": NO_OUTPUT}

    def command(self, directory: str, datadir: str):
        return (f"d={shlex.quote(directory)}; while [ ! -d \"$d\" ]; do d=$(dirname \"$d\"); done; "
                f"echo free=$(df --output=avail -B1 \"$d\" | tail -n1 | tr -d ' '); "
                f"echo datadir=$(du -sb {shlex.quote(datadir)} 2>/dev/null | cut -f1)")

    def process(self, output):
        values = dict(line.split("=", 1) for line in output if "=" in line)
        free, datadir = values.get("free", ""), values.get("datadir", "")
        if not free.isdigit():
            return {**self.default(), "error": f"backup space: no free space read ({free or 'nothing'})"}
        return {"free_bytes": int(free), "datadir_bytes": int(datadir) if datadir.isdigit() else None, "error": None}


class BackupArtifactSums(FactBase):
    """
    The sha256 of named artifacts of a backup directory as found now (None: missing):

    .. code:: python

        {"sums": {"20261206T010000Z-full.mbstream.gz": "9f86...", "gone.mbstream.gz": None}, "error": None}
    """

    @staticmethod
    def default():
        return {"sums": {}, "error": NO_OUTPUT}

    def command(self, directory: str, names: tuple = ()):
        files = " ".join(shlex.quote(n) for n in names)
        return (f"cd {shlex.quote(directory)} && for f in {files}; do if [ -f \"$f\" ]; then "
                "printf 'sum=%s\\n' \"$(sha256sum -- \"$f\" | cut -d' ' -f1) $f\"; else echo \"missing=$f\"; fi; done; "
                "echo end=yes")

    def process(self, output):
        if not output or output[-1].strip() != "end=yes":
            return {**self.default(), "error": "backup artifact sums: output cut short (no end marker)"}
        sums = {}
        for line in output:
            kind, _, rest = line.strip().partition("=")
            if kind == "sum":
                digest, _, name = rest.partition(" ")
                sums[name] = digest
            elif kind == "missing":
                sums[rest] = None
        return {"sums": sums, "error": None}
