"""Hostile secrets render into each file so that the daemon's own parser reads back the exact
value: the state transfer's option file beside galera.cnf through my_print_defaults (MariaDB's
option-file reader, the directory as mysqld reads it), the stats account's userlist with
haproxy.cfg through a real HAProxy answering HTTP basic auth, keepalived.conf and the auth_pass
file it includes through keepalived's own configuration dump (SIGUSR1), the health report's
management API login through curl (-K) sending HTTP basic auth to a local server. What a file
cannot carry, preflight refuses without showing it."""

from __future__ import annotations

import base64
import http.server
import json
import subprocess
import sys
import threading

import pytest

from unitkit import FAKE_SECRETS, netns, netns_sh, prod_data, throwaway_pem
from config.files import (GALERA_CNF, GALERA_SST_CNF, HAPROXY_CFG, HAPROXY_STATS_USERS, KEEPALIVED_AUTH, KEEPALIVED_CONF,
                          RABBITMQ_MONITOR_CURLRC, managed_files)
from config.preflight import check
from config.secrets import PLACEHOLDERS, mask
from config.site import build_site
from config.syntax import curl_quoted, haproxy_word, option_value
from facts.rabbitmq import RabbitmqMembers


# Printable passwords that break a naive `key = value` or `word` rendering.
HOSTILE = [
    "pass word", " leading", "trailing ", "    ", "a#b#c", "#start", 'dq"uo"te', "sq'uo'te", "back\\slash",
    "end\\", "\\\\\\", '\\"\\"', "\\s\\n\\t", "$HOME", "${PATH}", "$(id)", "`id`", "; touch /tmp/x",
    "a'b\"c#d$e\\f g", "x=y=z", "%s%d", "!bang", "{brace}", "''''", '""""',
]


def rendered(tmp_path, path: str, group_changes=None, **secrets) -> tuple[str, dict]:
    """node01's file `path` with these secrets; preflight must pass them first."""
    files, values = rendered_all(group_changes, **secrets)
    return files[path], values


def rendered_all(group_changes=None, **secrets) -> tuple[dict[str, str], dict]:
    """node01's files {path: content} with these secrets; preflight must pass them first."""
    hosts, group = prod_data()
    group.update(group_changes or {})
    values = {**FAKE_SECRETS, **secrets}
    report = check(hosts, group, secrets=values)
    assert report.errors == [], [str(p) for p in report.errors]
    site = build_site(hosts, group)
    return {f.path: f.content for f in managed_files(site, "node01", values)}, values


