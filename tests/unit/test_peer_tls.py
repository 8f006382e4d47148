"""TLS between the controllers (galera_tls, rabbitmq_tls; config/peer_tls.py,
operations/peer_tls_plan.py): the files on and off, preflight's checks of the certificate
material, the switch on a running cluster (RabbitMQ: every broker stops, then they start
together; Galera: refused, naming the whole-cluster stop), and one source for the paths.

The certificates are made here (lab/keys.py's node_certificate, from a throwaway CA), as the
lab makes them."""

from __future__ import annotations

import copy
import datetime as dt
import os
from pathlib import Path

import pytest

import opkit
import unitkit
from config import peer_tls, preflight
from config.files import managed_files
from config.paths import GALERA_CNF, GALERA_TLS_DIR, RABBITMQ_DIST_OPTFILE, RABBITMQ_TLS_DIR
from config.secrets import PLACEHOLDERS
from config.site import build_site
from lab.host import run
from lab.keys import node_certificate
from operations.peer_tls_plan import PeerTlsRefused, galera_switch, rabbitmq_switch
from operations.rabbitmq_plan import Plan, RabbitmqStateError, steps
from unitkit import FAKE_SECRETS

NODES = ("node01", "node02", "node03")
ENV = "/etc/rabbitmq/rabbitmq-env.conf"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    """A CA and a PEM (certificate, key; 0600) per lab controller, and another CA's."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other"):
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
             "-subj", f"/CN={ca}", "-keyout", str(d / f"{ca}.key"), "-out", str(d / f"{ca}.pem")])
    hosts, _ = unitkit.lab_data(NODES)
    pems = {}
    for name, hd in hosts:
        pems[name] = write_pem(d / f"{name}.pem", node_certificate(name, hd["address"], d / "ca.pem", d / "ca.key"))
    return {"dir": d, "ca": str(d / "ca.pem"), "pems": pems, "addresses": {n: hd["address"] for n, hd in hosts}}


def write_pem(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def site_data(pki, galera=True, rabbitmq=True, pems=None, **more):
    """The lab's (hosts, group data) with the switches and the material."""
    hosts, group = unitkit.lab_data(NODES)
    pems = pki["pems"] if pems is None else pems
    hosts = [(n, {**hd, **({"tls_node_pem": pems[n]} if pems.get(n) else {})}) for n, hd in hosts]
    group = {**group, "backup_enabled": False, "galera_tls": galera, "rabbitmq_tls": rabbitmq,
             "peer_tls_ca_file": pki["ca"], **more}
    return hosts, group


def files(hosts, group, secrets=FAKE_SECRETS, name="node01") -> dict:
    return {f.path: f for f in managed_files(build_site(hosts, group), name, secrets)}


def peer_problems(hosts, group, required=True) -> list[str]:
    report = preflight.check(hosts, group, FAKE_SECRETS, secrets_required=required)
    return [str(p) for p in report.problems if peer_tls.NODE_KEY in p.key or peer_tls.CA_KEY in p.key
            or p.key in peer_tls.SWITCHES]


# --- render rows ---------------------------------------------------------------------------------

TLS_PATHS = {
    "galera": {f"{GALERA_TLS_DIR}/{n}" for n in ("ca.pem", "node.crt", "node.key")},
    "rabbitmq": {f"{RABBITMQ_TLS_DIR}/{n}" for n in ("ca.pem", "node.crt", "node.key")} | {RABBITMQ_DIST_OPTFILE},
}


@pytest.mark.parametrize("galera,rabbitmq", [(False, False), (True, False), (False, True), (True, True)])
def test_files_follow_each_switch(pki, galera, rabbitmq):
    got = files(*site_data(pki, galera, rabbitmq))
    for component, on in (("galera", galera), ("rabbitmq", rabbitmq)):
        assert (TLS_PATHS[component] <= set(got)) is on and not (TLS_PATHS[component] & set(got) and not on)
        for path in TLS_PATHS[component] & set(got):
            f = got[path]
            assert (f.mode, f.user, f.group) == ("0640", "root", "mysql" if component == "galera" else "rabbitmq")
            assert f.secret is path.endswith("node.key")
    cnf, env = got[GALERA_CNF].content, got[ENV].content
    assert ("socket.ssl_cert=" in cnf and "[sst]" in cnf and "ssl-mode = VERIFY_CA" in cnf) is galera
    assert ("-proto_dist inet_tls" in env and "RABBITMQ_CTL_ERL_ARGS=" in env) is rabbitmq
    assert "-kernel inet_dist_use_interface" in env  # bound to the node address either way


