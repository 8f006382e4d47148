"""The lab's keystone backend (lab/keystone.py), offline: what the nodes get (keystone.conf, the
uwsgi socket, debconf answers), the database statements and their guard, the state fact's
parsing, the secrets file, and the client against a keystone stand-in on the loopback."""

from __future__ import annotations

import hashlib
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from config.site import build_site
from healthkit import lab_site
from lab import backends, keystone as ks
from unitkit import FAKE_SECRETS

KS_SECRETS = {"keystone_db_password": "fakeKsDbPw0123456789abcd", "keystone_admin_password": "fakeKsAdm0123456789abcd"}
ADDRESSES = ["10.77.0.11", "10.77.0.12", "10.77.0.13"]


def conf_values(text: str) -> dict[tuple[str, str], str]:
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[(section, key.strip())] = value.strip()
    return out


# --- keystone.conf --------------------------------------------------------------------------


def test_conf_takes_the_deploys_strings_and_the_vip():
    site = lab_site()
    said = site.client_strings(FAKE_SECRETS)
    v = conf_values(ks.render_conf(site, FAKE_SECRETS, KS_SECRETS))
    assert v[("database", "connection")] == (
        f"mysql+pymysql://keystone:{KS_SECRETS['keystone_db_password']}@10.77.0.100:{site.data['mariadb_port']}/keystone")
    assert v[("cache", "memcache_servers")] == said["memcached_servers"] == "node01:11211,node02:11211,node03:11211"
    assert v[("cache", "backend")] == "oslo_cache.memcache_pool" and v[("cache", "enabled")] == "true"
    assert v[("oslo_messaging_notifications", "transport_url")] == said["transport_url"]
    assert v[("oslo_messaging_notifications", "driver")] == "messagingv2"
    assert v[("token", "provider")] == "fernet"
    assert v[("fernet_tokens", "key_repository")].rstrip("/") == ks.FERNET_DIR


def test_conf_holds_no_admin_password_and_no_other_secret_but_its_own():
    text = ks.render_conf(lab_site(), FAKE_SECRETS, KS_SECRETS)
    assert KS_SECRETS["keystone_admin_password"] not in text
    assert FAKE_SECRETS["mariadb_admin_password"] not in text
    # the only site secret in it is the one every service's transport_url carries
    assert [k for k, v in FAKE_SECRETS.items() if v and v in text] == ["rabbitmq_password"]


def test_database_password_is_quoted_in_the_url():
    url = ks.database_url(lab_site(), "a@b/c:d")
    assert url.endswith("@10.77.0.100:3306/keystone") and "a%40b%2Fc%3Ad" in url


def test_endpoint_on_the_vip_https_when_the_listener_takes_tls():
    assert ks.public_url(lab_site()) == "https://10.77.0.100:5000/v3"
    plain = build_site([(n, {"address": a, "vrrp_priority": 150 - i}) for i, (n, a) in
                        enumerate(zip(("node01", "node02", "node03"), ADDRESSES))],
                       {"internal_network": "10.77.0.0/24", "vip": "10.77.0.100", "vip_interface": "enp8s0f0",
                        "haproxy_tls": False})
    assert ks.public_url(plain) == "http://10.77.0.100:5000/v3"
    assert ks.backend_port(lab_site()) == 5000
    assert "--bootstrap-public-url" in ks.bootstrap_args(lab_site())
    assert all(KS_SECRETS["keystone_admin_password"] not in a for a in ks.bootstrap_args(lab_site()))


# --- uwsgi and debconf ------------------------------------------------------------------------


def test_uwsgi_binds_the_node_address_only():
    defaults = ks.render_defaults("10.77.0.12", 5000)
    assert 'DAEMON_ARGS="--http-socket 10.77.0.12:5000 --ini /etc/keystone/lab-uwsgi.ini"' in defaults
    ini = ks.render_uwsgi_ini("10.77.0.12", 5000)
    assert "socket =" not in ini          # the socket is DAEMON_ARGS' alone: one bind, the node's address
    assert "apparmor" not in ini.replace("no apparmor", "")
    assert f"processes = {ks.PROCESSES}" in ini and "wsgi-file = /usr/bin/keystone-wsgi-public" in ini


