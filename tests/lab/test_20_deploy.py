"""The deploy on the lab: fresh nodes, first run, no-op re-run, dry-run diff, verification.

The tests share one fresh 3-node lab (disks purged first) and run in order: each builds on
the state the previous one left, as an operator's runs would.
"""

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import lab
from config.files import HAPROXY_CFG, HAPROXY_STATS_USERS
from lab import drills, sitemodel
from lab.names import CA_FILE

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
DEPLOY_TIMEOUT = 1500  # s; a first deploy takes a few minutes on warm apt cache


def pyinfra(*args, env=None, timeout=DEPLOY_TIMEOUT):
    """Run pyinfra from the repository root; returns the CompletedProcess (output merged)."""
    return subprocess.run(
        [PYINFRA, *args],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )


def assert_no_secret(output: str):
    for name, value in drills.secrets().items():
        assert value not in output, f"the secret {name} appears in pyinfra's output"


def tls_version(address: str, port: int, name: str | None = None) -> str:
    """The TLS version of a handshake with address:port, the certificate verified against the
    lab's CA for `name` (default: the address itself, its IP SAN); raises when it fails."""
    from lab.clients import tls_context

    with socket.create_connection((address, port), timeout=5) as raw:
        with tls_context().wrap_socket(raw, server_hostname=name or address) as conn:
            return conn.version()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def redirect_of(url: str) -> tuple[int, str]:
    """(status, Location) of GET url, the redirect not followed (no proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    with pytest.raises(urllib.error.HTTPError) as moved:
        opener.open(url, timeout=5)
    return moved.value.code, moved.value.headers["Location"] or ""


def node_sha(node: str, path: str) -> str:
    r = lab.exec_(node, ["sha1sum", path], timeout=30)
    return r.stdout.split()[0] if r.returncode == 0 else ""


@pytest.fixture(scope="module")
def fresh_lab(lab_nodes):
    """Three fresh nodes: disks purged, so the first deploy starts from bare Debian."""
    lab.down(purge=True)
    lab.up(3)
    return lab_nodes


@pytest.fixture(scope="module")
def first_deploy(fresh_lab, tmp_path_factory):
    report = tmp_path_factory.mktemp("verify") / "health.json"
    started = time.monotonic()
    run = pyinfra("-y", "inventories/lab.py", "deploy.py", env={"HA_VERIFY_JSON": str(report)})
    run.elapsed = time.monotonic() - started
    run.report_path = report
    return run


def test_first_deploy_forms_the_whole_ha_layer(first_deploy):
    out = first_deploy.stdout
    assert first_deploy.returncode == 0, drills.run_excerpt(out)
    health = json.loads(first_deploy.report_path.read_text())
    assert health["ok"] is True, json.dumps(health, indent=1)[:4000]
    print(f"first deploy on fresh nodes: {first_deploy.elapsed:.1f} s")


def test_first_deploy_prints_what_openstack_services_need(first_deploy):
    out = first_deploy.stdout
    nodes = lab.node_names()
    memcached = ",".join(f"{n}:{sitemodel.data('memcached_port')}" for n in nodes)
    assert f"memcached_servers = {memcached}" in out
    m = re.search(r"transport_url = (rabbit://\S+)", out)
    assert m, out[-3000:]
    for node in nodes:
        assert f"@{node}:{sitemodel.data('rabbitmq_port')}" in m.group(1)
    assert f"@{sitemodel.vip()}:{sitemodel.listen_port('mariadb')}/" in out
    assert_no_secret(out)


def test_second_deploy_changes_nothing(first_deploy):
    started = time.monotonic()
    run = pyinfra("-y", "inventories/lab.py", "deploy.py")
    print(f"no-op re-run: {time.monotonic() - started:.2f} s")
    assert run.returncode == 0, drills.run_excerpt(run.stdout)
    assert drills.changed_operations(run.stdout) == [], run.stdout[-6000:]
    assert "] will " not in run.stdout
    assert "Blast radius: no service restarts or reloads" in run.stdout
    assert_no_secret(run.stdout)


def test_dry_run_diff_shows_the_change_masks_secrets_and_changes_nothing(first_deploy, tmp_path):
    # An operator changes one value of the site data: the dry run shows the diff of the one
    # file it touches, says which service would reload where, and leaves every host alone.
    inventory = tmp_path / "changed.py"
    inventory.write_text(
        f"import runpy\n"
        f"controllers = runpy.run_path({str(ROOT / 'inventories/lab.py')!r})['controllers']\n"
        f"controllers[1]['haproxy_maxconn'] = 4321\n"
        f"controllers[1]['haproxy_stats_user'] = 'ops'\n"
    )
    maxconn, user = sitemodel.data("haproxy_maxconn"), sitemodel.data("haproxy_stats_user")
    before = {n: node_sha(n, HAPROXY_CFG) for n in lab.node_names()}
    run = pyinfra("--dry", "--diff", str(inventory), "deploy.py")
    out = run.stdout
    assert run.returncode == 0, drills.run_excerpt(out)
    # haproxy.cfg holds no secret (issue 24): its changed lines are shown; the stats account's
    # own file (the user changed) is said changed, its content and any hash of it never shown
    for node in lab.node_names():
        assert f"[{node}] Will modify {HAPROXY_CFG}" in out, out[-6000:]
    assert f"Will modify {HAPROXY_STATS_USERS}" in out, out[-6000:]
    assert re.search(rf"^\s*-\s+maxconn {maxconn}$", out, re.M) and re.search(r"^\s*\+\s+maxconn 4321$", out, re.M), out[-6000:]
    assert "changed (content hidden)" in out and not re.search(r"content hidden.*[0-9a-f]{40}", out)
    assert "insecure-password" not in out and not re.search(rf"user ({re.escape(user)}|ops) ", out), out[-6000:]
    assert_no_secret(out)
    for node in ("node01", "node02", "node03"):
        assert f"[{node}] will reload haproxy" in out
    assert "will restart" not in out and "will reload keepalived" not in out
    # the blast radius: every reload, in the order it will run
    assert re.search(
        r"Blast radius, in the order the steps run:\n\s+1\. node01: reload haproxy\n"
        r"\s+2\. node02: reload haproxy\n\s+3\. node03: reload haproxy\n", out), out[-6000:]
    after = {n: node_sha(n, HAPROXY_CFG) for n in lab.node_names()}
    assert after == before


def test_verify_alone_reports_healthy_and_changes_nothing(first_deploy, tmp_path):
    report = tmp_path / "health.json"
    run = pyinfra("-y", "inventories/lab.py", "verify.py", env={"HA_VERIFY_JSON": str(report)}, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:]
    assert drills.changed_operations(run.stdout) == []
    health = json.loads(report.read_text())
    assert health["ok"] is True
    assert_no_secret(run.stdout)


def test_every_api_listener_on_the_vip_presents_the_site_certificate(first_deploy):
    """TLS on the VIP (issue 13): each HTTP API listener's certificate verifies against the lab's
    CA for the VIP's address (Python's own checks: chain, validity, subjectAltName IP); a plain
    listener (database, management) does not speak TLS; horizon's port 80 redirects to https."""
    from lab.clients import tls_context

    site = sitemodel.site()
    vip, tls_ports, plain_ports = sitemodel.vip(), [], []
    for listener in site.listeners:
        bind = listener.bind.split()
        (tls_ports if "ssl" in bind else plain_ports).append(int(bind[0].rsplit(":", 1)[1]))
    assert len(tls_ports) >= 10 and sitemodel.listen_port("mariadb") in plain_ports
    for port in tls_ports:
        assert tls_version(vip, port) in ("TLSv1.2", "TLSv1.3"), port
    with socket.create_connection((vip, sitemodel.listen_port("rabbitmq_management")), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            tls_context().wrap_socket(raw, server_hostname=vip)
    code, location = redirect_of(f"http://{vip}:{sitemodel.listen_port('horizon')}/")
    assert code == 301 and location.startswith(f"https://{vip}")


def test_the_external_vip_serves_the_public_listeners_only(first_deploy):
    """The external VIP ("Secure by default" item 2): every public listener answers there over
    TLS verified against the lab's CA for the external VIP's address (its IP SAN), as it answers
    on the VIP; horizon's port 80 there redirects to https on the external VIP; the database,
    RabbitMQ management and nova_metadata refuse connections there; exactly one node holds it,
    the one the health report names."""
    from lab import faults
    from lab.clients import http_status

    ext, vip = sitemodel.external_vip(), sitemodel.vip()
    assert ext and ext != vip
    public = sitemodel.public_listeners()
    assert {l.name for l in public} >= {"keystone_internal", "horizon", "nova_api", "glance_api"}
    tls_ports = []
    for listener in public:
        for bind in listener.external_binds:
            words = bind.split()
            assert words[0].rsplit(":", 1)[0] == ext, bind
            if "ssl" in words:
                tls_ports.append(int(words[0].rsplit(":", 1)[1]))
    assert len(tls_ports) == len(public)  # every public listener takes TLS there
    for port in tls_ports:
        assert tls_version(ext, port) in ("TLSv1.2", "TLSv1.3"), port  # IP:ext in the certificate
        url = sitemodel.external_vip_url(port)
        assert url == f"https://{ext}:{port}/"
        assert http_status(url) == http_status(sitemodel.vip_url(port)), port
    # a name the certificate does not carry fails there: the verification above is real
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_version(ext, tls_ports[0], name="openstack-ha.invalid")
    code, location = redirect_of(f"http://{ext}:{sitemodel.listen_port('horizon')}/")
    assert code == 301 and location.startswith(f"https://{ext}/")

    for name in ("mariadb", "rabbitmq_management", "nova_metadata"):
        port = sitemodel.listen_port(name)
        with pytest.raises(OSError):  # refused, or dropped by the firewall (config/firewall.py)
            socket.create_connection((ext, port), timeout=5).close()
        socket.create_connection((vip, port), timeout=5).close()  # served on the VIP all along

    holders = faults.holders(ext)
    assert len(holders) == 1, holders
    health = json.loads(first_deploy.report_path.read_text())
    assert health["external_vip_holders"] == holders


def test_vip_tls_policy_and_hsts(first_deploy):
    """Issue 24 item 4 on the lab's VIP (an ECDSA certificate): TLS 1.2 CBC-SHA1 suites and
    static RSA refused, ECDHE-GCM and TLS 1.3 agreed, no session ticket, HSTS on the answer."""
    port = sitemodel.listen_port("keystone_internal")
    target = f"{sitemodel.vip()}:{port}"

    def s_client(*args):
        r = subprocess.run(["openssl", "s_client", "-connect", target, *args], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30)
        out = r.stdout + r.stderr
        return r.returncode == 0 and "Cipher is (NONE)" not in out and "New, " in out, out

    for refused in (("-tls1_2", "-cipher", "AES128-SHA"), ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"),
                    ("-tls1_1", "-cipher", "ALL:@SECLEVEL=0")):
        ok, out = s_client(*refused)
        assert not ok, (refused, out[-1500:])
    ok, out = s_client("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert ok and "TLS session ticket:" not in out, out[-1500:]
    ok, out = s_client("-tls1_3")
    assert ok, out[-1500:]
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-", "--cacert", str(CA_FILE),
                        f"https://{target}/"], capture_output=True, text=True, timeout=30)
    assert re.search(r"(?im)^strict-transport-security: max-age=\d+", r.stdout), r.stdout
