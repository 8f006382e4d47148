"""config/tls.py: a new certificate (the secret haproxy_tls_pem) is checked before it replaces the old one:
on each controller (the commands the deploy plans, run here with this machine's openssl and
haproxy on a file in a temporary directory standing for the controller's) and offline in
preflight (config/tls.py, the same openssl checks). A bad one never replaces the good one; the
error names the host, the secret and the fix, and never shows the key."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import opkit
from config import preflight, tls
from unitkit import FAKE_SECRETS, expired_pem, key_lines, make_pem, prod_data

GOOD = FAKE_SECRETS["haproxy_tls_pem"]


def encrypted(pem: str) -> str:
    """The bundle with its key encrypted (a passphrase HAProxy cannot ask for)."""
    key = pem[pem.index("-----BEGIN PRIVATE KEY-----"):]
    out = subprocess.run(["openssl", "pkey", "-aes128", "-passout", "pass:secret"], input=key, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return pem[:pem.index("-----BEGIN PRIVATE KEY-----")] + out


def chain_first(pem: str) -> str:
    """Another certificate (a CA's, say) before the server's: HAProxy would serve the wrong one."""
    other = make_pem()
    return other[:other.index("-----BEGIN PRIVATE KEY-----")] + pem


BAD = {
    "not a certificate": ("-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n"
                          + GOOD[GOOD.index("-----BEGIN PRIVATE KEY-----"):], "holds no certificate openssl can read"),
    "another certificate's key": (make_pem(key_of=make_pem()), "not the first certificate's"),
    "chain before the server certificate": (chain_first(GOOD), "not the first certificate's"),
    "expired": (expired_pem(), "has expired"),
    "encrypted key": (encrypted(GOOD), "without a passphrase"),
}


# --- on the controller -----------------------------------------------------------------------


def planned_install(target: Path) -> list:
    """The commands the deploy plans on node01 to install a rotated certificate at `target`."""
    case = opkit.load_case(opkit.CASES / "haproxy" / "certificate_rotated.json")
    case["data"] = {"haproxy_tls_pem_path": str(target)}
    case["facts"]["*"]["FileStates"] = {str(target): {"sha1": "0" * 40}}
    got = opkit.run(case)["node01"]
    (commands,) = [cmds for op, cmds in got if op == f"HAProxy | haproxy: {target}"]
    return commands


def install(target: Path, content: str) -> subprocess.CompletedProcess:
    """Run the planned commands here, the upload being a write of `content` to its path."""
    out = subprocess.CompletedProcess([], 0, "", "")
    for command in planned_install(target):
        if command.startswith("upload "):
            Path(command.split(" ", 1)[1]).write_text(content)
            continue
        run = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
        out = subprocess.CompletedProcess(command, run.returncode, out.stdout + run.stdout, out.stderr + run.stderr)
        if run.returncode != 0:
            return out
    return out


def test_the_planned_commands_stage_check_then_move(tmp_path):
    target = tmp_path / "haproxy" / "openstack-ha.pem"
    commands = planned_install(target)
    staged = f"{target}.pyinfra-new"
    assert commands[0] == f"install -m 600 /dev/null {staged}"  # 0600 before the upload fills it
    assert commands[1] == f"upload {staged}"
    assert commands[2:4] == [f"chown root:haproxy {staged}", f"chmod 0640 {staged}"]
    assert "openssl" in commands[4] and "haproxy -c" in commands[4]
    assert commands[5] == f"mv -f {staged} {target}"


def test_a_good_certificate_replaces_the_old_one(tmp_path):
    target = tmp_path / "haproxy" / "openstack-ha.pem"
    target.parent.mkdir()
    target.write_text("old certificate\n")
    run = install(target, GOOD)
    assert run.returncode == 0, run.stderr
    assert target.read_text() == GOOD and oct(target.stat().st_mode & 0o777) == "0o640"
    assert not Path(f"{target}.pyinfra-new").exists()


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_certificate_never_replaces_the_old_one(tmp_path, case):
    pem, says = BAD[case]
    target = tmp_path / "haproxy" / "openstack-ha.pem"
    target.parent.mkdir()
    target.write_text(GOOD)
    run = install(target, pem)
    assert run.returncode != 0
    assert target.read_text() == GOOD  # the old certificate stays
    assert not Path(f"{target}.pyinfra-new").exists()  # the staged one is removed
    said = run.stdout + run.stderr
    first = said.strip().splitlines()[0]
    assert first.startswith(f"node01: {target}: the secret haproxy_tls_pem ") and says in first, said
    assert "the old certificate stays; fix: give haproxy_tls_pem the server certificate" in first
    assert f"node01: {target} failed validation (openssl and haproxy -c checks of the certificate)" in said
    for line in key_lines(pem):
        assert line not in said


def test_haproxy_c_is_the_last_word(tmp_path):
    # A 512-bit RSA key: openssl reads it and its certificate, HAProxy refuses to load it. The
    # controller's check catches it (preflight, openssl only, cannot).
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:512", "-nodes", "-days", "2", "-subj", "/CN=weak",
                    "-keyout", str(tmp_path / "k"), "-out", str(tmp_path / "c")], check=True, capture_output=True, timeout=60)
    weak = (tmp_path / "c").read_text() + (tmp_path / "k").read_text()
    assert tls.local_check(weak)[0] is None
    target = tmp_path / "haproxy" / "openstack-ha.pem"
    target.parent.mkdir()
    target.write_text(GOOD)
    run = install(target, weak)
    assert run.returncode != 0 and target.read_text() == GOOD
    assert f"node01: {target}: the secret haproxy_tls_pem is refused by `haproxy -c`" in run.stderr


# --- offline, in preflight -------------------------------------------------------------------


def tls_problems(pem: str, **changes):
    hosts, group = prod_data()
    report = preflight.check(hosts, {**group, **changes}, secrets={**FAKE_SECRETS, "haproxy_tls_pem": pem})
    return [p for p in report.problems if p.key == "haproxy_tls_pem"]


@pytest.mark.parametrize("case", sorted(BAD))
def test_preflight_refuses_a_bad_certificate_before_any_host(case):
    pem, says = BAD[case]
    (p,) = tls_problems(pem)
    assert (p.level, p.where) == ("error", "controllers") and says in p.message
    assert p.fix.startswith("give haproxy_tls_pem the server certificate")
    for line in key_lines(pem):
        assert line not in str(p)


def test_preflight_accepts_a_good_certificate_and_warns_before_expiry():
    assert tls_problems(GOOD) == []
    (p,) = tls_problems(make_pem(days=10))
    assert p.level == "warning" and "expires in 10 days" in p.message and p.fix.startswith("renew it")
    assert tls_problems(make_pem(days=10), haproxy_tls_expiry_warn_days=0) == []
    assert tls_problems(make_pem(days=50), haproxy_tls_expiry_warn_days=60)[0].level == "warning"


def test_preflight_without_openssl_leaves_the_check_to_the_controllers(monkeypatch):
    monkeypatch.setattr(tls.shutil, "which", lambda name: None)
    tls.local_check.cache_clear()
    try:
        (p,) = tls_problems(make_pem(days=3))
    finally:
        tls.local_check.cache_clear()
    assert p.level == "warning" and "checked on each controller only" in p.message


def test_the_expiry_warning_counts_from_now():
    _, until = tls.local_check(GOOD)
    for left, warned in ((10, True), (29.5, True), (30.5, False), (300, False)):
        warnings = []
        preflight._check_certificate(GOOD, {"haproxy_tls_expiry_warn_days": 30}, None,
                                     lambda *a: warnings.append(a), now=until - timedelta(days=left))
        assert bool(warnings) is warned, left
    assert f"({until:%Y-%m-%d %H:%M} UTC)" in warnings_at(GOOD, until - timedelta(days=3))


def warnings_at(pem: str, now: datetime) -> str:
    said = []
    preflight._check_certificate(pem, {"haproxy_tls_expiry_warn_days": 30}, None, lambda *a: said.append(a[2]), now=now)
    return " ".join(said)


def test_a_rotation_is_announced_and_applied_as_a_reload(monkeypatch):
    import operations.haproxy as haproxy
    from operations import common

    announced = {}

    def record(ops, action):
        common.announce(ops, action)
        announced.update({name: [a for _, a in steps if a] for name, steps in common.announced().items()})

    monkeypatch.setattr(haproxy, "announce", record)
    case = opkit.load_case(opkit.CASES / "haproxy" / "certificate_rotated.json")
    got = opkit.run(case)
    assert announced == {n: ["reload haproxy"] for n in ("node01", "node02", "node03")}
    for rows in got.values():
        commands = [c for _, cmds in rows for c in cmds]
        assert "systemctl reload haproxy" in commands and not [c for c in commands if "restart" in c]


# --- what the certificate names, and from when (issue 24) -----------------------------------


def future_pem(days_ahead: int = 3) -> str:
    """A self-signed certificate naming prod.py's VIP, valid only from `days_ahead` days on."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vip.test")])
    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days_ahead)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=400))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("100.2.30.40"))]), False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode()
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode())


