"""The restore tooling of MariaDB backups (issue 18 items 3, 5, 6): the prepare, the verify step
and the restore scripts (files/templates/backup/), rendered for the lab and prod.py offline,
accepted by bash -n, and run here against fakes of mbstream (tar), mariadb-backup, mariadbd
(no daemon: a sleeping process), mysql (answering from a JSON table), ssh and scp; the disaster
restore's decision (operations/backup_plan.py disaster()) as a table of refusals; restore.py's
operations planned offline (tests/unit/opkit.py). The lab runs the real binaries.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

import opkit
from unitkit import FAKE_SECRETS, lab_data, prod_data
from config import backup, files
from config.preflight import check
from config.site import build_site
from facts.backup_manifest import Manifest, TableSum, compare, load, to_dict
from operations.backup_plan import disaster

REPO = Path(__file__).resolve().parents[2]
PIECES = sorted((REPO / "files" / "templates" / "backup").glob("_*.py"))
UUID = "a55b2b90-e8f4-11f1-9311-667e3b65f41b"
OTHER = "b66c3c01-0000-11f1-9311-667e3b65f41b"
ORDER = ["node01", "node02", "node03"]
TABLES = {"keystone.user": {"rows": 12, "checksum": "3a1f0c22"}, "nova.instances": {"rows": 3, "checksum": "991"}}


# --- rendered, and accepted by bash and python ------------------------------------------------------

def sites():
    h, g = prod_data()
    g["backup_enabled"] = True
    lh, lg = lab_data()
    lg["backup_enabled"] = True
    zh, zg = prod_data()
    zg.update(backup_enabled=True, backup_compress="zstd", backup_copy_to="backup@192.0.2.9", backup_copy_dir="/srv/copies")
    return {"prod": (h, g), "lab": (lh, lg), "prod-zstd-ssh": (zh, zg)}


@pytest.mark.parametrize("name", list(sites()))
@pytest.mark.parametrize("path", list(backup.TOOLS), ids=[Path(p).name for p in backup.TOOLS])
def test_each_tool_renders_and_bash_accepts_it(name, path, tmp_path):
    h, g = sites()[name]
    assert not check(h, g, secrets=dict(FAKE_SECRETS)).errors
    text = files.render_backup_tool(build_site(h, g), path)
    assert "{{" not in text and "{%" not in text and text.startswith("#!/bin/bash\n")
    script = tmp_path / "tool"
    script.write_text(text)
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"DIR={build_site(h, g)['backup_dir']}" in text
    if path == backup.VERIFY:
        want = "backup@192.0.2.9:/srv/copies/" if "zstd" in name else ":/var/backups/openstack-ha/mariadb/"
        assert want in text and f"scp -q -p {backup.SSH_OPTIONS} " in text and "-o BatchMode=yes" in backup.SSH_OPTIONS
        # the throwaway server: no defaults, no network, wsrep off, its own socket and pid file
        assert re.search(r"mariadbd --no-defaults --user=mysql .*--socket=\"\$tmp/mysqld.sock\" "
                         r"--pid-file=\"\$tmp/mysqld.pid\" \\\n\s+--skip-networking --wsrep-on=OFF", text)
    if path == backup.PREPARE:
        assert ("zstd -q -dc <" if "zstd" in name else "gzip -dc <") in text


def embedded(text: str, var: str) -> str:
    """The python a rendered script runs as $var (its quoted here-document)."""
    return re.search(rf"read -r -d '' {var} <<'PY' \|\| true\n(.*?)\nPY\n", text, re.S).group(1)


def test_the_python_parts_compile_and_are_the_pieces_themselves():
    h, g = sites()["prod"]
    site = build_site(h, g)
    seen = set()
    node = backup.node([c.name for c in site.controllers], site.data)
    scripts = {f.path: f.content for f in files.managed_files(site, node, {}, "backup") if f.content.startswith("#!/bin/bash")}
    assert set(scripts) == {backup.SCRIPT, *backup.TOOLS}
    for path, text in scripts.items():
        for var in re.findall(r"read -r -d '' (\w+) <<'PY'", text):
            code = embedded(text, var)
            compile(code, f"{path}:{var}", "exec")
            piece = next(p for p in PIECES if p.read_text().rstrip("\n") == code)
            seen.add(piece.name)
    assert seen == {p.name for p in PIECES}  # each piece is used, none is a stray copy


# --- the host-side scripts against fakes --------------------------------------------------------------

FAKE_MYSQL = r'''#!/usr/bin/env python3
# answers the table sums' queries from $FAKE_DB ({"db.t": [rows, checksum]}); $FAKE_DOWN: refuses
import json, os, re, sys
if os.environ.get("FAKE_DOWN") and os.path.exists(os.environ["FAKE_DOWN"]):
    sys.exit("ERROR 2002 (HY000): Can't connect to local server")
sock = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--socket=")), None)
if sock is not None and not os.path.exists(sock):
    sys.exit("ERROR 2002 (HY000): Can't connect through socket")
db = json.load(open(os.environ["FAKE_DB"]))
sql = sys.argv[sys.argv.index("-e") + 1]
if sql == "SELECT 1":
    print(1)
elif "information_schema.TABLES" in sql:
    for name in sorted(db):
        print("\t".join(name.split(".", 1)))
else:
    for stmt in sql.split("; "):
        d, t = re.findall(r"`((?:[^`]|``)*)`", stmt)
        rows, checksum = db[f"{d}.{t}"]
        print(rows if stmt.startswith("SELECT COUNT(*)") else f"{d}.{t}\t{checksum}")
'''

FAKES = {
    "mbstream": 'case "$1 $2" in "-x -C") exec tar -x -f - -C "$3";; esac; exit 2',
    # the prepare: each call logged in the target (the full, then each incremental dir's name)
    "mariadb-backup": 'for a in "$@"; do case "$a" in --target-dir=*) t=${a#*=};; --incremental-dir=*) i=${a#*=};; esac; done\n'
                      '[ -n "${FAKE_PREPARE_FAILS:-}" ] && { echo "[ERROR] InnoDB: corrupt page" >&2; exit 1; }\n'
                      'if [ -n "${i:-}" ]; then basename "$i"; else echo full; fi >> "$t/prepared.log"',
    # a mariadbd that listens on nothing: its socket is a file, it sleeps until killed
    "mariadbd": 'for a in "$@"; do case "$a" in --socket=*) s=${a#*=};; --pid-file=*) p=${a#*=};; --datadir=*) d=${a#*=};; esac; done\n'
                'echo "$@" > "$FAKE_LOG.mariadbd"\n'
                '[ -n "${FAKE_START_FAILS:-}" ] && { echo "[ERROR] Aborting" >> "${s%/*}/error.log"; exit 1; }\n'
                'test -f "$d/prepared.log" || exit 1\n'
                'echo $$ > "$p"; touch "$s"; exec -a "fake-mariadbd $d" sleep 60',
    "ssh": "exit 0",
    "scp": 'args=(); skip=; for a in "$@"; do [ -n "$skip" ] && { skip=; continue; }; '
           'case "$a" in -o|-i) skip=1;; -*) ;; *) args+=("$a");; esac; done; '
           'cp "${args[@]:0:${#args[@]}-1}" "${args[-1]#*:}"',
    "chgrp": 'echo "$@" >> "$FAKE_LOG.chgrp"',
    # mysql traverses every directory but $FAKE_CLOSED (runuser -u mysql -- test -x DIR)
    "runuser": '[ -n "${FAKE_CLOSED:-}" ] && [ "$6" = "$FAKE_CLOSED" ] && exit 1; exit 0',
    "chown": "exit 0",
    "pgrep": '[ -n "${FAKE_RUNNING:-}" ]',
    "systemctl": "exit 3",
}


class Node:
    """The backup node's scripts rendered for a directory of this machine, with the fakes."""

    def __init__(self, tmp_path: Path):
        self.root, self.dir, self.copies = tmp_path, tmp_path / "b", tmp_path / "copies"
        self.datadir, self.db = tmp_path / "var" / "mysql", tmp_path / "db.json"
        for d in ("b", "copies", "bin", "var/mysql"):
            (tmp_path / d).mkdir(parents=True, exist_ok=True)
        (self.datadir / "ibdata1").write_text("the data of before")
        h, g = prod_data()
        g.update(backup_enabled=True, backup_dir=str(self.dir), backup_copy_to="backup@192.0.2.9",
                 backup_copy_dir=str(self.copies))
        site = build_site(h, g)
        self.scripts = {}
        for path in backup.TOOLS:
            text = files.render_backup_tool(site, path).replace(backup.PREPARE, str(tmp_path / "bin" / "prepare"))
            text = text.replace(f"DATADIR={backup.DATADIR}\n", f"DATADIR={self.datadir}\n")
            name = {backup.PREPARE: "prepare", backup.VERIFY: "verify", backup.RESTORE: "restore"}[path]
            (tmp_path / "bin" / name).write_text(text)
            (tmp_path / "bin" / name).chmod(0o755)
            self.scripts[name] = tmp_path / "bin" / name
        for name, code in {**FAKES, "mysql": None}.items():
            (tmp_path / "bin" / name).write_text(FAKE_MYSQL if code is None else "#!/bin/bash\n" + code + "\n")
            (tmp_path / "bin" / name).chmod(0o755)
        self.db.write_text(json.dumps({t: [v["rows"], v["checksum"]] for t, v in TABLES.items()}))

    def take(self, id, kind="full", parent=None, lsn=(0, 100), galera=4242, files=None, started="2026-12-06T01:00:00Z"):
        """A backup as the backup script leaves it: the artifact (here a gzip'd tar, which the
        fake mbstream extracts), its .sha256 and its manifest."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in (files or {"ibdata1": f"{id} pages"}).items():
                info = tarfile.TarInfo(name)
                info.size = len(data.encode())
                tar.addfile(info, io.BytesIO(data.encode()))
            if galera is not None:
                info = tarfile.TarInfo("xtrabackup_galera_info")
                data = f"{UUID}:{galera}\n".encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        art = self.dir / f"{id}.mbstream.gz"
        art.write_bytes(subprocess.run(["gzip", "-c"], input=buf.getvalue(), capture_output=True, check=True).stdout)
        digest = hashlib.sha256(art.read_bytes()).hexdigest()
        (self.dir / f"{art.name}.sha256").write_text(digest + "\n")
        m = {"format": 1, "id": id, "kind": kind, "parent": parent, "node": "node03", "started": started,
             "finished": started, "status": "ok", "error": None,
             "galera": None if galera is None else {"uuid": UUID, "seqno": galera},
             "lsn": {"from": lsn[0], "to": lsn[1]}, "artifact": art.name,
             "sizes": {"artifact_bytes": art.stat().st_size, "datadir_bytes": 4096}, "sha256": digest,
             "tables": {}, "verified": None, "verify_note": "not verified yet"}
        self.write(m)
        return m

    def write(self, m):
        (self.dir / f"{m['id']}.manifest.json").write_text(json.dumps(m))

    def manifest(self, id) -> Manifest:
        m = load((self.dir / f"{id}.manifest.json").read_text(), id)
        assert isinstance(m, Manifest), m
        return m

    def run(self, name, *args, **env):
        environ = {"PATH": f"{self.root / 'bin'}:/usr/bin:/bin", "FAKE_DB": str(self.db), "FAKE_LOG": str(self.root / "log"),
                   **env}
        return subprocess.run(["bash", str(self.scripts[name]), *args], capture_output=True, text=True, env=environ,
                              timeout=60, cwd=self.root)

    def chain(self):
        """A full and two incrementals, the second the newest."""
        self.take("f1", files={"ibdata1": "full"}, galera=100)
        self.take("i1", "incremental", "f1", lsn=(100, 200), galera=150, files={"ibdata1.delta": "one"},
                  started="2026-12-06T02:00:00Z")
        self.take("i2", "incremental", "i1", lsn=(200, 300), galera=180, files={"ibdata1.delta": "two"},
                  started="2026-12-06T03:00:00Z")


def artifacts(node: Node) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(node.dir.glob("*.mbstream.gz*"))}


def test_prepare_applies_the_chain_in_order_and_leaves_the_artifacts(tmp_path):
    node = Node(tmp_path)
    node.chain()
    before = artifacts(node)
    done = node.run("prepare", "latest", "out")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"{UUID}:180"  # the last incremental's galera-info
    out = tmp_path / "out"
    assert (out / "prepared.log").read_text().split() == ["full", "1-i1", "2-i2"]
    assert (out / "ibdata1").read_text() == "full" and not (out / "ibdata1.delta").exists()
    assert artifacts(node) == before and not list(tmp_path.glob(".prepare-*"))
    # a named link of the chain: only what it applies on
    done = node.run("prepare", "i1", "out1")
    assert done.returncode == 0 and done.stdout.strip() == f"{UUID}:150", done.stderr
    assert (tmp_path / "out1" / "prepared.log").read_text().split() == ["full", "1-i1"]


def flip(node, id):
    art = node.dir / f"{id}.mbstream.gz"
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0x01
    art.write_bytes(bytes(data))


# (case, change to the chain of f1 + i1 + i2, args, the one line the refusal says)
REFUSALS = [
    ("a flipped byte", lambda n: flip(n, "i1"), ("i2",), r"i1: sha256 of .*i1.mbstream.gz is \w{12}\.\.\., its manifest says"),
    (".sha256 file differs", lambda n: (n.dir / "f1.mbstream.gz.sha256").write_text("0" * 64), ("i2",),
     r"f1: .*f1.mbstream.gz.sha256 says 000000000000\.\.\., the artifact's sha256 is"),
    ("artifact missing", lambda n: (n.dir / "f1.mbstream.gz").unlink(), ("i1",), r"f1: artifact .*f1.mbstream.gz is missing"),
    ("parent gone", lambda n: (n.dir / "i1.manifest.json").unlink(), ("i2",),
     r"broken chain: i2 applies on i1, which is not in .*: bring it back from the copy"),
    ("LSN gap", lambda n: n.write({**json.loads((n.dir / "i2.manifest.json").read_text()), "lsn": {"from": 250, "to": 300}}),
     ("i2",), r"broken chain: i2 starts at LSN 250, its parent i1 ends at 200"),
    ("no such backup", lambda n: None, ("nope",), r"no backup named nope"),
    ("restore without galera-info", lambda n: n.take("f9", galera=None, started="2026-12-07T00:00:00Z"), ("--restore", "f9"),
     r"f9 was taken without galera-info"),
    ("restore of a full that failed its verification",
     lambda n: n.write({**json.loads((n.dir / "f1.manifest.json").read_text()), "verified": False, "verify_note": "bad"}),
     ("--restore", "i2"), r"f1 failed its verification \(bad\)"),
]


@pytest.mark.parametrize("case, change, args, said", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_prepare_refuses_before_extracting_anything(tmp_path, case, change, args, said):
    node = Node(tmp_path)
    node.chain()
    change(node)
    done = node.run("prepare", *args, "out")
    assert done.returncode == 1 and done.stdout == "", (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(said, lines[0]), lines
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".prepare-*"))


def test_prepare_never_writes_into_a_directory_that_holds_something(tmp_path):
    node = Node(tmp_path)
    node.chain()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    done = node.run("prepare", "f1", "out")
    assert done.returncode == 1 and "is not an empty directory" in done.stderr
    assert (tmp_path / "out" / "keep").read_text() == "x" and len(list((tmp_path / "out").iterdir())) == 1


def test_a_failed_prepare_leaves_no_half_copy(tmp_path):
    node = Node(tmp_path)
    node.chain()
    done = node.run("prepare", "i2", "out", FAKE_PREPARE_FAILS="1")
    assert done.returncode == 1 and "i2: mariadb-backup --prepare failed" in done.stderr
    assert "corrupt page" in done.stderr and not (tmp_path / "out").exists()


def alive(node: Node) -> list[str]:
    """The fake mariadbds still running on a datadir under the node's backup directory."""
    found = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (p / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("fake-mariadbd") and str(node.dir) in cmd:
            found.append(cmd)
    return found


def test_verify_sums_the_tables_into_the_manifest_and_copies_it(tmp_path):
    node = Node(tmp_path)
    node.chain()
    before = artifacts(node)
    done = node.run("verify", "latest")
    assert done.returncode == 0, done.stderr
    m = node.manifest("i2")
    assert m.verified is True and m.table_sums() == {t: TableSum(**v) for t, v in TABLES.items()}
    assert re.fullmatch(rf"prepared a copy, started a throwaway mariadbd, 2 tables summed \(15 rows\); position {UUID}:180",
                        m.verify_note)
    assert json.loads((node.copies / "i2.manifest.json").read_text()) == json.loads((node.dir / "i2.manifest.json").read_text())
    assert artifacts(node) == before
    assert not list(node.dir.glob(".verify-*")) and not list(node.dir.glob("*.part"))  # the temp dir removed
    started = (tmp_path / "log.mariadbd").read_text().split()
    assert {"--no-defaults", "--user=mysql", "--skip-networking", "--wsrep-on=OFF"} <= set(started)
    assert alive(node) == []  # the throwaway server was killed


def test_verify_opens_a_closed_backup_directory_to_mysql_for_its_run_only(tmp_path):
    """The backup script's umask leaves backup_dir (and the parents it made) 0700 root: the
    throwaway mariadbd (user mysql) could not reach its datadir there."""
    node = Node(tmp_path)
    node.take("f1")
    node.dir.chmod(0o700)
    done = node.run("verify", "f1", FAKE_CLOSED=str(node.dir))
    assert done.returncode == 0, done.stderr
    gid = node.dir.stat().st_gid
    assert (tmp_path / "log.chgrp").read_text().splitlines() == [f"mysql {node.dir}", f"{gid} {node.dir}"]
    assert oct(node.dir.stat().st_mode & 0o7777) == "0o700" and node.manifest("f1").verified is True


@pytest.mark.parametrize("env, said", [
    ({"FAKE_PREPARE_FAILS": "1"}, r"prepare failed: .*mariadb-backup --prepare failed"),
    ({"FAKE_START_FAILS": "1"}, r"the throwaway mariadbd did not start on the prepared copy: \[ERROR\] Aborting"),
], ids=["prepare fails", "start fails"])
def test_verify_marks_the_backup_failed_and_exits_non_zero(tmp_path, env, said):
    node = Node(tmp_path)
    node.take("f1")
    done = node.run("verify", "f1", **env)
    assert done.returncode == 1
    m = node.manifest("f1")
    assert m.verified is False and re.search(said, m.verify_note), m.verify_note
    assert m.tables == () and not m.ok  # the plan no longer chains to it, nor restores it
    assert alive(node) == []
    assert node.manifest("f1") == load((node.copies / "f1.manifest.json").read_text(), "copy")
    assert not list(node.dir.glob(".verify-*"))


def test_restore_refuses_while_mariadbd_runs(tmp_path):
    node = Node(tmp_path)
    node.take("f1")
    done = node.run("restore", "f1", FAKE_RUNNING="1")
    assert done.returncode == 1 and "mariadbd runs on" in done.stderr and "nothing was changed" in done.stderr
    assert (node.datadir / "ibdata1").read_text() == "the data of before"
    assert sorted(p.name for p in node.datadir.parent.iterdir()) == ["mysql"]


def test_restore_sets_the_datadir_aside_and_writes_grastate(tmp_path):
    node = Node(tmp_path)
    node.chain()
    done = node.run("restore", "i2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"{UUID}:180"
    (aside,) = node.datadir.parent.glob("mysql.before-restore-*")
    assert (aside / "ibdata1").read_text() == "the data of before"  # kept, never deleted
    assert (node.datadir / "ibdata1").read_text() == "full"
    assert (node.datadir / "prepared.log").read_text().split() == ["full", "1-i1", "2-i2"]
    grastate = (node.datadir / "grastate.dat").read_text()
    assert re.search(rf"^uuid:\s+{UUID}$", grastate, re.M) and re.search(r"^seqno:\s+180$", grastate, re.M)
    assert "safe_to_bootstrap: 1" in grastate
    assert sorted(p.name for p in node.datadir.parent.iterdir()) == ["mysql", aside.name]  # no staging left


def test_restore_of_a_changed_artifact_changes_nothing(tmp_path):
    node = Node(tmp_path)
    node.chain()
    flip(node, "f1")
    done = node.run("restore", "i2")
    assert done.returncode == 1 and "f1: sha256 of" in done.stderr and "is as it was" in done.stderr
    assert (node.datadir / "ibdata1").read_text() == "the data of before"
    assert sorted(p.name for p in node.datadir.parent.iterdir()) == ["mysql"]


@pytest.mark.parametrize("db, code", [
    (TABLES, 0),
    ({**TABLES, "keystone.user": {"rows": 11, "checksum": "3a1f0c22"}}, 1),
    ({**TABLES, "nova.instances": {"rows": 3, "checksum": "992"}, "glance.images": {"rows": 1, "checksum": "5"}}, 1),
    ({"keystone.user": TABLES["keystone.user"]}, 1),
], ids=["same", "rows", "checksum-and-extra", "missing"])
def test_compare_says_what_the_rehearsal_says(tmp_path, db, code):
    """openstack-ha-restore --compare on a running node: the same lines as facts/backup_manifest.py compare()."""
    node = Node(tmp_path)
    m = node.take("f1")
    node.write({**m, "tables": TABLES, "verified": True, "verify_note": "ok"})
    node.db.write_text(json.dumps({t: [v["rows"], v["checksum"]] for t, v in db.items()}))
    done = node.run("restore", "--compare", "f1")
    assert done.returncode == code, done.stderr
    assert done.stdout.splitlines() == compare(node.manifest("f1"), db).lines()
    if code == 0:
        assert done.stdout.splitlines()[-1] == "compared 2 tables, 15 rows: the checksums match"


def test_compare_refuses_a_backup_never_summed(tmp_path):
    node = Node(tmp_path)
    node.take("f1")
    done = node.run("restore", "--compare", "f1")
    assert done.returncode == 1 and "has no table sums" in done.stderr


# --- the disaster restore's decision ---------------------------------------------------------------------

def manifest(id, kind="full", parent=None, hours=8, uuid=UUID, lsn=(0, 500), verified=True):
    d = {"format": 1, "id": id, "kind": kind, "parent": parent, "node": "node03",
         "started": f"2026-12-06T{10 - hours:02d}:00:00Z", "finished": None, "status": "ok", "error": None,
         "galera": None if uuid is None else {"uuid": uuid, "seqno": 1000},
         "lsn": {"from": lsn[0], "to": lsn[1]}, "artifact": f"{id}.mbstream.gz",
         "sizes": {"artifact_bytes": 10, "datadir_bytes": 40}, "sha256": hashlib.sha256(id.encode()).hexdigest(),
         "tables": {}, "verified": verified, "verify_note": "" if verified is not False else "prepare failed"}
    m = load(json.dumps(d), id)
    assert isinstance(m, Manifest), m
    return m


F1 = manifest("f1")
I1 = manifest("i1", "incremental", "f1", hours=7, lsn=(500, 600), verified=None)
STOPPED = {"installed": True, "active": False, "grastate_uuid": UUID, "grastate_seqno": "90"}
RUNNING = {"installed": True, "active": True, "mysqld": "running", "query": "ok", "wsrep_cluster_status": "Primary",
           "wsrep_local_state_comment": "Synced", "wsrep_ready": "ON", "wsrep_cluster_size": "3",
           "wsrep_cluster_state_uuid": UUID, "grastate_uuid": UUID, "grastate_seqno": "-1"}
ALL_STOPPED = {n: STOPPED for n in ORDER}


def sums(*ms):
    return {m.id: m.sha256 for m in ms}


# (case, manifests, target, sha256s, states, confirm, expected: {"chain", "position"} or a regex of the refusals)
DISASTER = [
    ("the latest, confirmed: its chain, its position", [F1, I1], None, sums(F1, I1), ALL_STOPPED, "i1",
     {"chain": ("f1", "i1"), "position": f"{UUID}:1000"}),
    ("a named full, confirmed", [F1, I1], "f1", sums(F1), ALL_STOPPED, "f1", {"chain": ("f1",)}),
    ("datadirs already set aside (no grastate): not checked, allowed", [F1], "f1", sums(F1),
     {n: {"installed": True, "active": False} for n in ORDER}, "f1", {"chain": ("f1",)}),
    ("one node runs: refused, naming it", [F1], "f1", sums(F1), {**ALL_STOPPED, "node02": RUNNING}, "f1",
     r"restore onto a running cluster \(node02.*\): stop mariadb on every node first"),
    ("one node unread: counted as running", [F1], "f1", sums(F1), {**ALL_STOPPED, "node01": None}, "f1",
     r"restore onto a running cluster \(node01"),
    ("a node missing from the picture: refused", [F1], "f1", sums(F1), {"node01": STOPPED, "node03": STOPPED}, "f1",
     r"the Galera state of node02 was not read"),
    ("no confirmation: refused, saying how", [F1, I1], None, sums(F1, I1), ALL_STOPPED, None,
     r"confirm with --data confirm=i1 or HA_RESTORE_CONFIRM=i1 \(make restore BACKUP=latest CONFIRM=i1\)"),
    ("a confirmation of another backup: refused", [F1, I1], None, sums(F1, I1), ALL_STOPPED, "f1",
     r"the confirmation names f1, the backup restored would be i1"),
    ("sha256 mismatch: refused", [F1, I1], "i1", {**sums(F1, I1), "f1": "0" * 64}, ALL_STOPPED, "i1",
     r"f1: sha256 of f1.mbstream.gz is 000000000000\.\.\., the manifest says"),
    ("artifact missing: refused", [F1], "f1", {"f1": None}, ALL_STOPPED, "f1", r"f1: artifact f1.mbstream.gz not found"),
    ("broken chain: refused", [F1, manifest("i2", "incremental", "gone", hours=6, lsn=(600, 700), verified=None)], "i2",
     {"i2": hashlib.sha256(b"i2").hexdigest()}, ALL_STOPPED, "i2",
     r"broken incremental chain: i2 applies on gone, which is not among the backups"),
    ("another cluster's backup: refused", [manifest("f0", uuid=OTHER)], "f0", {"f0": hashlib.sha256(b"f0").hexdigest()},
     ALL_STOPPED, "f0", rf"f0 is a backup of cluster {OTHER}, not of this cluster \({UUID}\)"),
    ("no galera-info: refused", [manifest("f5", uuid=None)], "f5", {"f5": hashlib.sha256(b"f5").hexdigest()},
     ALL_STOPPED, "f5", r"f5 was taken without galera-info"),
    ("no backup at all: refused", [], None, {}, ALL_STOPPED, "x", r"no good backup to restore"),
]


@pytest.mark.parametrize("case, manifests, target, sha256s, states, confirm, expected", DISASTER, ids=[r[0] for r in DISASTER])
def test_disaster_decision(case, manifests, target, sha256s, states, confirm, expected):
    d = disaster(manifests, target, sha256s, states, ORDER, "node03", confirm)
    if isinstance(expected, dict):
        assert d.allowed and not d.refusals, d.refusals
        assert {k: getattr(d, k) for k in expected} == expected
    else:
        assert not d.allowed and re.search(expected, " | ".join(d.refusals)), d.refusals


def test_a_confirmation_of_another_backup_is_said_once():
    """The operator confirmed: told which backup to name, not asked to confirm another way too."""
    d = disaster([F1, I1], None, sums(F1, I1), ALL_STOPPED, ORDER, "node03", "f1")
    assert d.refusals == ("the confirmation names f1, the backup restored would be i1: confirm that one",)


def test_no_confirmation_is_said_once_naming_both_ways():
    """Unconfirmed: one line that names --data confirm= and the environment's HA_RESTORE_CONFIRM=."""
    d = disaster([F1, I1], None, sums(F1, I1), ALL_STOPPED, ORDER, "node03", None)
    assert d.refusals == ("a disaster restore replaces the cluster's data (set aside, never deleted): confirm with "
                          "--data confirm=i1 or HA_RESTORE_CONFIRM=i1 (make restore BACKUP=latest CONFIRM=i1)",)


# --- restore.py planned offline ---------------------------------------------------------------------------

def planned(facts: dict, override: dict) -> dict[str, list]:
    """restore.py's run() planned on the lab's three controllers with `facts`: {host: [[op, [commands]]]}."""
    case = {"nodes": ORDER, "data": {"backup_enabled": True}, "components": [], "override": override, "facts": facts}
    with opkit.planning(case) as (state, inventory):
        from operations import restore as entry

        for h in inventory:
            with opkit.ctx_host.use(h):
                entry.run()
        return opkit.planned(state, inventory, "Disaster restore | ")


def restore_facts(states=None, sha=None):
    return {"*": {"GaleraNode": STOPPED, "ServiceStates": {"units": {}, "error": None},
                  "MysqlAccounts": {"users": {}, "test_db": False, "error": "mysql: not running"}},
            "node03": {"BackupManifests": {"manifests": [to_dict(F1)], "broken": [], "elapses": [], "error": None},
                       "BackupArtifactSums": {"sums": {"f1.mbstream.gz": sha or F1.sha256}, "error": None},
                       **({"GaleraNode": states} if states else {})}}


def test_restore_py_plans_the_restore_bootstrap_and_joins_in_order():
    got = planned(restore_facts(), {"backup": "f1", "confirm": "f1"})
    ops = {n: [op for op, _ in rows] for n, rows in got.items()}
    assert ops["node03"][:2] == ["restore: f1 restored on node03 (openstack-ha-restore)", "restore: bootstrap node03 from the restored data"]
    assert got["node03"][0][1] == [f"{backup.RESTORE} f1"]
    assert "galera_new_cluster" in got["node03"][1][1][0] and f"{UUID}:1000" in got["node03"][1][1][0]
    assert "restore: the database accounts (the joiners' state transfer logs in with them)" in ops["node03"]
    for n in ("node01", "node02"):
        assert ops[n] == ["restore: the datadir set aside, to join by SST", f"restore: {n} joins by SST, waiting for Synced"]
        assert "mv /var/lib/mysql /var/lib/mysql.before-restore-$t" in got[n][0][1][0]
        assert "rm " not in got[n][0][1][0]  # set aside, never deleted
        assert got[n][1][1][0].startswith("timeout 600 systemctl restart mariadb")


@pytest.mark.parametrize("facts, override, said", [
    (restore_facts(states=RUNNING), {"backup": "f1", "confirm": "f1"}, r"restore onto a running cluster \(node03"),
    (restore_facts(), {"backup": "f1"}, r"confirm with --data confirm=f1"),
    (restore_facts(sha="1" * 64), {"backup": "latest", "confirm": "f1"}, r"f1: sha256 of f1.mbstream.gz is 111111111111"),
], ids=["running", "unconfirmed", "sha256"])
def test_restore_py_refuses_before_any_change(facts, override, said):
    from operations.common import Refused

    with pytest.raises(Refused) as refused:
        planned(facts, override)
    assert re.search(said, refused.value.message) and "nothing was changed" in refused.value.message


def test_artifact_sums_read_here(tmp_path):
    """BackupArtifactSums' command run here with bash: a present artifact's sha256, a missing one None."""
    from facts.backup import BackupArtifactSums

    (tmp_path / "a b.mbstream.gz").write_bytes(b"artifact")
    fact = BackupArtifactSums()
    cmd = fact.command(directory=str(tmp_path), names=("a b.mbstream.gz", "gone.mbstream.gz"))
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout.splitlines()
    assert fact.process(out) == {"sums": {"a b.mbstream.gz": hashlib.sha256(b"artifact").hexdigest(),
                                          "gone.mbstream.gz": None}, "error": None}
    assert fact.process(out[:-1])["error"]  # cut short: an error, never sums that read as found
