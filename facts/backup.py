"""Backups on backup_node: the manifests of its backup directory and the schedule's period."""

from __future__ import annotations

import shlex
from datetime import datetime, timezone

from pyinfra.api import FactBase

from facts.backup_manifest import load, to_dict
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
