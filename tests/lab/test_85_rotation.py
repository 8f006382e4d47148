"""Every secret rotated on the lab, and back (issue: "a lab test rotates every secret with
`--dry --diff -vvv` and the real run, and searches every output for every old and new value").

A second secrets file holds a new value for every secret of config/secrets.py (a new
certificate from the lab's CA, lab/keys.py), handed to the inventory for these runs only
(HA_LAB_DATA {"secrets_file": ...}; the lab's own file is never written). The dry run with
--diff -vvv changes nothing and shows every secret file as changed (content hidden); the real
run (-y -vvv) applies it. No output holds an old or a new value, nor a line of either private
key. Then: the health report is clean, the clients work with the new passwords and no longer
with the old ones, the certificate the VIP and every HAProxy serve is the new one, and the units
that restarted are exactly those the blast radius announced (reloads keep their unit running;
read from systemd's InvocationID, which changes at every start). In `finally`, the lab's own
secrets are deployed back the same way, so the shared lab is left as it was found.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import ssl

import lab
from config.files import ERLANG_COOKIE, SST_ACCOUNT, managed_files
from config.secrets import PLACEHOLDERS
from config.tls import local_check
from facts.host import UNITS
from lab import drills, sitemodel
from lab.clients import haproxy_certificate, management_status, stats_status, vip_certificate
from lab.drills import log
from lab.keys import generate_secrets
from lab.waits import SqlError
from config.accounts import native_hash

INVENTORY = "inventories/lab.py"
RESTARTS = ("restart", "stop", "start")  # what a blast radius row says when its unit starts anew
# A full rotation, on every controller (config/files.py: the secret files; operations/: what
# each change causes): the sst password (galera.cnf) restarts mariadb one node at a time; the
# cookie stops every broker, started together; the stats password (haproxy.cfg) and the
# certificate reload HAProxy; the VRRP password (keepalived.conf) reloads keepalived.
# wsrep_sst_auth (its own file since issue 24) reaches a running mariadb with SET GLOBAL: no restart.
FULL_ROTATION = {("stop", "rabbitmq-server"), ("reload", "haproxy"), ("reload", "keepalived")}


def key_lines(pem: str) -> list[str]:
    """The body lines of the bundle's private key."""
    body = pem[pem.index("PRIVATE KEY-----") + len("PRIVATE KEY-----"):pem.rindex("-----END")]
    return [line for line in body.splitlines() if len(line) > 8]


# Secrets whose password hash a host stores (a hash logs in, or is cracked offline): the
# MariaDB accounts' mysql_native_password, RabbitMQ's salted SHA-256.
MARIADB_HASHED = ("mariadb_admin_password", "mariadb_sst_password")
RABBITMQ_HASHED = ("rabbitmq_password", "rabbitmq_admin_password", "rabbitmq_monitor_password")