def test_preseed_answers_every_question_no():
    lines = ks.preseed_text().splitlines()
    assert set(lines) == {f"keystone {q} boolean false" for q, _, _ in ks.PRESEED} | {
        f"keystone {q} seen true" for q, _, _ in ks.PRESEED}
    assert {q for q, _, _ in ks.PRESEED} == {"keystone/configure_db", "keystone/create-admin-tenant",
                                             "keystone/register-endpoint"}


# --- the database statements and their guard ------------------------------------------------


def digest(password: str) -> str:
    return hashlib.sha256(ks.native_hash(password).encode()).hexdigest()


PW = KS_SECRETS["keystone_db_password"]
RIGHT = {a: digest(PW) for a in ADDRESSES}


@pytest.mark.parametrize("present, db_exists, want", [
    (RIGHT, True, []),                                                    # all right: nothing
    ({}, False, ["CREATE DATABASE"] + ["CREATE USER", "ALTER USER", "GRANT"] * 3),
    (RIGHT, False, ["CREATE DATABASE"]),                                  # database gone, accounts kept
    ({**RIGHT, "10.77.0.12": digest("old")}, True, ["CREATE USER", "ALTER USER", "GRANT"]),  # a changed password
    ({k: v for k, v in RIGHT.items() if k != "10.77.0.13"}, True, ["CREATE USER", "ALTER USER", "GRANT"]),  # a new node
    ({**RIGHT, "%": digest(PW)}, True, []),                               # another host part: left alone
])
def test_db_statements(present, db_exists, want):
    sql = ks.db_statements(ADDRESSES, PW, present, db_exists)
    assert [next(k for k in ("CREATE DATABASE", "CREATE USER", "ALTER USER", "GRANT") if s.startswith(k)) for s in sql] == want
    assert all(PW not in s for s in sql)                                  # only the hash travels
    assert all(ks.native_hash(PW) in s for s in sql if "USER" in s)


def test_parse_state():
    out = ["installed=yes", "key=/etc/keystone/fernet-keys:0=aa", "key=/etc/keystone/fernet-keys:1=bb",
           "key=/etc/keystone/credential-keys:0=cc", "db=1", "account=10.77.0.11=dd", "account=%=ee",
           "user=1", "bootstrapped=ff", "synced=0", "end=yes"]
    got = ks.parse_state(out)
    assert got == {"installed": True, "db": True, "accounts": {"10.77.0.11": "dd", "%": "ee"}, "user": True,
                   "bootstrapped": "ff", "synced": True, "keys": {ks.FERNET_DIR: {"0": "aa", "1": "bb"}, ks.CREDENTIAL_DIR: {"0": "cc"}}}
    empty = ks.parse_state(["installed=no", "db=0", "user=0", "bootstrapped=", "synced=none", "end=yes"])
    assert empty == {"installed": False, "db": False, "accounts": {}, "user": False, "synced": False, "bootstrapped": "",
                     "keys": {ks.FERNET_DIR: {}, ks.CREDENTIAL_DIR: {}}}
    # db_sync --check's non-zero statuses (2 expand, 3 migrate, 4 contract) are not current
    assert not ks.parse_state(["synced=2"])["synced"]


@pytest.mark.parametrize("user, marker, want", [
    (False, "", True),                          # first run
    (True, "", True),                           # an admin made by something else: our password set
    (True, "digest-of-old", True),              # the secret changed: bootstrap resets the password
    (True, "RIGHT", False),                     # done with this password: nothing
    (False, "RIGHT", True),                     # the database was remade
])
def test_needs_bootstrap(user, marker, want):
    pw = KS_SECRETS["keystone_admin_password"]
    marker = ks.password_digest(pw) if marker == "RIGHT" else marker
    assert ks.needs_bootstrap({"user": user, "bootstrapped": marker}, pw) is want


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_made_once_private_and_kept(tmp_path):
    path = tmp_path / "keystone-secrets.json"
    first = ks.ensure_secrets(path)
    assert set(first) == set(ks.SECRET_NAMES) | set(ks.KEYS)
    assert all(len(first[n]) == 24 and first[n].isalnum() for n in ks.SECRET_NAMES)
    # the keys as keystone-manage fernet_setup writes them: 32 random bytes, URL-safe base64 (44 characters)
    assert all(len(base64.urlsafe_b64decode(first[n])) == 32 and len(first[n]) == 44 for n in ks.KEYS)
    assert len({first[n] for n in ks.KEYS}) == len(ks.KEYS)
    assert path.stat().st_mode & 0o777 == 0o600
    assert ks.ensure_secrets(path) == first
    data = json.loads(path.read_text())
    del data["keystone_admin_password"]
    data["something_else"] = "kept"
    path.write_text(json.dumps(data))
    path.chmod(0o644)
    again = ks.ensure_secrets(path)
    assert again["keystone_db_password"] == first["keystone_db_password"]
    assert again["keystone_admin_password"] != first["keystone_admin_password"] and again["something_else"] == "kept"
    assert path.stat().st_mode & 0o777 == 0o600