def test_off_renders_the_files_of_before(pki):
    """Default off: galera.cnf and rabbitmq-env.conf as before the switches existed, whatever
    material is given (the keys then only warn)."""
    hosts, group = unitkit.lab_data(NODES)
    before = files(hosts, {**group, "backup_enabled": False})
    after = files(*site_data(pki, False, False))
    assert set(before) == set(after)
    assert all(before[p].content == after[p].content for p in before)


def test_material_in_the_files(pki):
    got = files(*site_data(pki))
    ca = Path(pki["ca"]).read_text()
    cert, key = peer_tls.split_pem(Path(pki["pems"]["node01"]).read_text())
    for directory in (GALERA_TLS_DIR, RABBITMQ_TLS_DIR):
        assert got[f"{directory}/ca.pem"].content == ca
        assert got[f"{directory}/node.crt"].content == cert and "PRIVATE KEY" not in cert
        assert got[f"{directory}/node.key"].content == key and "PRIVATE KEY" in key and "CERTIFICATE" not in key
    cnf = got[GALERA_CNF].content
    for path in peer_tls.paths("galera").values():
        assert cnf.count(path) == 2  # socket.ssl_* and [sst]
    for path in peer_tls.paths("rabbitmq").values():
        assert got[RABBITMQ_DIST_OPTFILE].content.count(f'"{path}"') == 2  # server and client


def test_offline_render_never_reads_a_key(pki):
    got = files(*site_data(pki), secrets=PLACEHOLDERS)
    for directory in (GALERA_TLS_DIR, RABBITMQ_TLS_DIR):
        assert got[f"{directory}/node.key"].content == peer_tls.PLACEHOLDER_KEY + "\n"
        assert "BEGIN CERTIFICATE" in got[f"{directory}/node.crt"].content
    assert not any("PRIVATE KEY" in f.content for f in got.values())


def test_each_controller_gets_its_own_certificate(pki):
    hosts, group = site_data(pki)
    certs = {n: files(hosts, group, name=n)[f"{GALERA_TLS_DIR}/node.crt"].content for n in NODES}
    assert len(set(certs.values())) == len(NODES)


# --- preflight rows --------------------------------------------------------------------------------


