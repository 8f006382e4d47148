# One backup's chain, checked before anything is extracted (openstack-ha-backup-prepare,
# -verify and -restore include this; rendered from files/templates/backup/_chain.py).
#     python3 -c "$CHAIN_PY" DIR ID|latest [--resolve] [--restore]
# --resolve: print the backup's id only (latest: the newest taken without error and not
# failed by its verification). Else every link, full first, each manifest's parent followed:
# "link<TAB>id<TAB>kind<TAB>artifact", then "id<TAB>ID" and "position<TAB>uuid:seqno" (or "-");
# each artifact's sha256 checked against its manifest and its .sha256 file. --restore also
# refuses a backup without galera-info, a full that failed its verification, links of two
# clusters (operations/backup_plan.py restore() decides the same from the controller).
# A refusal: exit 1, one line on stderr naming the backup and the fix.
import glob
import hashlib
import json
import os
import sys

SUFFIX = ".manifest.json"
directory, wanted, flags = sys.argv[1], sys.argv[2], sys.argv[3:]


def refuse(msg):
    print(f"openstack-ha-backup: {msg}", file=sys.stderr)
    sys.exit(1)


manifests, broken = {}, {}
for path in sorted(glob.glob(os.path.join(directory, "*" + SUFFIX))):
    name = os.path.basename(path)[: -len(SUFFIX)]
    try:
        with open(path) as f:
            m = json.load(f)
        if not isinstance(m, dict) or m.get("id") != name:
            raise ValueError("its id is not its file's name")
        manifests[name] = m
    except (OSError, ValueError) as exc:
        broken[name] = str(exc).splitlines()[0][:80]


def good(m):
    return m.get("status") == "ok" and m.get("verified") is not False


if wanted == "latest":
    ok = sorted((m for m in manifests.values() if good(m)), key=lambda m: str(m.get("started")))
    if not ok:
        refuse(f"no good backup in {directory} (take one: openstack-ha-backup full)")
    wanted = ok[-1]["id"]
if wanted in broken:
    refuse(f"{wanted}: its manifest is broken ({broken[wanted]}): take it from the copy of the backups")
if wanted not in manifests:
    refuse(f"no backup named {wanted} in {directory} (its manifest {wanted}{SUFFIX} is not there)")
if "--resolve" in flags:
    print(wanted)
    sys.exit(0)

chain = [manifests[wanted]]
while chain[-1].get("kind") == "incremental":
    cur = chain[-1]
    pid = cur.get("parent")
    if pid in broken:
        refuse(f"broken chain: {cur['id']} applies on {pid}, whose manifest is broken ({broken[pid]}): "
               "take it from the copy of the backups, or restore a full backup")
    if pid not in manifests:
        refuse(f"broken chain: {cur['id']} applies on {pid}, which is not in {directory}: "
               "bring it back from the copy of the backups, or restore a full backup")
    parent = manifests[pid]
    if parent in chain:
        refuse(f"broken chain: {cur['id']}'s parents loop back to {pid}: restore a full backup")
    if parent.get("status") != "ok":
        refuse(f"broken chain: {cur['id']} applies on {pid}, which failed ({parent.get('error')}): restore a full backup")
    lsn, plsn = cur.get("lsn") or {}, parent.get("lsn") or {}
    if lsn.get("from") is not None and plsn.get("to") is not None and lsn["from"] != plsn["to"]:
        refuse(f"broken chain: {cur['id']} starts at LSN {lsn['from']}, its parent {pid} ends at {plsn['to']}: "
               "restore a full backup")
    chain.append(parent)
chain.reverse()
target = chain[-1]
if target.get("status") != "ok":
    refuse(f"{target['id']} failed when it was taken ({target.get('error')}): restore another backup")
if "--restore" in flags:
    if chain[0].get("verified") is False:
        refuse(f"{chain[0]['id']} failed its verification ({chain[0].get('verify_note')}): restore another backup")
    if not target.get("galera"):
        refuse(f"{target['id']} was taken without galera-info: its position is unknown, grastate.dat cannot be "
               "written (restore a backup taken with --galera-info)")
    uuids = {m["galera"]["uuid"] for m in chain if m.get("galera")}
    if len(uuids) > 1:
        refuse(f"{target['id']}'s chain holds backups of {len(uuids)} clusters ({', '.join(sorted(uuids))}): "
               "restore a full backup")

for m in chain:
    art = os.path.join(directory, str(m.get("artifact")))
    if not m.get("artifact") or not os.path.isfile(art):
        refuse(f"{m['id']}: artifact {art} is missing: bring it back from the copy of the backups")
    try:
        with open(art + ".sha256") as f:
            recorded = (f.read().split() or [None])[0]
    except OSError:
        recorded = None
    h = hashlib.sha256()
    with open(art, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    got = h.hexdigest()
    if got != m.get("sha256"):
        refuse(f"{m['id']}: sha256 of {art} is {got[:12]}..., its manifest says {str(m.get('sha256'))[:12]}...: "
               "the artifact changed since it was taken; take it from the copy of the backups")
    if recorded != got:
        refuse(f"{m['id']}: {art}.sha256 says {str(recorded)[:12]}..., the artifact's sha256 is {got[:12]}...: "
               "take both from the copy of the backups")
    print(f"link\t{m['id']}\t{m['kind']}\t{m['artifact']}")
g = target.get("galera")
print(f"id\t{target['id']}")
print(f"position\t{g['uuid']}:{g['seqno']}" if g else "position\t-")