def test_responder_and_backends_agree_on_the_owned_directory():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_responder", backends.__file__.replace("backends.py", "responder.py"))
    responder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(responder)
    assert responder.OWNED_DIR == backends.OWNED_DIR and responder.DOWN_DIR == backends.DOWN_DIR


# --- the client against a keystone stand-in on the loopback ---------------------------------


class FakeKeystone(BaseHTTPRequestHandler):
    projects: dict = {}
    calls: list = []
    password = "right-password"

    def _send(self, status, body=None, headers=()):
        raw = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(raw)))
        if raw:
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(raw)

    def _body(self):
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

    def do_POST(self):
        body = self._body()
        self.calls.append(("POST", self.path))
        if self.path == "/v3/auth/tokens":
            pw = body["auth"]["identity"]["password"]["user"]["password"]
            if pw != self.password:
                return self._send(401, {"error": {"code": 401, "message": "The request you have made requires authentication."}})
            # the shape keystone answers (keystoneauth reads expires_at)
            return self._send(201, {"token": {
                "methods": ["password"], "expires_at": "2999-01-01T00:00:00.000000Z",
                "issued_at": "2026-01-01T00:00:00.000000Z", "catalog": [],
                "user": {"id": "u1", "name": "admin", "domain": {"id": "default", "name": "Default"}},
                "project": {"id": "p-admin", "name": "admin", "domain": {"id": "default", "name": "Default"}}}},
                [("X-Subject-Token", "tok123")])
        if self.path == "/v3/projects" and self.headers.get("X-Auth-Token") == "tok123":
            pid = f"p{len(self.projects)}"
            self.projects[pid] = body["project"]["name"]
            return self._send(201, {"project": {"id": pid}})
        return self._send(401, {"error": {"code": 401}})

    def do_DELETE(self):
        self.calls.append(("DELETE", self.path))
        pid = self.path.rsplit("/", 1)[1]
        if self.headers.get("X-Auth-Token") == "tok123" and self.projects.pop(pid, None):
            return self._send(204)
        return self._send(404, {"error": {"code": 404}})

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_keystone():
    FakeKeystone.projects, FakeKeystone.calls = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKeystone)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_client_cycle(fake_keystone):
    client = ks.Client(url=fake_keystone, password=FakeKeystone.password, timeout=5)
    timings = client.cycle()
    assert set(timings) == {"token", "create", "delete"}
    assert [c[0] for c in FakeKeystone.calls] == ["POST", "POST", "DELETE"]
    assert FakeKeystone.projects == {}


def test_client_error_names_the_status_never_the_password(fake_keystone):
    client = ks.Client(url=fake_keystone, password="wrong-password-xyz", timeout=5)
    with pytest.raises(ks.KeystoneError) as exc:
        client.issue_token()
    assert "HTTP 401" in str(exc.value) and "wrong-password-xyz" not in str(exc.value)


def test_client_no_answer_is_a_connection_error_not_a_keystone_answer():
    """A refused connection is "no answer" (an OSError: the soak records the call as unknown),
    never a KeystoneError (keystone answered: it did not do it)."""
    import socket
    with socket.socket() as s:   # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        client = ks.Client(url=url, password="x", timeout=2)
        with pytest.raises(ConnectionError) as exc:
            client.issue_token()
    assert not isinstance(exc.value, ks.KeystoneError) and "no answer" in str(exc.value)
