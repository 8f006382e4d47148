"""TLS on the VIP (issue 13, item 1), offline: the HTTP APIs of the catalogue take TLS with the
site's certificate (haproxy_tls, on by default), their servers unchanged; a site that says
"haproxy_tls": False gets exactly the haproxy.cfg of before; the real `haproxy -c` loads the
config with a throwaway self-signed certificate."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from config.defaults import DEFAULTS, FAILOVER_ANCHORS
from config.files import HAPROXY_CFG, managed_files
from config.preflight import check
from config.secrets import PLACEHOLDERS
from config.site import build_site
from unitkit import FAKE_SECRETS, haproxy_check, listens, parse_haproxy, prod_data, render_inventory, throwaway_pem, variant

GOLDEN = Path(__file__).resolve().parent / "golden" / "prod-node01-haproxy.cfg"  # prod.py's, before TLS
PEM = "/etc/haproxy/openstack-ha.pem"
VIP = "100.2.30.40"


def cfg_of(tls: bool, **changes) -> str:
    hosts, group = prod_data()
    site = build_site(hosts, {**group, "haproxy_tls": tls, **changes})
    return next(f.content for f in managed_files(site, "node01", PLACEHOLDERS) if f.path == HAPROXY_CFG)


# The failover timers of before issue 12 (the article's): with them and no TLS, the config of before.
BEFORE_FAILOVER = FAILOVER_ANCHORS


def test_no_tls_renders_exactly_the_config_of_before():
    assert cfg_of(False, **BEFORE_FAILOVER) == GOLDEN.read_text()
    assert cfg_of(True, **BEFORE_FAILOVER) != GOLDEN.read_text()


def test_the_anchors_are_defaults_of_before_that_the_deploy_changed():
    """make bench-failover's "anchors" profile: keys the site knows, each value now different."""
    assert FAILOVER_ANCHORS and all(k in DEFAULTS and DEFAULTS[k] != v for k, v in FAILOVER_ANCHORS.items())
    assert problems_of(**FAILOVER_ANCHORS) == []  # preflight takes them (the bench deploys them)


def test_http_apis_take_tls_the_rest_as_before():
    on, off = (listens(parse_haproxy(cfg_of(t))) for t in (True, False))
    assert set(on) == set(off)
    for name, sec in on.items():
        before = off[name]
        assert sec.values("server") == before.values("server"), name  # TLS ends at HAProxy
        if name in ("stats", "mariadb", "rabbitmq_management"):
            assert sec.lines == before.lines, name
        elif name == "horizon":
            assert sec.values("bind") == [f"{VIP}:443 ssl crt {PEM}", f"{VIP}:80"]
            assert sec.values("http-request")[0] == "redirect location https://%[req.hdr(host),regsub(:[0-9]+$,)]%[capture.req.uri] code 301 if !{ ssl_fc }"
        else:
            (bind,) = before.values("bind")
            assert sec.values("bind") == [f"{bind} ssl crt {PEM}"], name
            assert sec.values("http-request")[-1] == "set-header X-Forwarded-Proto https if { ssl_fc }", name


def test_a_site_service_can_stay_clear_text_and_tcp_never_takes_tls():
    cfg = cfg_of(True, services={"octavia_api": {"port": 9876, "tls": False}, "syslog": {"port": 6514, "mode": "tcp"}})
    ls = listens(parse_haproxy(cfg))
    assert ls["octavia_api"].values("bind") == [f"{VIP}:9876"]
    assert ls["syslog"].values("bind") == [f"{VIP}:6514"]


def test_the_certificate_is_a_secret_file_only_with_tls():
    hosts, group = prod_data()
    site = build_site(hosts, group)
    (pem,) = [f for f in managed_files(site, "node01", FAKE_SECRETS) if f.path == PEM]
    assert (pem.mode, pem.user, pem.group, pem.secret) == ("0640", "root", "haproxy", True)
    assert pem.content == FAKE_SECRETS["haproxy_tls_pem"]
    paths = [f.path for f in managed_files(site, "node01", FAKE_SECRETS)]
    assert paths.index(PEM) < paths.index(HAPROXY_CFG)  # haproxy -c of the new config reads it
    off = build_site(hosts, {**group, "haproxy_tls": False})
    assert PEM not in [f.path for f in managed_files(off, "node01", FAKE_SECRETS)]


@pytest.mark.parametrize("tls", [True, False])
def test_haproxy_c_passes_with_and_without_tls(tmp_path, tls):
    out = tmp_path / "out"
    render_inventory(variant(tmp_path, haproxy_tls=tls), out)
    cfg = out / "node01" / HAPROXY_CFG.lstrip("/")
    proc = haproxy_check(cfg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if tls:
        # negative control: haproxy -c does load the certificate (the path a render names is absent here)
        bad = tmp_path / "missing-cert.cfg"
        bad.write_text(cfg.read_text().replace(f"ssl crt {PEM}", f"ssl crt {tmp_path}/none.pem"))
        proc = subprocess.run(["haproxy", "-c", "-f", str(bad)], capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0 and "none.pem" in proc.stdout + proc.stderr


def test_the_throwaway_certificate_is_a_real_one():
    text = throwaway_pem().read_text()
    assert "-----BEGIN CERTIFICATE-----" in text and "PRIVATE KEY-----" in text


# --- preflight ------------------------------------------------------------------------------


def problems_of(secrets=None, **changes):
    hosts, group = prod_data()
    return check(hosts, {**group, **changes}, secrets=dict(FAKE_SECRETS) if secrets is None else secrets).errors


def test_tls_without_a_certificate_is_refused_naming_the_way_out():
    secrets = {k: v for k, v in FAKE_SECRETS.items() if k != "haproxy_tls_pem"}
    (p,) = problems_of(secrets)
    assert (p.where, p.key) == ("controllers", "haproxy_tls_pem")
    assert "HA_SECRET_HAPROXY_TLS_PEM" in str(p) and "haproxy_tls: False" in p.fix
    assert problems_of(secrets, haproxy_tls=False) == []  # a site that says no TLS needs none


@pytest.mark.parametrize("pem,says", [
    ("-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n", "PRIVATE KEY"),
    ("-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n", "CERTIFICATE"),
    (FAKE_SECRETS["haproxy_tls_pem"].replace("-----END PRIVATE KEY", "QUJD\x1b\n-----END PRIVATE KEY"), "printable"),
])
def test_a_pem_that_is_no_bundle_is_refused_without_showing_it(pem, says):
    (p,) = problems_of({**FAKE_SECRETS, "haproxy_tls_pem": pem})
    assert p.key == "haproxy_tls_pem" and says in p.message
    assert "QUJD" not in str(p)


def test_the_https_port_clashes_like_any_listener_port():
    (p,) = problems_of(services={"octavia_api": {"port": 443}})
    assert p.key == "services.octavia_api.port" and "horizon" in p.message
    assert problems_of(services={"octavia_api": {"port": 443}}, haproxy_tls=False) == []


@pytest.mark.parametrize("key,value", [("haproxy_tls", "yes"), ("haproxy_tls_pem_path", "etc/haproxy/x.pem")])
def test_tls_keys_are_checked_by_the_schema(key, value):
    (p,) = problems_of(**{key: value})
    assert p.key == key and p.fix
