# Retention on the backup node, after each good backup (openstack-ha-backup includes this;
# rendered from files/templates/backup/_retention.py):
#     python3 -c "$RETENTION_PY" DIR DAYS
# Deletes the backups started more than DAYS days ago, except the newest verified full, the
# newest full, and every backup a kept incremental applies on: the rule of
# operations/backup_plan.py retention(), which tests/unit/test_backup_restore.py holds this to.
# A manifest that cannot be read is never deleted. Prints a line per deleted backup: its id,
# then its files' names (the copy host's are deleted by the same names).
import glob
import json
import os
import shutil
import sys
from datetime import datetime, timedelta, timezone

SUFFIX = ".manifest.json"


def started(m):
    return datetime.fromisoformat(m["started"].replace("Z", "+00:00"))


def expired(manifests, now, days):
    """The ids to delete, oldest first (manifests: the parsed JSON of each)."""
    by_id = {m["id"]: m for m in manifests}
    old = {m["id"] for m in manifests if started(m) < now - timedelta(days=days)}
    fulls = [m for m in manifests if m["kind"] == "full" and m["status"] == "ok"]
    verified = max((m for m in fulls if m.get("verified")), key=started, default=None)
    newest = max(fulls, key=started, default=None)
    keep = {m["id"] for m in manifests if m["id"] not in old}
    keep |= {m["id"] for m in (verified, newest) if m is not None}
    root = {}
    for m in manifests:
        seen, cur = set(), m
        while cur["kind"] == "incremental" and cur.get("parent") in by_id and cur["id"] not in seen:
            seen.add(cur["id"])
            cur = by_id[cur["parent"]]
        root[m["id"]] = cur["id"] if cur["kind"] == "full" else None
    keep |= {m["id"] for m in manifests if m["kind"] == "incremental" and m["status"] == "ok" and root[m["id"]] in keep}
    for kept in sorted(keep):
        cur, seen = by_id[kept], {kept}
        while cur["status"] == "ok" and cur["kind"] == "incremental" and cur.get("parent") in by_id \
                and cur["parent"] not in seen:
            cur = by_id[cur["parent"]]
            seen.add(cur["id"])
            keep.add(cur["id"])
    return [m["id"] for m in sorted(manifests, key=started) if m["id"] not in keep]


def files_of(m):
    """A backup's files in its directory: manifest, artifact and its sha256, LSN directory."""
    names = [m["id"] + SUFFIX, m["id"] + ".lsn"]
    if m.get("artifact"):
        names += [m["artifact"], m["artifact"] + ".sha256"]
    return names


if __name__ == "__main__":
    directory, days = sys.argv[1], int(sys.argv[2])
    manifests = []
    for path in sorted(glob.glob(os.path.join(directory, "*" + SUFFIX))):
        try:
            with open(path) as f:
                m = json.load(f)
            started(m), m["id"], m["kind"], m["status"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # never delete what cannot be read
        manifests.append(m)
    by_id = {m["id"]: m for m in manifests}
    for ident in expired(manifests, datetime.now(timezone.utc), days):
        for name in files_of(by_id[ident]):
            path = os.path.join(directory, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        print(ident, *files_of(by_id[ident]))