def test_preflight_warns_when_the_certificate_names_neither_vip():
    assert tls_problems(GOOD) == []  # names 100.2.30.40, prod.py's VIP
    (p,) = tls_problems(make_pem(ips=("192.0.2.1",)))
    assert p.level == "warning" and "names neither VIP (100.2.30.40)" in p.message and "192.0.2.1" in p.message
    assert "subjectAltName" in p.fix
    (p,) = tls_problems(make_pem(ips=()))
    assert "(none)" in p.message
    # the external VIP named alone is enough
    ext = {"external_vip": "203.0.113.10", "external_network": "203.0.113.0/24", "external_vip_interface": "enp9s0",
           "keepalived_external_router_id": 122}
    assert tls_problems(make_pem(ips=("203.0.113.10",)), **ext) == []
    (p,) = tls_problems(make_pem(ips=("192.0.2.1",)), **ext)
    assert "names neither VIP (100.2.30.40, 203.0.113.10)" in p.message
    for line in key_lines(GOOD):
        assert line not in p.message + p.fix


def test_preflight_refuses_a_certificate_not_yet_valid():
    (p,) = tls_problems(future_pem(3))
    assert p.level == "error" and "not valid before" in p.message and "(notBefore)" in p.message
    assert tls_problems(future_pem(-1)) == []  # started yesterday: fine


