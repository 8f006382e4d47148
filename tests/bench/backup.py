"""make bench-backup: what a backup costs and what a restore takes, on the lab.

The lab's database is grown to a stated size (a table of 1 KiB rows, each eight random SHA-512
hex digests: they compress about 2:1, like text; OpenStack's rows compress better), then on the
backup node (node03):

- the floor: a plain copy of the datadir on the same node (`cp -a` to /var/tmp, then removed);
- a full backup (the backup script alone: desync, mariadb-backup streamed and compressed with
  its sha256, resync, the copy to node02): seconds, artifact size, MB/s of the datadir;
- its verification (a copy prepared, a throwaway mariadbd, every table summed);
- an incremental after 5000 more writes;
- a disaster restore of the full backup (mariadb stopped on every node, restore.py): seconds
  until every node is Synced again;
- the RPO the site's schedule gives: the incremental calendar's period plus the incremental's
  own time.

Figures, not assertions. The lab is left deployed and healthy, its data that of the backup
without the bench's table.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lab  # noqa: E402
from config import backup as backup_config  # noqa: E402
from lab import drills, sitemodel  # noqa: E402
from lab.machines import sh  # noqa: E402
from tests.bench import records  # noqa: E402

TABLE_MB = 200  # the bench table's size: 1 KiB rows
MORE_WRITES = 4000


def timed(node: str, command: str) -> float:
    started = time.monotonic()
    sh(node, command, timeout=3600)
    return time.monotonic() - started


def grow() -> None:
    drills.sql("CREATE DATABASE IF NOT EXISTS bench_backup")
    drills.sql("CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY, v VARBINARY(1024)) ENGINE=InnoDB", database="bench_backup")
    have = int(drills.sql("SELECT COUNT(*) FROM t", database="bench_backup") or 0)
    want = TABLE_MB * 1024
    step = 20000
    for start in range(have + 1, want + 1, step):
        end = min(want, start + step - 1)
        digests = ", ".join(["SHA2(RAND(), 512)"] * 8)
        drills.sql(f"INSERT INTO t SELECT seq, CONCAT({digests}) FROM seq_{start}_to_{end}",
                   database="bench_backup", timeout=600)


def newest(node: str, directory: str) -> dict:
    ident = sh(node, f"cat {directory}/chain").strip()
    return json.loads(sh(node, f"cat {directory}/{ident}{backup_config.MANIFEST_SUFFIX}"))


def period_s(node: str, calendar: str) -> float:
    out = sh(node, f"TZ=UTC systemd-analyze calendar --iterations=2 '{calendar}'")
    stamps = [line.split(": ", 1)[1].split(" ", 1)[1].rsplit(" ", 1)[0] for line in out.splitlines()
              if line.strip().startswith(("Next elapse:", "Iter. #2:"))]
    a, b = (time.mktime(time.strptime(s, "%Y-%m-%d %H:%M:%S")) for s in stamps)
    return b - a


def main() -> int:
    lab.up(3)
    run = drills.deploy()
    if run.returncode != 0:
        print(drills.run_excerpt(run.stdout))
        raise SystemExit("bench-backup: the deploy failed")
    site = sitemodel.site()
    names = [c.name for c in site.controllers]
    node, directory = backup_config.node(names, site.data), site.data["backup_dir"]
    grow()
    datadir = int(sh(node, f"du -sb {backup_config.DATADIR} | cut -f1"))
    floor = timed(node, f"rm -rf /var/tmp/bench-floor && cp -a {backup_config.DATADIR} /var/tmp/bench-floor && sync")
    sh(node, "rm -rf /var/tmp/bench-floor")
    full_s = timed(node, f"{backup_config.SCRIPT} full")
    verify_s = timed(node, f"{backup_config.VERIFY} latest")
    full = newest(node, directory)
    drills.prepare_writes("bench_backup_more")
    session = drills.Session()
    try:
        for _ in range(MORE_WRITES):
            drills.write(session, "bench_backup_more", "more")
    finally:
        session.close()
    incremental_s = timed(node, f"{backup_config.SCRIPT} incremental")
    incremental = newest(node, directory)
    for n in reversed(names):
        drills.systemctl(n, "stop", "mariadb", timeout=300)
    started = time.monotonic()
    run = drills.pyinfra("-y", "inventories/lab.py", "restore.py", "--data", f"backup={full['id']}",
                         "--data", f"confirm={full['id']}", timeout=3600)
    restore_s = time.monotonic() - started
    if run.returncode != 0:
        print(drills.run_excerpt(run.stdout))
        raise SystemExit("bench-backup: the restore failed")
    drills.wait_healthy(300)
    for n in names:  # the data of before, set aside by the restore; the bench's table: not kept on the lab
        sh(n, "rm -rf /var/lib/mysql.before-restore-*")
    drills.sql("DROP DATABASE IF EXISTS bench_backup")
    rpo = period_s(node, site.data["backup_incremental_calendar"]) + incremental_s
    mb = 1024 * 1024
    figures = {"datadir_mb": datadir / mb, "floor_s": floor, "full_s": full_s, "full_mb": full["sizes"]["artifact_bytes"] / mb,
               "full_mb_per_s": datadir / mb / full_s, "verify_s": verify_s, "tables": len(full.get("tables") or {}),
               "incremental_s": incremental_s, "incremental_mb": incremental["sizes"]["artifact_bytes"] / mb,
               "restore_s": restore_s, "rpo_s": rpo}
    records.append("backup", f"{TABLE_MB} MB table", {
        "bench": "tests/bench/backup.py", "where": "the lab: 3 nodes (inventories/lab.py), the nodes' disks on this host's",
        "table_mb": TABLE_MB, "more_writes": MORE_WRITES, "compress": site.data["backup_compress"],
        "incremental_calendar": site.data["backup_incremental_calendar"]}, figures)
    print()
    print(f"datadir {figures['datadir_mb']:.0f} MB ({TABLE_MB} MB table); floor (cp -a of the datadir) {floor:.1f} s")
    print(f"full backup {full_s:.1f} s ({full_s / floor:.1f}x the floor), {figures['full_mb']:.1f} MB "
          f"({figures['full_mb_per_s']:.0f} MB/s of datadir); verify {verify_s:.1f} s")
    print(f"incremental after {MORE_WRITES} writes {incremental_s:.1f} s, {figures['incremental_mb']:.1f} MB")
    print(f"disaster restore (restore.py: restore, bootstrap, 2 SST joins) {restore_s:.1f} s")
    print(f"RPO with {site.data['backup_incremental_calendar']!r}: {rpo / 60:.0f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
