# A restored node's table sums (the JSON of _table_sums.py) against its backup's manifest,
# table by table: the differences as a table, then the verdict on the last line, exit 1 on
# any difference. The same comparison and lines as facts/backup_manifest.py compare() (a unit
# test holds the two to one output); rendered from files/templates/backup/_compare.py.
#     python3 -c "$COMPARE_PY" MANIFEST SUMS
import json
import sys

with open(sys.argv[1]) as f:
    manifest = json.load(f)
with open(sys.argv[2]) as f:
    restored = json.load(f)
want = manifest.get("tables") or {}
if not want:
    sys.exit(f"openstack-ha-restore: {manifest.get('id')} has no table sums in its manifest "
             "(not verified yet: run openstack-ha-backup-verify on it first)")
diffs = []
for name in sorted(set(want) | set(restored)):
    if name not in restored:
        diffs.append((name, "missing", f"{want[name]['rows']} rows", "absent"))
        continue
    got = restored[name]
    if name not in want:
        diffs.append((name, "extra", "absent", f"{got.get('rows')} rows"))
        continue
    if got.get("rows") != want[name]["rows"]:
        diffs.append((name, "rows", str(want[name]["rows"]), str(got.get("rows"))))
    if got.get("checksum") != want[name]["checksum"]:
        diffs.append((name, "checksum", want[name]["checksum"], str(got.get("checksum"))))
out = [f"{'table':40} {'what':9} {'backup':>20} {'restored':>20}"] if diffs else []
out += [f"{t:40} {w:9} {e:>20} {g:>20}" for t, w, e, g in diffs]
verdict = ("the checksums match" if not diffs else
           f"{len(diffs)} difference(s): the restored database is not the backup's")
out.append(f"compared {len(want)} tables, {sum(t['rows'] for t in want.values())} rows: {verdict}")
print("\n".join(out))
sys.exit(1 if diffs else 0)