@pytest.mark.parametrize("password", HOSTILE)
def test_sst_password_reads_back_through_my_print_defaults(tmp_path, password):
    files, values = rendered_all(mariadb_sst_password=password)
    content = files[GALERA_SST_CNF]
    assert files[GALERA_CNF] == rendered_all()[0][GALERA_CNF]  # galera.cnf does not hold it
    # Both files in one directory, read as mysqld reads mariadb.conf.d (`!includedir`).
    confd = tmp_path / "mariadb.conf.d"
    confd.mkdir()
    for path in (GALERA_CNF, GALERA_SST_CNF):
        (confd / path.rsplit("/", 1)[1]).write_text(files[path])
    cnf = tmp_path / "my.cnf"
    cnf.write_text(f"!includedir {confd}\n")
    proc = subprocess.run(["my_print_defaults", f"--defaults-file={cnf}", "galera"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    options = proc.stdout.split("\n")
    assert f"--wsrep_sst_auth=sst:{password}" in options
    assert "--wsrep_on=ON" in options and any(o.startswith("--wsrep_provider_options=pc.recovery=TRUE; gcache.size=512M; evs.suspect_timeout=PT3S; gmcast.listen_addr=tcp://") for o in options)
    shown = mask(content, values)
    placeholder = f"sst:{PLACEHOLDERS['mariadb_sst_password']}"
    # masked where the value was quoted: the quotes stay, the value is gone
    assert {f"wsrep_sst_auth = {placeholder}", f'wsrep_sst_auth = "{placeholder}"'} & set(shown.splitlines())
    assert password not in shown and option_value(password) not in shown


def basic_auth_of_one_request(command: str) -> str:
    """The HTTP basic auth `command` (a curl run to port PORT of 127.0.0.1) sends to a local
    server that answers 401: the user:password it carried."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        subprocess.run(["sh", "-c", command.replace(":PORT/", f":{server.server_port}/")], capture_output=True, timeout=30)
    finally:
        server.server_close()
    assert len(seen) == 1 and seen[0].startswith("Basic "), seen
    return base64.b64decode(seen[0][6:]).decode()


# rabbitmqctl trims what it reads: preflight refuses leading or trailing whitespace there
MONITOR_HOSTILE = [p for p in HOSTILE if p == p.strip()]


@pytest.mark.parametrize("password", MONITOR_HOSTILE)
def test_monitor_password_reads_back_through_curl(tmp_path, password):
    content, values = rendered(tmp_path, RABBITMQ_MONITOR_CURLRC, rabbitmq_monitor_password=password)
    curlrc = tmp_path / "monitor.curlrc"
    curlrc.write_text(content)
    # the fact's own command, at a local server: what curl sends is the account and the exact password
    command = RabbitmqMembers().command("127.0.0.1", 0, str(curlrc)).replace(":0/", ":PORT/")
    user = prod_data()[1].get("rabbitmq_monitor_user", "openstack-ha-monitor")
    assert basic_auth_of_one_request(command) == f"{user}:{password}"
    shown = mask(content, values)  # what a render shows: the placeholder where the value was quoted
    assert f'user = "{user}:{PLACEHOLDERS["rabbitmq_monitor_password"]}"' in shown.splitlines()
    assert password not in shown and curl_quoted(password)[1:-1] not in shown


def test_plain_values_render_bare_as_before():
    # A site whose secrets need no quoting renders what it did: no reload for nothing.
    assert haproxy_word("openstack:fake-stats-Zq81x") == "openstack:fake-stats-Zq81x"
    assert option_value("sst:fake-sst-Hj55m") == "sst:fake-sst-Hj55m"
    assert haproxy_word("openstack:a b") == "'openstack:a b'"
    assert haproxy_word("a'b") == "'a'\\''b'"
    assert option_value('sst:a"b\\') == '"sst:a\\"b\\\\"'
    assert curl_quoted("m:fake-rabbitmon-Lm63v") == '"m:fake-rabbitmon-Lm63v"'  # curl's file: always quoted
    assert curl_quoted('m:a"b\\') == '"m:a\\"b\\\\"'


# A client run inside the namespace: starts HAProxy on each config, asks the stats page with
# the right password and a wrong one, prints {password: [status right, status wrong]}.
CLIENT = r"""
import base64, json, socket, subprocess, sys, time, urllib.request, urllib.error
cases = json.load(open(sys.argv[1]))
out = {}
for cfg, users, password in cases:
    proc = subprocess.Popen(["haproxy", "-db", "-f", cfg, "-f", users], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            socket.create_connection(("100.2.30.41", 1984), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    codes = []
    for pw in (password, password + "x"):
        token = base64.b64encode(("openstack:" + pw).encode()).decode()
        req = urllib.request.Request("http://100.2.30.41:1984/", headers={"Authorization": "Basic " + token})
        try:
            codes.append(urllib.request.urlopen(req, timeout=5).status)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
    proc.kill()
    proc.wait()
    out[password] = codes
print(json.dumps(out))
"""


@pytest.mark.netns
def test_stats_password_reads_back_through_a_real_haproxy(tmp_path):
    cases = []
    for i, password in enumerate(HOSTILE):
        sock = tmp_path / f"admin{i}.sock"
        files, _ = rendered_all({"haproxy_stats_socket": str(sock), "haproxy_tls_pem_path": str(throwaway_pem())},
                                haproxy_stats_password=password)
        assert files[HAPROXY_CFG] == rendered_all({"haproxy_stats_socket": str(sock), "haproxy_tls_pem_path": str(throwaway_pem())})[0][HAPROXY_CFG]
        cfg, users = tmp_path / f"haproxy{i}.cfg", tmp_path / f"stats{i}.cfg"
        cfg.write_text(files[HAPROXY_CFG])
        users.write_text(files[HAPROXY_STATS_USERS])
        check_proc = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg), "-f", str(users)], capture_output=True, text=True, timeout=30)
        assert check_proc.returncode == 0, (password, check_proc.stdout + check_proc.stderr)
        cases.append((str(cfg), str(users), password))
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "client.py").write_text(CLIENT)
    with netns() as ns:
        proc = netns_sh(ns, "ip link set lo up && ip addr add 100.2.30.40/32 dev lo && ip addr add 100.2.30.41/32 dev lo && "
                            f"{sys.executable} {tmp_path / 'client.py'} {tmp_path / 'cases.json'}", timeout=120)
    assert proc.returncode == 0, proc.stderr
    codes = json.loads(proc.stdout)
    assert codes == {pw: [200, 401] for pw in HOSTILE}


# Every character vrrp_auth_pass admits, in passwords of keepalived's 8.
VRRP_HOSTILE = ["%&()*+,.", "/:;<=>?@", "[]^_|~-A"]

DUMP = (
    "mount --bind {dir} /etc/keepalived && mount -t tmpfs none /tmp && mount -t tmpfs none /run && "
    "(keepalived -n -l -f /etc/keepalived/keepalived.conf >/dev/null 2>&1 & echo $! > /tmp/ka.pid) && "
    "for i in $(seq 50); do [ -s /run/keepalived.pid ] && break; sleep 0.1; done; sleep 0.5; "
    "kill -USR1 $(cat /run/keepalived.pid); for i in $(seq 20); do grep -q 'Password =' /tmp/keepalived.data 2>/dev/null && break; sleep 0.1; done; "
    "grep 'Password =' /tmp/keepalived.data; kill $(cat /tmp/ka.pid)"
)


@pytest.mark.netns
@pytest.mark.parametrize("password", VRRP_HOSTILE)
def test_vrrp_password_reads_back_through_keepalived_dump(tmp_path, password):
    files, _ = rendered_all(vrrp_auth_pass=password)
    assert files[KEEPALIVED_CONF] == rendered_all()[0][KEEPALIVED_CONF]  # keepalived.conf does not hold it
    ka = tmp_path / "keepalived"
    ka.mkdir()
    # keepalived.conf includes the password's file by its path under /etc/keepalived (bind-mounted)
    for path in (KEEPALIVED_CONF, KEEPALIVED_AUTH):
        (ka / path.rsplit("/", 1)[1]).write_text(files[path])
    with netns() as ns:
        proc = netns_sh(ns, DUMP.format(dir=ka))
    assert proc.stdout.strip() == f"Password = {password}", proc.stdout + proc.stderr


# --- what cannot be carried is refused, naming the secret, never showing it ---------------

REFUSED = {
    "vrrp_auth_pass": ["ab#cd", "ab!cd", 'ab"cd', "ab{cd", "ab}cd", "a b", "ab$cd", "ab\\cd", "a\nb"],
    "haproxy_stats_password": ["a\nb", "a\rb", "a\x00b", "a\tb", "é-not-ascii"],
    "mariadb_sst_password": ["a\nwsrep_on = OFF", "a\x1bb", "a\x7fb"],
    "mariadb_admin_password": ["a\nb", "a\x00b"],
    "rabbitmq_password": ["a\nb", "a\rb"],
    "rabbitmq_erlang_cookie": ["SHORT", "WITH SPACE INSIDE IT 123", "NEWLINE\nAFTER-TWENTY-CHARS", "ÄÖÜ" * 10],
}


@pytest.mark.parametrize("name,value", [(n, v) for n, vs in REFUSED.items() for v in vs])
def test_a_secret_the_file_cannot_carry_is_refused_without_showing_it(name, value):
    hosts, group = prod_data()
    report = check(hosts, group, secrets={**FAKE_SECRETS, name: value})
    assert [(p.where, p.key) for p in report.errors] == [("controllers", name)]
    line = str(report.errors[0])
    assert "\n" not in line and value not in line and repr(value)[1:-1] not in line
