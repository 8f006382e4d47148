# Per-table row counts and CHECKSUM TABLE of every base table (system-versioned too) outside mysql,
# information_schema, performance_schema and sys, as JSON {"db.table": {"rows": n,
# "checksum": "c"}} (facts/backup_manifest.py's `tables`). The one place of this SQL: the
# verify step sums a throwaway mariadbd with it, openstack-ha-restore --compare a restored
# node (rendered from files/templates/backup/_table_sums.py).
#     python3 -c "$SUMS_PY" [mysql options, e.g. --socket=PATH]
import json
import subprocess
import sys

MYSQL = ["mysql", "-N", "-B", "--connect-timeout=10", *sys.argv[1:]]
SKIPPED = ("mysql", "information_schema", "performance_schema", "sys")
BATCH = 100  # tables per mysql call


def query(sql):
    done = subprocess.run(MYSQL + ["-e", sql], capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no answer"])[-1][:200]
        sys.exit(f"table sums: mysql failed ({said})")
    return done.stdout.splitlines()


def ident(name):
    return "`" + name.replace("`", "``") + "`"


skipped = ", ".join(f"'{s}'" for s in SKIPPED)
tables = [line.split("\t") for line in query(
    "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') "
    f"AND TABLE_SCHEMA NOT IN ({skipped}) ORDER BY TABLE_SCHEMA, TABLE_NAME")]
sums = {}
for i in range(0, len(tables), BATCH):
    batch = tables[i:i + BATCH]
    lines = query("; ".join(f"SELECT COUNT(*) FROM {ident(db)}.{ident(t)}; CHECKSUM TABLE {ident(db)}.{ident(t)}"
                            for db, t in batch))
    if len(lines) != 2 * len(batch):
        sys.exit(f"table sums: mysql answered {len(lines)} lines for {len(batch)} tables")
    for n, (db, t) in enumerate(batch):
        sums[f"{db}.{t}"] = {"rows": int(lines[2 * n]), "checksum": lines[2 * n + 1].rsplit("\t", 1)[-1]}
json.dump(sums, sys.stdout, indent=1, sort_keys=True)
print()
