"""The error contract of facts/: every fact answers a dict with an `error` key; an empty or cut
output (a lost connection, a killed shell) is an error, never a default that reads as a state."""

import importlib
import inspect
import pkgutil

import pytest
from pyinfra.api import FactBase

import facts


def all_facts():
    for info in pkgutil.iter_modules(facts.__path__):
        module = importlib.import_module(f"facts.{info.name}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, FactBase) and cls.__module__ == module.__name__ and info.name != "bundle":
                yield cls


FACTS = sorted(all_facts(), key=lambda c: c.__name__)


def test_every_component_has_its_facts():
    assert {c.__module__.rpartition(".")[2] for c in FACTS} == {
        "host", "memcached", "galera", "rabbitmq", "haproxy", "keepalived", "firewall", "packages", "backup", "monitoring"}


@pytest.mark.parametrize("cls", FACTS, ids=[c.__name__ for c in FACTS])
def test_no_output_is_an_error_not_a_state(cls):
    for output in ([], [""], ["garbage"]):
        result = cls().process(output)
        assert isinstance(result, dict) and result.get("error"), (cls.__name__, output, result)
    default = cls.default()
    assert isinstance(default, dict) and default.get("error"), (cls.__name__, default)


def test_mysql_accounts_read_and_failed():
    from facts.galera import MysqlAccounts

    ok = MysqlAccounts().process(["user=admin@localhost=yes", "user=sst@localhost=no", "ok=yes"])
    assert ok == {"users": {"admin@localhost": True, "sst@localhost": False}, "test_db": False, "error": None}
    failed = MysqlAccounts().process(["ERROR 2002 (HY000): Can't connect to local server", "ok=no"])
    assert failed["error"] == "mysql: ERROR 2002 (HY000): Can't connect to local server"


def test_rabbitmq_definitions_read_and_failed():
    from facts.rabbitmq import RabbitmqDefinitions

    ok = RabbitmqDefinitions().process(['{"users": [{"name": "openstack"}], "vhosts": []}', "", "__rc=0"])
    assert ok == {"users": [{"name": "openstack"}], "vhosts": [], "error": None}
    down = RabbitmqDefinitions().process(["Error: unable to perform an operation on node 'rabbit@node01'.", "", "__rc=69"])
    assert down["error"].startswith("rabbitmqctl export_definitions: exit status 69: Error: unable")
    assert "users" not in down


def test_a_bundle_reads_every_part_in_one_command_and_marks_the_unknown():
    """Run here with sh: our facts and pyinfra's own, a missing file, a part that fails."""
    import subprocess

    from pyinfra.facts.files import FileContents, Sha1File
    from pyinfra.facts.server import Hostname

    from facts.bundle import Bundle, part
    from facts.host import FileStates
    from facts.memcached import MemcachedStats
    from facts.rabbitmq import RabbitmqDefinitions

    parts = (part(FileStates, paths=("/etc/hostname", "/nonexistent")), part(Hostname),
             part(FileContents, path="/nonexistent"), part(Sha1File, path="/nonexistent"),
             part(MemcachedStats, address="127.0.0.1", port=1), part(RabbitmqDefinitions))
    bundle = Bundle()
    out = subprocess.run(["sh", "-c", bundle.command(parts)], capture_output=True, text=True, timeout=60).stdout
    got = bundle.process(out.splitlines())
    files, hostname, contents, sha1, memcached, definitions = got["parts"]
    assert got["error"] is None
    assert files["error"] is None and files["files"]["/nonexistent"] is None and files["files"]["/etc/hostname"]
    assert hostname == subprocess.run(["uname", "-n"], capture_output=True, text=True).stdout.strip()
    assert contents is None and sha1 is None  # pyinfra's "missing" answers
    assert memcached["error"] and not memcached["answering"]  # refused: an error, not a state
    assert definitions["error"]  # no rabbitmqctl here
    cut = Bundle()
    cut.command(parts)
    half = cut.process(out.splitlines()[:3])
    assert half["error"] and half["parts"][1:] == [None] * 5


def test_a_part_that_outlives_term_is_killed_and_said_timed_out(monkeypatch):
    """A bundle part bounded by `limit` that ignores TERM is killed (no process of it is left)
    and its status is 124 (timed out, as operations/before.py reads it), the other parts
    unharmed: the pre-run bound holds whatever the part does with TERM."""
    import subprocess
    import time

    from facts import bundle as bundle_module
    from facts.bundle import Bundle, part
    from pyinfra.facts.server import Hostname

    class Stubborn(Hostname):
        def command(self):
            return "trap '' TERM; sleep 27.25; echo late"

    monkeypatch.setattr(bundle_module, "KILL_AFTER", 1)
    monkeypatch.setattr(bundle_module, "fact_class", lambda name: Stubborn if name.endswith("Stubborn") else Hostname)
    b = Bundle()
    parts = (("x:Stubborn", ()), part(Hostname))
    started = time.monotonic()
    out = subprocess.run(["sh", "-c", b.command(parts, limit=1)], capture_output=True, text=True, timeout=25).stdout
    assert time.monotonic() - started < 10
    got = b.process(out.splitlines())
    assert got["status"] == ["124", "0"] and got["parts"][0] is None and got["parts"][1]
    # nothing of the stubborn part outlives the bundle
    assert subprocess.run(["pgrep", "-f", "sleep 27.25"], capture_output=True).returncode == 1


def test_a_bundle_hands_each_part_exactly_its_own_lines(monkeypatch):
    """Each part's lines as its command printed them: a last line without a newline, a
    trailing blank line, a lone blank line, nothing (the part's default), a line that looks
    like a marker of another bundle."""
    import subprocess

    from facts import bundle as bundle_module
    from facts.bundle import Bundle

    outputs = {"a": "printf 'x'", "b": "printf 'x\\n\\n'", "c": "printf '\\n'", "d": "true",
               "e": "printf 'one\\ntwo\\n'", "f": "echo __part_000000000000 0 0; echo y"}

    class Lines:
        def __init__(self, name):
            self.name = name

        def command(self):
            return outputs[self.name]

        requires_command = None

        @staticmethod
        def default():
            return "default"

        def process(self, output):
            return list(output)

    monkeypatch.setattr(bundle_module, "fact_class", lambda name: lambda: Lines(name))
    b = Bundle()
    command = b.command(tuple((n, ()) for n in outputs), limit=30)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60).stdout
    got = b.process(out.splitlines())
    assert got["error"] is None and got["status"] == ["0"] * 6
    assert got["parts"] == [["x"], ["x", ""], [""], "default", ["one", "two"], ["__part_000000000000 0 0", "y"]]