def rabbitmq_hashes_of(output: str, password: str) -> bool:
    """Whether `output` holds a RabbitMQ hash of `password`: base64(salt + sha256(salt +
    password)), 4 bytes of salt (its salt is random: every base64 word of that size is tried)."""
    for word in set(re.findall(r"[A-Za-z0-9+/]{46,}={0,2}", output)):
        try:
            raw = base64.b64decode(word, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 36 and hashlib.sha256(raw[:4] + password.encode()).digest() == raw[4:]:
            return True
    return False


def leaks(output: str, *secret_sets: dict) -> list[str]:
    """Which secrets (by name, never by value) appear in `output`: whole, a private key line,
    or a password hash a host stores (`NAME (hash)`)."""
    found = []
    upper = output.upper()
    for values in secret_sets:
        for name, value in values.items():
            needles = [value] + (key_lines(value) if "PRIVATE KEY" in value else [])
            if any(n in output for n in needles):
                found.append(name)
            if name in MARIADB_HASHED and native_hash(value)[1:] in upper:  # with or without its '*'
                found.append(f"{name} (hash)")
            if name in RABBITMQ_HASHED and rabbitmq_hashes_of(output, value):
                found.append(f"{name} (hash)")
    return found


def fingerprint(pem: str) -> str:
    """SHA1 of the bundle's first certificate (the one HAProxy serves), upper-case hex."""
    first = pem[:pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return hashlib.sha1(ssl.PEM_cert_to_DER_cert(first)).hexdigest().upper()


def blast_radius(output: str) -> dict[str, set[tuple[str, str]]]:
    """{node: {(verb, unit)}} of the run's announced blast radius (operations/common.py)."""
    m = re.search(r"Blast radius, in the order the steps run:\n((?:[ \t]+\d+\. .*\n)+)", output)
    assert m, "no blast radius in the output:\n" + output[-3000:]
    rows: dict[str, set] = {}
    for node, action in re.findall(r"^\s+\d+\. (\S+): (.*)$", m.group(1), re.M):
        verb, unit = action.split()[:2]
        rows.setdefault(node, set()).add((verb, unit.rstrip(":,")))
    return rows


def invocations() -> dict[tuple[str, str], str]:
    """{(node, unit): its InvocationID}: a new one at every start, the same across a reload."""
    out = {}
    script = "; ".join(f"echo {u} $(systemctl show -p InvocationID --value {u})" for u in UNITS)
    for node in lab.node_names():
        for line in lab.exec_(node, ["sh", "-c", script], timeout=30).stdout.splitlines():
            unit, _, ident = line.partition(" ")
            out[(node, unit)] = ident.strip()
    return out


def secret_file_sums() -> dict[tuple[str, str], str]:
    """{(node, path): sha1} of every file that holds a secret, as it is on the nodes."""
    out = {}
    for node in lab.node_names():
        for f in managed_files(sitemodel.site(), node, PLACEHOLDERS):
            if f.secret:
                r = lab.exec_(node, ["sha1sum", f.path], timeout=30)
                out[(node, f.path)] = r.stdout.split()[0] if r.returncode == 0 else ""
    return out


def rotate(env: dict, secrets: tuple[dict, dict]) -> None:
    """A full rotation from a healthy lab (every secret changes on every node): the dry run
    (--diff -vvv) changes nothing, shows every secret file changed and announces FULL_ROTATION
    on every node; the real run (-y -vvv) does what it announced, and what restarted is what
    was announced. No output holds a value of `secrets` (old, new)."""
    sums, before = secret_file_sums(), invocations()
    dry = drills.pyinfra("--dry", "--diff", "-vvv", INVENTORY, "deploy.py", env=env)
    assert dry.returncode == 0, drills.run_excerpt(dry.stdout)
    assert leaks(dry.stdout, *secrets) == []
    assert secret_file_sums() == sums and invocations() == before  # --dry changed nothing
    announced = blast_radius(dry.stdout)
    for node, path in sums:
        assert f"[{node}] Will modify {path}" in dry.stdout, (node, path)
    # said changed, with no hash of the file (issue 24: a SHA1 of a password file is crackable)
    assert dry.stdout.count("changed (content hidden)") >= len(sums)
    assert not re.search(r"content hidden.*[0-9a-f]{40}", dry.stdout)
    assert announced == {n: FULL_ROTATION for n in lab.node_names()}, announced

    run = drills.pyinfra("-y", "-vvv", INVENTORY, "deploy.py", env=env)
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    assert leaks(run.stdout, *secrets) == []
    assert blast_radius(run.stdout) == announced  # the real run did what the dry run announced
    after = invocations()
    restarted = {(n, u) for n, rows in announced.items() for verb, u in rows if verb in RESTARTS}
    assert {k for k in before if before[k] != after[k]} == restarted, (before, after)
    assert all(after[(n, u)] for n, rows in announced.items() for _, u in rows)  # reloaded: still running
    log(f"rotation: {len(restarted)} unit restarts, as announced; {sum(len(r) for r in announced.values())} steps")


def deploy_back(secrets: tuple[dict, dict]) -> None:
    """The lab's own secrets deployed again after a rotation that failed (a state not known,
    a node maybe down: none is probed): the dry run and the run, both run whatever the
    first says, both succeed and print no value of `secrets`."""
    runs = [drills.pyinfra(*args, INVENTORY, "deploy.py") for args in (("--dry", "--diff", "-vvv"), ("-y", "-vvv"))]
    for run in runs:
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        assert leaks(run.stdout, *secrets) == []


def check_clients(new: dict, old: dict) -> None:
    """Every client of a rotated secret takes the new value and refuses the old one."""
    assert drills.sql("SELECT 1", password=new["mariadb_admin_password"]) == "1"
    try:
        drills.sql("SELECT 1", password=old["mariadb_admin_password"])
        raise AssertionError("the old MariaDB admin password still logs in")
    except SqlError as exc:
        assert "Access denied" in str(exc)
    assert (stats_status(new["haproxy_stats_password"]), stats_status(old["haproxy_stats_password"])) == ("200", "401")
    assert (management_status(new["rabbitmq_admin_password"]),
            management_status(old["rabbitmq_admin_password"])) == ("200", "401")
    # the health report's account (its report above read every member with the new password)
    assert (management_status(new["rabbitmq_monitor_password"], "rabbitmq_monitor_user"),
            management_status(old["rabbitmq_monitor_password"], "rabbitmq_monitor_user")) == ("200", "401")
    user = sitemodel.data("rabbitmq_user")
    for password, ok in ((new["rabbitmq_password"], True), (old["rabbitmq_password"], False)):
        auth = lab.exec_("node01", ["rabbitmqctl", "authenticate_user", user], input=password, timeout=60)
        assert (auth.returncode == 0) is ok, auth.stdout + auth.stderr
    for password, ok in ((new["mariadb_sst_password"], True), (old["mariadb_sst_password"], False)):
        login = lab.exec_("node01", ["mysql", "--defaults-extra-file=/dev/stdin", "-u", SST_ACCOUNT, "-N", "-B",
                                     "-e", "SELECT 1"], input=f"[client]\npassword={password}\n", timeout=30)
        assert (login.returncode == 0) is ok, login.stderr
    cookie = hashlib.sha1(new["rabbitmq_erlang_cookie"].encode()).hexdigest()
    for node in lab.node_names():
        assert lab.exec_(node, ["sha1sum", ERLANG_COOKIE], timeout=30).stdout.split()[0] == cookie, node


def check_certificate(pem: str) -> None:
    """The VIP and every node's running HAProxy serve `pem`'s certificate; the report reads its date."""
    want = fingerprint(pem)
    https = next(int(lst.bind.split()[0].rsplit(":", 1)[1]) for lst in sitemodel.site().listeners if " ssl " in lst.bind)
    assert vip_certificate(https) == want
    for node in lab.node_names():
        assert haproxy_certificate(node) == want, node
    report = drills.verify_report()
    assert report["ok"], report.get("failures")
    _, until = local_check(pem)
    for node, facts in report["facts"].items():
        assert facts["haproxy_tls"]["not_after"] == f"{until:%Y-%m-%dT%H:%M:%SZ}", node


def test_every_secret_rotates_with_no_value_in_any_output(healthy, tmp_path):
    lab_file = sitemodel.data("secrets_file")
    original = open(lab_file).read()
    old = sitemodel.secrets()
    new = generate_secrets()  # a new value for every secret, a new certificate from the lab's CA
    assert set(new) == set(old) == set(sitemodel.secret_names())
    assert all(new[k] != old[k] for k in new)
    rotated = tmp_path / "rotated-secrets.json"
    fd = os.open(rotated, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(new, f)
    rotated_ok = False
    try:
        rotate({"HA_LAB_DATA": json.dumps({"secrets_file": str(rotated)})}, (old, new))
        report = drills.verify_report()
        assert report["ok"], report.get("failures")
        assert not report.get("warnings"), report.get("warnings")
        check_clients(new, old)
        check_certificate(new["haproxy_tls_pem"])
        rotated_ok = True
        log("rotation: every secret rotated, no value in any output, clients on the new values")
    finally:
        # back to the lab's own secrets (its file, never written here): a full rotation again,
        # checked the same way, when the first one went through; whatever fails, deployed
        rotated_back = False
        try:
            if rotated_ok:
                rotate({}, (old, new))
                rotated_back = True
        finally:
            if not rotated_back:
                deploy_back((old, new))
        drills.wait_healthy(120)
        check_clients(old, new)
        check_certificate(old["haproxy_tls_pem"])
        assert open(lab_file).read() == original, "the lab's secrets file changed during the test"
        log("rotation: the lab's own secrets deployed back")
