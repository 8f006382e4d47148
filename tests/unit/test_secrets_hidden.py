"""Secrets never shown (issue 13, item 6), offline: no secret reaches a command line on the
hosts (every command is an argument of `sh -c`, visible in `ps` to every local user), each one
a command needs travels in a 0600 file, and `--dry --diff` never fetches or prints a file that
holds a secret, nor a hash of it; the main configs hold none and are shown (issue 24)."""

from __future__ import annotations

import logging
import re

import pytest
from pyinfra.api import Config, FileUploadCommand, QuoteString, StringCommand
from pyinfra.api.hiddenvalue import HiddenValue

import opkit
from config.files import (
    GALERA_CNF, GALERA_SST_CNF, HAPROXY_CFG, HAPROXY_STATS_USERS, KEEPALIVED_AUTH, KEEPALIVED_CONF, RABBITMQ_MONITOR_CURLRC,
    managed_files,
)
from config.syntax import ENCODINGS
from config.accounts import native_hash
from unitkit import FAKE_SECRETS


def secret_forms() -> dict[str, str]:
    """Every form of every fake secret a command could carry: the value, as a file quotes it,
    and the MariaDB hashes (a mysql_native_password hash logs in as well as the password)."""
    forms = {}
    for name, value in FAKE_SECRETS.items():
        for form in {value, *(encode(value) for encode in ENCODINGS)}:
            forms[form] = name
    for name in ("mariadb_admin_password", "mariadb_sst_password"):
        forms[native_hash(FAKE_SECRETS[name])] = f"{name} (hash)"
    return forms


def raw(cmd):
    """A command as the host's shell gets it (not the masked form pyinfra prints)."""
    if isinstance(cmd, FileUploadCommand):
        return ("upload", cmd.dest, cmd.src.getvalue())
    return cmd.get_raw_value() if isinstance(cmd, StringCommand) else str(cmd)


def on_command_lines(commands: list) -> list[str]:
    """The secrets a list of raw commands carries on a command line."""
    forms = secret_forms()
    return [f"{forms[f]} in {c[:80]!r}" for c in commands if isinstance(c, str) for f in forms if f in c]


def raw_run(monkeypatch, case_name: str) -> dict[str, list]:
    monkeypatch.setattr(opkit, "render_command", raw)
    return opkit.run(opkit.load_case(opkit.CASES / f"{case_name}.json"))


def test_the_detector_finds_a_secret_on_a_command_line():
    """Negative control: how the accounts and RabbitMQ passwords travelled before (printf of a
    HiddenValue: masked in pyinfra's output, in clear in `sh -c '...'`)."""
    cmd = StringCommand("printf '%s'", QuoteString(HiddenValue(FAKE_SECRETS["rabbitmq_password"], "<pw>")), "| rabbitmqctl add_user x")
    assert "<pw>" in str(cmd)
    assert on_command_lines([raw(cmd)]) == [f"rabbitmq_password in {raw(cmd)[:80]!r}"]


@pytest.mark.parametrize("case", ["site/fresh", "galera/member_added", "rabbitmq/config_changed"])
def test_no_secret_on_a_command_line_each_in_a_0600_file(monkeypatch, case):
    got = raw_run(monkeypatch, case)
    commands = [c for rows in got.values() for _, cmds in rows for c in cmds]
    assert on_command_lines(commands) == []
    forms = secret_forms()
    carried = set()
    for name, rows in got.items():
        for op, cmds in rows:
            for i, c in enumerate(cmds):
                if isinstance(c, tuple) and any(f in c[2] for f in forms):
                    carried |= {forms[f] for f in forms if f in c[2]}
                    # the file exists, empty and 0600, before the upload writes into it
                    assert i > 0 and f"install -m 600 /dev/null {c[1]}" in cmds[i - 1], f"{name}: {op}: {c[1]} is not 0600"
    if case == "site/fresh":  # every secret was needed somewhere, and found in a file
        # (the admin password only as its hash: MariaDB is given nothing else)
        assert carried == (set(FAKE_SECRETS) - {"mariadb_admin_password"}) | {
            "mariadb_admin_password (hash)", "mariadb_sst_password (hash)"}, carried


def diff_run(monkeypatch, caplog, case: dict) -> str:
    monkeypatch.setattr(opkit, "Config", lambda: Config(DIFF=True))
    with caplog.at_level(logging.INFO):
        opkit.run(case)
    return caplog.text


# (component, its main config, the file that holds its secret: config/files.py)
SPLIT = [
    ("haproxy", HAPROXY_CFG, HAPROXY_STATS_USERS),
    ("keepalived", KEEPALIVED_CONF, KEEPALIVED_AUTH),
    ("galera", GALERA_CNF, GALERA_SST_CNF),
    # the health report's management API login: installed by the rabbitmq component's configure()
    ("rabbitmq", "/etc/rabbitmq/rabbitmq.conf", RABBITMQ_MONITOR_CURLRC),
]
HEX40 = re.compile(r"\b[0-9a-f]{40}\b")


