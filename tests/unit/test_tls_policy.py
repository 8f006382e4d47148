"""The VIP's TLS policy as data (issue 24 item 4): HAProxy's global ssl-default-bind-* from
haproxy_tls_ciphers / _ciphersuites / _options (Mozilla intermediate without DHE: TLS 1.2+,
ECDHE with AEAD only, no session tickets), HSTS on the HTTPS listeners, and the operators'
listeners (stats page, RabbitMQ management) reached from admin_networks and the controllers.

The policy is tried on a real HAProxy: the rendered global TLS lines and a throwaway RSA
certificate on 127.0.0.1, asked by `openssl s_client`; a negative control without the policy
accepts what the policy refuses (the test can fail)."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from config.defaults import DEFAULTS
from config.files import HAPROXY_CFG, managed_files
from config.preflight import check
from config.secrets import PLACEHOLDERS
from config.site import build_site
from unitkit import free_port, listens, parse_haproxy, prod_data, throwaway_pem

GLOBAL_TLS = ("ssl-default-bind-ciphers", "ssl-default-bind-ciphersuites", "ssl-default-bind-options")


def cfg_of(**changes) -> str:
    hosts, group = prod_data()
    group.update(changes)
    report = check(hosts, group, secrets_required=False)
    assert report.errors == [], [str(p) for p in report.errors]
    site = build_site(hosts, group)
    return next(f.content for f in managed_files(site, "node01", PLACEHOLDERS) if f.path == HAPROXY_CFG)


def global_section(text: str):
    return next(s for s in parse_haproxy(text) if s.kind == "global")


def test_the_default_policy_is_mozilla_intermediate_ecdhe_aead_only():
    ciphers = DEFAULTS["haproxy_tls_ciphers"].split(":")
    assert ciphers and all(c.startswith("ECDHE-") for c in ciphers)
    assert all(("-GCM-" in c) or c.endswith("-CHACHA20-POLY1305") for c in ciphers)  # AEAD: no CBC, no SHA1 MAC
    assert not any(c.endswith("-SHA") for c in ciphers)
    assert DEFAULTS["haproxy_tls_options"].split() == ["ssl-min-ver", "TLSv1.2", "no-tls-tickets"]
    assert DEFAULTS["haproxy_hsts_max_age"] >= 15_552_000  # at least 180 days


def test_rendered_global_section_carries_the_policy_with_tls_only():
    g = global_section(cfg_of())
    assert g.values("ssl-default-bind-ciphers") == [DEFAULTS["haproxy_tls_ciphers"]]
    assert g.values("ssl-default-bind-ciphersuites") == [DEFAULTS["haproxy_tls_ciphersuites"]]
    assert g.values("ssl-default-bind-options") == ["ssl-min-ver TLSv1.2 no-tls-tickets"]
    changed = global_section(cfg_of(haproxy_tls_ciphers="ECDHE-RSA-AES256-GCM-SHA384", haproxy_tls_options="ssl-min-ver TLSv1.3"))
    assert changed.values("ssl-default-bind-ciphers") == ["ECDHE-RSA-AES256-GCM-SHA384"]
    assert changed.values("ssl-default-bind-options") == ["ssl-min-ver TLSv1.3"]
    # no TLS on the VIP: no policy lines (haproxy.cfg of before, test_tls.py)
    plain = global_section(cfg_of(haproxy_tls=False))
    assert not any(plain.values(k) for k in GLOBAL_TLS)


def test_hsts_on_every_https_listener_and_nowhere_else():
    sections = listens(parse_haproxy(cfg_of()))
    hsts = f'set-header Strict-Transport-Security "max-age={DEFAULTS["haproxy_hsts_max_age"]}" if {{ ssl_fc }}'
    tls = {n for n, s in sections.items() if any(" ssl crt " in b for b in s.values("bind"))}
    assert tls and "horizon" in tls and "mariadb" not in tls and "rabbitmq_management" not in tls
    for name, sec in sections.items():
        assert sec.values("http-after-response") == ([hsts] if name in tls else []), name
    off = listens(parse_haproxy(cfg_of(haproxy_hsts_max_age=0)))
    assert not any(s.values("http-after-response") for s in off.values())
    assert not any(s.values("http-after-response") for s in listens(parse_haproxy(cfg_of(haproxy_tls=False))).values())


def test_operators_listeners_take_admin_networks_and_the_controllers_only():
    controllers_and_vip = "100.2.30.41 100.2.30.42 100.2.30.43 100.2.30.40"
    for changes, sources in (({}, controllers_and_vip),
                             ({"admin_networks": ["192.0.2.0/24", "198.51.100.7/32"]},
                              controllers_and_vip + " 192.0.2.0/24 198.51.100.7/32")):
        sections = listens(parse_haproxy(cfg_of(**changes)))
        rule = [f"connection reject unless {{ src {sources} }}"]
        for name, sec in sections.items():
            assert sec.values("tcp-request") == (rule if name in ("stats", "rabbitmq_management") else []), name


def test_a_bad_tls_value_is_refused_naming_the_key():
    hosts, group = prod_data()
    for key, value in (("haproxy_tls_ciphers", "ECDHE RSA"), ("haproxy_tls_options", "ssl-min-ver TLSv1.2;x"),
                       ("haproxy_hsts_max_age", -1), ("admin_networks", ["10.0.0.0/255.255.255.0x"])):
        report = check(hosts, {**group, key: value}, secrets_required=False)
        assert [p.key for p in report.errors] == [key], (key, [str(p) for p in report.errors])


# --- a real HAProxy on 127.0.0.1 -------------------------------------------------------------


def serve(tmp_path, global_lines: list[str]):
    """A HAProxy on 127.0.0.1 with these global lines and a TLS bind (the throwaway RSA
    certificate); returns (process, port). The caller ends it by its PID."""
    port = free_port()
    cfg = tmp_path / f"tls-{port}.cfg"
    cfg.write_text("global\n" + "".join(f"    {line}\n" for line in global_lines) +
                   "defaults\n    mode http\n    timeout client 5s\n    timeout server 5s\n    timeout connect 1s\n"
                   f"frontend tls\n    bind 127.0.0.1:{port} ssl crt {throwaway_pem()}\n"
                   "    http-request return status 200\n")
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"haproxy did not listen on 127.0.0.1:{port}: {proc.stderr.read().decode()[-2000:]}")


def s_client(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "vip.test", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def handshake(port: int, *args: str) -> tuple[bool, str]:
    """Whether a handshake with these s_client options succeeds; its output."""
    r = s_client(port, *args)
    out = r.stdout + r.stderr
    agreed = r.returncode == 0 and "Cipher is (NONE)" not in out and "New, " in out
    return agreed, out


@pytest.fixture
def haproxy_with(tmp_path):
    started = []

    def start(global_lines):
        proc, port = serve(tmp_path, global_lines)
        started.append(proc)
        return port

    try:
        yield start
    finally:
        for proc in started:  # each by its own PID
            proc.kill()
            proc.wait()


def test_the_rendered_policy_refuses_cbc_static_rsa_old_tls_and_tickets(haproxy_with):
    rendered = global_section(cfg_of())
    policy = [f"{k} {v}" for k in GLOBAL_TLS for v in rendered.values(k)]
    assert len(policy) == 3
    port = haproxy_with(policy)
    ok, out = handshake(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert ok and "ECDHE-RSA-AES128-GCM-SHA256" in out, out[-1500:]
    for args in (("-tls1_2", "-cipher", "AES128-SHA"),  # static RSA, CBC, SHA1: no forward secrecy
                 ("-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"),  # ECDHE but CBC-SHA1
                 ("-tls1_1", "-cipher", "ALL:@SECLEVEL=0")):  # below ssl-min-ver
        ok, out = handshake(port, *args)
        assert not ok, (args, out[-1500:])
    ok, out = handshake(port, "-tls1_3")
    assert ok and "TLSv1.3" in out, out[-1500:]
    # no-tls-tickets: a TLS 1.2 session gets no ticket
    ok, out = handshake(port, "-tls1_2")
    assert ok and "TLS session ticket:" not in out, out[-1500:]


def test_negative_control_without_the_policy_haproxy_accepts_them(haproxy_with):
    port = haproxy_with([])
    ok, out = handshake(port, "-tls1_2", "-cipher", "AES128-SHA")
    assert ok and "AES128-SHA" in out, out[-1500:]
    ok, out = handshake(port, "-tls1_2")
    assert ok and "TLS session ticket:" in out, out[-1500:]