def expired_node_pem(pki, name: str) -> str:
    """A certificate for `name`'s address, signed by the CA, expired yesterday (cryptography:
    openssl x509 -req cannot back-date)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    ca_cert = x509.load_pem_x509_certificate(Path(pki["ca"]).read_bytes())
    ca_key = serialization.load_pem_private_key((pki["dir"] / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=30)).not_valid_after(now - dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(pki["addresses"][name]))]), False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode()
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode())


def bad_pem(pki, kind: str) -> str:
    d, name = pki["dir"], "node02"
    if kind == "another node's address":
        return write_pem(d / "wrong-address.pem", node_certificate(name, pki["addresses"]["node03"], d / "ca.pem", d / "ca.key"))
    if kind == "another CA":
        return write_pem(d / "other-ca.pem", node_certificate(name, pki["addresses"][name], d / "other.pem", d / "other.key"))
    if kind == "expired":
        return write_pem(d / "expired.pem", expired_node_pem(pki, name))
    if kind == "another key":
        cert, _ = peer_tls.split_pem(Path(pki["pems"][name]).read_text())
        _, key = peer_tls.split_pem(Path(pki["pems"]["node03"]).read_text())
        return write_pem(d / "wrong-key.pem", cert + key)
    if kind == "readable by others":
        return write_pem(d / "open.pem", Path(pki["pems"][name]).read_text(), 0o644)
    if kind == "absent":
        return str(d / "absent.pem")
    raise AssertionError(kind)


PREFLIGHT_ROWS = [
    # (what is wrong with node02's PEM, what the one error says)
    ("another node's address", "does not name the node's address"),
    ("another CA", "not signed by the CA of peer_tls_ca_file"),
    ("expired", "has expired"),
    ("another key", "not the first certificate's"),
    ("readable by others", "readable or writable by group or others"),
    ("absent", "cannot be read"),
]


def test_good_material_passes(pki):
    assert peer_problems(*site_data(pki)) == []


@pytest.mark.parametrize("kind,said", PREFLIGHT_ROWS, ids=[r[0] for r in PREFLIGHT_ROWS])
def test_bad_node_pem_is_refused(pki, kind, said):
    pems = {**pki["pems"], "node02": bad_pem(pki, kind)}
    got = peer_problems(*site_data(pki, pems=pems))
    assert len(got) == 1 and got[0].startswith("error: node02: tls_node_pem: ") and said in got[0], got
    assert "PRIVATE KEY" not in got[0] and "fix:" in got[0]


def test_missing_material_is_refused_naming_the_key(pki):
    got = peer_problems(*site_data(pki, pems={**pki["pems"], "node03": None}, peer_tls_ca_file=None))
    assert any(p.startswith("error: controllers: peer_tls_ca_file: missing") for p in got), got
    assert any(p.startswith("error: node03: tls_node_pem: missing") for p in got), got
    # an offline render shows placeholders: the same are warnings there
    offline = peer_problems(*site_data(pki, pems={**pki["pems"], "node03": None}, peer_tls_ca_file=None), required=False)
    assert offline and all(p.startswith("warning: ") for p in offline), offline


def test_a_ca_file_with_a_key_is_refused(pki):
    bundle = write_pem(pki["dir"] / "ca-with-key.pem", Path(pki["ca"]).read_text() + (pki["dir"] / "ca.key").read_text())
    got = peer_problems(*site_data(pki, peer_tls_ca_file=bundle))
    assert got == [f"error: controllers: peer_tls_ca_file: {bundle} holds a private key; fix: give peer_tls_ca_file "
                   "the CA certificate alone (no key: the controllers need none of the CA's)"]


def test_material_without_a_switch_warns(pki):
    got = peer_problems(*site_data(pki, False, False))
    assert len(got) == 1 + len(NODES) and all(p.startswith("warning: ") and "has no effect" in p for p in got), got


def test_schema_refuses_a_wrong_type(pki):
    hosts, group = site_data(pki, galera="yes")
    assert any(p.startswith("error: controllers: galera_tls: 'yes' is not a boolean") for p in peer_problems(hosts, group))
    hosts = [(n, {**hd, "tls_node_pem": ["a"]}) if n == "node01" else (n, hd) for n, hd in hosts]
    report = preflight.check(hosts, {**group, "galera_tls": True}, FAKE_SECRETS)
    assert any(p.where == "node01" and p.key == "tls_node_pem" and "not a string" in p.message for p in report.errors)


# --- the switch on a running cluster: a table ------------------------------------------------------

ORDER = list(NODES)


def galera(*readings):
    return {n: ({"galera": r, "error": None} if r else None) for n, r in zip(ORDER, readings)}


def rabbit(*readings):
    return {n: ({"rabbitmq": r, "error": None} if r else None) for n, r in zip(ORDER, readings)}


GALERA_ROWS = [
    # (readings, galera_tls, refused)
    (("stopped", "stopped", "stopped"), True, False),  # a cluster stopped whole (or new): bootstrapped with TLS
    (("tls", "tls", "tls"), True, False),  # already on
    (("plain", "plain", "plain"), False, False),  # off, as before
    (("plain", "plain", "plain"), True, True),  # on, on a running cluster: refused
    (("tls", "tls", "tls"), False, True),  # off, on a running TLS cluster: refused
    (("stopped", "stopped", "plain"), True, True),  # one member still runs without
    (("tls", "unknown", None), True, False),  # a member that did not answer: the Galera plan waits for it
    (("plain", "unknown", "stopped"), True, True),
]


@pytest.mark.parametrize("readings,want,refused", GALERA_ROWS)
def test_galera_switch(readings, want, refused):
    if not refused:
        assert galera_switch(galera(*readings), want, ORDER, "node01") is None
        return
    with pytest.raises(PeerTlsRefused) as exc:
        galera_switch(galera(*readings), want, ORDER, "node01")
    said = str(exc.value)
    assert "node03 then node02 then node01" in said  # the writer stopped last
    assert f"set galera_tls back to {not want}" in said
    assert all(f"{n} {r or 'not read'}" in said for n, r in zip(ORDER, readings))


RABBIT_ROWS = [
    # (readings, rabbitmq_tls, in run, switch or "refused")
    (("plain", "plain", "plain"), True, NODES, True),  # every broker stops, then they start together
    (("tls", "tls", "tls"), False, NODES, True),
    (("tls", "tls", "tls"), True, NODES, False),
    (("plain", "plain", "plain"), False, NODES, False),
    (("stopped", "stopped", "stopped"), True, NODES, False),  # stopped brokers start with it (start together)
    (("plain", "stopped", None), True, NODES, True),
    (("unknown", "unknown", "unknown"), True, NODES, False),
    (("plain", "plain", "plain"), True, ("node01", "node02"), "refused"),  # --limit leaves a running broker out
    (("plain", "plain", "stopped"), True, ("node01", "node02"), True),  # the one left out is stopped
    (("tls", "tls", "tls"), True, ("node01",), False),  # nothing to switch: --limit is fine
]


@pytest.mark.parametrize("readings,want,in_run,switch", RABBIT_ROWS)
def test_rabbitmq_switch(readings, want, in_run, switch):
    states = rabbit(*readings)
    if switch == "refused":
        with pytest.raises(PeerTlsRefused) as exc:
            rabbitmq_switch(states, want, ORDER, set(in_run))
        assert "node03" in str(exc.value) and "without --limit" in str(exc.value)
    else:
        assert rabbitmq_switch(states, want, ORDER, set(in_run)) is switch


STEP_ROWS = [
    # (running, in maintenance, pending, tls_switch) -> (cookie_stop, cookie_start, start, restart)
    ((True, False, True, True), (True, True, False, False)),  # switch: stopped and started together, no rolling restart
    ((True, False, True, False), (False, False, False, True)),  # a config change alone: its rolling restart
    ((False, False, True, True), (True, True, False, False)),  # stopped: started with the others
    ((False, True, True, True), (True, False, False, False)),  # in maintenance: stays stopped
]


@pytest.mark.parametrize("given,expected", STEP_ROWS)
def test_rabbitmq_steps_of_a_switch(given, expected):
    running, away, pending, switch = given
    stopped = frozenset() if running else frozenset({"node02"})
    p = Plan(seed="node01", stopped=stopped, away=frozenset({"node02"}) if away else frozenset(), left=2)
    got = steps(p, "node02", running, pending=pending, tls_switch=switch)
    assert (got.cookie_stop, got.cookie_start, got.start, got.restart) == expected


def test_a_paused_broker_refuses_the_switch():
    p = Plan(seed="node01", paused=frozenset({"node03"}), seen="node03 unit active, broker not running")
    with pytest.raises(RabbitmqStateError, match="switches TLS"):
        steps(p, "node03", True, tls_switch=True)
    assert steps(p, "node03", True).wait


# --- operation cases: what the deploy plans ---------------------------------------------------------


@pytest.fixture
def tls_lab(pki, monkeypatch):
    """opkit's cases with the lab's controllers carrying their tls_node_pem."""
    real = opkit.lab_data

    def with_pems(nodes):
        hosts, group = real(nodes)
        return [(n, {**hd, "tls_node_pem": pki["pems"][n]}) for n, hd in hosts], group

    monkeypatch.setattr(opkit, "lab_data", with_pems)
    return pki


def switched_case(component: str, data: dict, reading: dict) -> dict:
    case = opkit.load_case(opkit.CASES / component / "config_changed.json")
    case = copy.deepcopy(case)
    case["data"] = data
    # every file as deployed but the component's TLS files (absent) and its main config (before the switch)
    main = {"galera": GALERA_CNF, "rabbitmq": ENV}[component]
    case["facts"]["*"]["FileStates"] = {"*": "$deployed", **{p: None for p in TLS_PATHS[component]},
                                        main: {"sha1": "0" * 40}}
    case["facts"]["*"].update(reading)
    return case


def test_rabbitmq_tls_on_stops_every_broker_then_starts_them_together(tls_lab):
    case = switched_case("rabbitmq", {"rabbitmq_tls": True, "peer_tls_ca_file": tls_lab["ca"]},
                         {"RabbitmqTls": {"rabbitmq": "plain", "error": None}})
    got = opkit.run(case)
    for name in NODES:
        ops = [op for op, _ in got[name]]
        stop = ops.index("RabbitMQ | rabbitmq: stop before the cookie changes")
        files_at = [ops.index(f"RabbitMQ | rabbitmq: {p}") for p in sorted(TLS_PATHS["rabbitmq"] | {ENV})]
        start = ops.index("RabbitMQ | rabbitmq: start together after the cookie change")
        assert stop < min(files_at) and max(files_at) < start, ops
        assert not any(op.startswith("RabbitMQ | rabbitmq: restart ") for op in ops), ops  # no rolling restart
    # the next run changes nothing: the brokers run TLS, the files are there
    after = copy.deepcopy(case)
    after["facts"] = opkit.load_case(opkit.CASES / "rabbitmq" / "config_changed.json")["facts_after"]
    after["facts"]["*"] = {**after["facts"].get("*", {}), "RabbitmqTls": {"rabbitmq": "tls", "error": None}}
    assert opkit.run(after) == {n: [] for n in NODES}


def test_galera_tls_on_a_running_cluster_is_refused_before_any_change(tls_lab):
    from operations.common import Refused

    case = switched_case("galera", {"galera_tls": True, "peer_tls_ca_file": tls_lab["ca"]},
                         {"GaleraTls": {"galera": "plain", "error": None}})
    with pytest.raises(Refused) as exc:
        opkit.run(case)
    said = str(exc.value)
    assert said.startswith("galera: galera_tls is on and mariadb runs without TLS on node01, node02, node03")
    assert "systemctl stop mariadb" in said and "node03 then node02 then node01" in said


# --- one source ---------------------------------------------------------------------------------------


def test_one_source_for_the_paths():
    """Each path is written once (config/paths.py); the templates and the file table read it."""
    import config.files as files_module

    rows = {(c, path) for c, tpl, path, *_ in files_module.FILES if tpl.startswith("tls/")}
    assert rows == {(c, p) for c in ("galera", "rabbitmq") for p in peer_tls.paths(c).values()}
    templates = Path(unitkit.REPO, "files", "templates")
    for tpl in ("mariadb/galera.cnf.j2", "rabbitmq/rabbitmq-env.conf.j2", "rabbitmq/inter_node_tls.config.j2"):
        text = (templates / tpl).read_text()
        for path in (GALERA_TLS_DIR, RABBITMQ_TLS_DIR, RABBITMQ_DIST_OPTFILE):
            assert path not in text, (tpl, path)  # from peer_paths / dist_optfile, never spelled again


def test_lab_issues_what_preflight_accepts(pki):
    """lab/keys.py's node certificate: server and client use (Galera and Erlang both check the
    peer's), the node's name and address."""
    text = run(["openssl", "x509", "-noout", "-ext", "subjectAltName,extendedKeyUsage"],
               input=Path(pki["pems"]["node01"]).read_text()).stdout
    assert "DNS:node01" in text and f"IP Address:{pki['addresses']['node01']}" in text
    assert "TLS Web Server Authentication" in text and "TLS Web Client Authentication" in text


# --- the facts the switch is decided from ---------------------------------------------------------


@pytest.mark.parametrize("lines,reading", [
    (["galera=tls", "end=yes"], "tls"),
    (["galera=plain", "end=yes"], "plain"),
    (["galera=stopped", "end=yes"], "stopped"),
    (["galera=tls"], None),  # cut short
    (["galera=maybe", "end=yes"], None),
])
def test_galera_tls_fact(lines, reading):
    from facts.galera import GaleraTls

    got = GaleraTls().process(lines)
    assert got["galera"] == reading and bool(got["error"]) is (reading is None)


def test_rabbitmq_tls_fact_reads_the_vm_command_line(tmp_path):
    """The fact's shell, run here with a fake systemctl whose MainPID is a process of this
    machine started with (or without) `-proto_dist inet_tls` in its command line."""
    import signal
    import subprocess
    import sys
    import time

    from facts.rabbitmq import RabbitmqTls

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sleeper = f"{sys.executable} -c 'import time; time.sleep(30)'"
    for command, reading in ((f"exec {sleeper} beam.smp -- -proto_dist inet_tls -ssl_dist_optfile x", "tls"),
                             (f"exec {sleeper} beam.smp -- -kernel inet_dist_use_interface", "plain"),
                             (f"exec {sleeper} sh -c 'sleep 30'", "unknown"),
                             # the VM a child of the main process (a start script that did not exec it)
                             (f"{sleeper} beam.smp -- -proto_dist inet_tls & wait", "tls"),
                             (f"{sleeper} beam.smp -- -kernel inet_dist_use_interface & wait", "plain")):
        vm = subprocess.Popen(["sh", "-c", command], start_new_session=True)
        for _ in range(100):  # its child, or its exec, is there
            if "beam" in open(f"/proc/{vm.pid}/cmdline").read() or "wait" not in command and "beam" not in command \
                    or subprocess.run(["pgrep", "-P", str(vm.pid)], capture_output=True).stdout:
                break
            time.sleep(0.05)
        try:
            systemctl = bin_dir / "systemctl"
            systemctl.write_text(f"#!/bin/sh\necho {vm.pid}\n")
            systemctl.chmod(0o755)
            out = subprocess.run(["bash", "-c", RabbitmqTls().command()], capture_output=True, text=True, timeout=30,
                                 env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}).stdout
            assert RabbitmqTls().process(out.splitlines()) == {"rabbitmq": reading, "error": None}, (command, out)
        finally:
            os.killpg(vm.pid, signal.SIGKILL)
            vm.wait()
    systemctl.write_text("#!/bin/sh\necho 0\n")
    out = subprocess.run(["bash", "-c", RabbitmqTls().command()], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}).stdout
    assert RabbitmqTls().process(out.splitlines())["rabbitmq"] == "stopped"


# --- the lab's inventory ----------------------------------------------------------------------------


@pytest.mark.parametrize("extra,on", [(None, False), ('{"rabbitmq_tls": true}', True), ('{"galera_tls": true}', True),
                                      ('{"galera_tls": false}', False), ('{"rabbitmq_amqp_tls": true}', True)])
def test_lab_inventory_names_the_certificates_only_with_a_switch(monkeypatch, extra, on):
    import lab
    import lab.keys
    from config.site import load_inventory
    from lab.names import CA_FILE

    issued = []
    monkeypatch.setattr(lab, "node_names", lambda: list(NODES))
    monkeypatch.setattr(lab, "ensure_secrets", lambda: None)
    monkeypatch.setattr(lab.keys, "ensure_node_pem", lambda name, address: issued.append((name, address)) or f"/x/{name}.pem")
    monkeypatch.delenv("HA_LAB_NODES", raising=False)
    if extra:
        monkeypatch.setenv("HA_LAB_DATA", extra)
    else:
        monkeypatch.delenv("HA_LAB_DATA", raising=False)
    hosts, group = load_inventory(unitkit.LAB)
    assert (group.get("peer_tls_ca_file") == str(CA_FILE)) is on
    assert [hd.get("tls_node_pem") for _, hd in hosts] == ([f"/x/{n}.pem" for n in NODES] if on else [None] * len(NODES))
    assert issued == ([(n, hd["address"]) for n, hd in hosts] if on else [])