@pytest.mark.parametrize("component,main,secret", SPLIT, ids=[c for c, _, _ in SPLIT])
def test_a_diff_shows_the_main_config_masked_and_a_secret_file_only_as_changed(monkeypatch, caplog, component, main, secret):
    """Issue 24 item 2: both files differ from the host's; --diff shows every changed line of
    the main config (it holds no secret) and says of the secret's file only that it changes:
    no content, no hash (a SHA1 of a password file is a crackable hash)."""
    case = opkit.load_case(opkit.CASES / "site" / "deployed.json")
    _, _, site = opkit.case_site(case)
    files = {f.path: f for f in managed_files(site, "node01", FAKE_SECRETS)}
    assert not files[main].secret and files[secret].secret
    # the host's main config: the one the deploy writes with its first setting line changed
    lines = files[main].content.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith(("#", "[")))
    on_host = [*lines[:first], lines[first] + " # edited on the host", *lines[first + 1:]]
    case = {**case, "components": [component], "commands": {}}
    common = case["facts"]["*"]
    case["facts"] = {**case["facts"], "*": {**common, "FileStates": {main: {"sha1": "0" * 40}, secret: {"sha1": "1" * 40}},
                                            "FileContents": {**common["FileContents"], main: on_host}}}
    text = diff_run(monkeypatch, caplog, case)
    assert f"Will modify {main}" in text and f"Will modify {secret}" in text
    assert f"-{lines[first]} # edited on the host" in text and f"+{lines[first]}" in text
    assert "changed (content hidden)" in text
    assert not HEX40.findall(text), HEX40.findall(text)  # neither the host's SHA1 nor the new one
    for form, name in secret_forms().items():
        assert form not in text, name


def test_a_new_secret_file_is_said_new_without_a_hash(monkeypatch, caplog):
    case = opkit.load_case(opkit.CASES / "haproxy" / "config_changed.json")
    case["facts"]["*"]["FileStates"] = {**case["facts"]["*"]["FileStates"], HAPROXY_STATS_USERS: None}
    case["facts"]["*"]["FileContents"] = {**case["facts"]["*"]["FileContents"], HAPROXY_CFG: ["global"]}
    text = diff_run(monkeypatch, caplog, case)
    assert f"Will create {HAPROXY_STATS_USERS}" in text and "new (content hidden)" in text
    assert "+    maxconn 8000" in text
    assert not HEX40.findall(text) and FAKE_SECRETS["haproxy_stats_password"] not in text


def test_a_diff_of_a_file_without_secret_is_shown(monkeypatch, caplog):
    """Control: the same --diff shows a file that holds no secret line by line."""
    case = opkit.load_case(opkit.CASES / "memcached" / "config_changed.json")
    case["facts"]["*"]["FileContents"] = {**case["facts"]["*"]["FileContents"], "/etc/memcached.conf": ["-m 64"]}
    text = diff_run(monkeypatch, caplog, case)
    assert "-m 64" in text and "content hidden" not in text


@pytest.mark.parametrize("component,main,old_line", [
    ("haproxy", HAPROXY_CFG, "    stats auth openstack:Old-Stats-Pw1"),
    ("keepalived", KEEPALIVED_CONF, "        auth_pass OldVrrp1"),
    ("galera", GALERA_CNF, 'wsrep_sst_auth = "sst:Old Sst Pw#1"'),
], ids=["haproxy", "keepalived", "galera"])
def test_a_main_config_of_before_on_the_host_shows_no_former_secret(monkeypatch, caplog, component, main, old_line):
    """The first --diff after the upgrade: the host's main config still holds the secret line of
    before, with a value the secrets no longer hold (rotated together): its key is shown, the
    value never."""
    case = opkit.load_case(opkit.CASES / "site" / "deployed.json")
    _, _, site = opkit.case_site(case)
    lines = next(f for f in managed_files(site, "node01", FAKE_SECRETS) if f.path == main).content.splitlines()
    old_value = old_line.split(None, 2)[-1] if component != "galera" else old_line.split("= ", 1)[1]
    common = case["facts"]["*"]
    case = {**case, "components": [component], "commands": {}}
    case["facts"] = {**case["facts"], "*": {**common, "FileStates": {main: {"sha1": "0" * 40}},
                                            "FileContents": {**common["FileContents"], main: [*lines, old_line]}}}
    text = diff_run(monkeypatch, caplog, case)
    key = old_line.strip().split()[0] if component != "galera" else "wsrep_sst_auth ="
    assert f"-{old_line.split(key)[0]}{key}" in text and "(hidden)" in text, text[-3000:]
    secret_part = old_value.split(":")[-1].strip('"')
    assert secret_part not in text