def test_san_addresses_of_openssl_output():
    out = "notBefore=Dec  6 08:00:00 2026 GMT\nX509v3 Subject Alternative Name: \n    DNS:vip.example, IP Address:10.0.0.10, IP Address:203.0.113.10\n"
    assert tls.san_addresses(out) == ("10.0.0.10", "203.0.113.10")
    assert tls.san_addresses("notBefore=Dec  6 08:00:00 2026 GMT\n") == ()
    assert tls.not_before("notBefore=Dec  6 08:00:00 2026 GMT").isoformat() == "2026-12-06T08:00:00+00:00"


# --- the fast path of local_check(): read in this process when every check passes -----------


@pytest.mark.parametrize("case", sorted(BAD))
def test_the_fast_path_passes_no_bad_certificate_on(case):
    # any failure is left to OPENSSL_CHECKS one by one: their reason, as before
    assert tls._passed_all(BAD[case][0]) is None


def test_the_fast_path_reads_what_the_single_commands_read(tmp_path):
    passed = tls._passed_all(GOOD)
    assert passed is not None
    path = tmp_path / "vip.pem"
    path.write_text(GOOD)

    def openssl(*args):
        return subprocess.run(["openssl", *args, "-in", str(path)], capture_output=True, text=True, timeout=30, check=True).stdout

    assert tls.local_check(GOOD) == (None, tls.not_after(openssl("x509", "-noout", "-enddate")))
    names = openssl("x509", "-noout", "-startdate", "-ext", "subjectAltName")
    assert tls.local_names(GOOD) == (next(filter(None, map(tls.not_before, names.splitlines()))), tls.san_addresses(names))
    assert passed.addresses and passed.addresses == tls.san_addresses(names)


def test_every_openssl_check_passes_what_the_fast_path_passes(tmp_path):
    """The fast path (cryptography) and OPENSSL_CHECKS agree on a good bundle, and on one
    whose key and certificate are in the other order (openssl reads the first of each)."""
    key_first = GOOD[GOOD.index("-----BEGIN PRIVATE KEY-----"):] + GOOD[:GOOD.index("-----BEGIN PRIVATE KEY-----")]
    for pem in (GOOD, key_first):
        path = tmp_path / "vip.pem"
        path.write_text(pem)
        for command, reason in tls.OPENSSL_CHECKS:
            run = subprocess.run(["sh", "-c", command.format(pem=str(path))], capture_output=True, timeout=30)
            assert run.returncode == 0, reason
        assert tls._passed_all(pem) == tls._passed_all(GOOD)
