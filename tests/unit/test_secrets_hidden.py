"""Secrets never shown (issue 13, item 6), offline: no secret reaches a command line on the
hosts (every command is an argument of `sh -c`, visible in `ps` to every local user), each one
a command needs travels in a 0600 file, and `--dry --diff` never fetches or prints a file that
holds a secret."""

from __future__ import annotations

import hashlib
import logging

import pytest
from pyinfra.api import Config, FileUploadCommand, QuoteString, StringCommand
from pyinfra.api.hiddenvalue import HiddenValue

import opkit
from config.files import HAPROXY_CFG, managed_files
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


def test_a_diff_of_a_secret_file_shows_only_its_sha1s(monkeypatch, caplog):
    case = opkit.load_case(opkit.CASES / "haproxy" / "config_changed.json")
    # had it asked for the file's content, the run would fail: the case gives none
    assert HAPROXY_CFG not in case["facts"]["*"].get("FileContents", {})
    text = diff_run(monkeypatch, caplog, case)
    _, _, site = opkit.case_site(case)
    (cfg,) = [f for f in managed_files(site, "node01", FAKE_SECRETS) if f.path == HAPROXY_CFG]
    new = hashlib.sha1(cfg.content.encode()).hexdigest()
    assert f"changed (content hidden): sha1 on the host {'0' * 40}, new {new}" in text
    assert "maxconn" not in text and FAKE_SECRETS["haproxy_stats_password"] not in text


def test_a_diff_of_a_file_without_secret_is_shown(monkeypatch, caplog):
    """Control: the same --diff shows a file that holds no secret line by line."""
    case = opkit.load_case(opkit.CASES / "memcached" / "config_changed.json")
    case["facts"]["*"]["FileContents"] = {**case["facts"]["*"]["FileContents"], "/etc/memcached.conf": ["-m 64"]}
    text = diff_run(monkeypatch, caplog, case)
    assert "-m 64" in text and "content hidden" not in text
