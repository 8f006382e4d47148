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
            if issubclass(cls, FactBase) and cls.__module__ == module.__name__:
                yield cls


FACTS = sorted(all_facts(), key=lambda c: c.__name__)


def test_every_component_has_its_facts():
    assert {c.__module__.rpartition(".")[2] for c in FACTS} == {
        "host", "memcached", "galera", "rabbitmq", "haproxy", "keepalived"}


@pytest.mark.parametrize("cls", FACTS, ids=[c.__name__ for c in FACTS])
def test_no_output_is_an_error_not_a_state(cls):
    for output in ([], [""], ["garbage"]):
        result = cls().process(output)
        assert isinstance(result, dict) and result.get("error"), (cls.__name__, output, result)
    default = cls.default()
    assert isinstance(default, dict) and default.get("error"), (cls.__name__, default)


def test_mysql_accounts_read_and_failed():
    from facts.galera import MysqlAccounts

    ok = MysqlAccounts().process(["user=admin@localhost=*94BD", "ok=yes"])
    assert ok == {"users": {"admin@localhost": "*94BD"}, "test_db": False, "error": None}
    failed = MysqlAccounts().process(["ERROR 2002 (HY000): Can't connect to local server", "ok=no"])
    assert failed["error"] == "mysql: ERROR 2002 (HY000): Can't connect to local server"


def test_rabbitmq_definitions_read_and_failed():
    from facts.rabbitmq import RabbitmqDefinitions

    ok = RabbitmqDefinitions().process(['{"users": [{"name": "openstack"}], "vhosts": []}', "", "__rc=0"])
    assert ok == {"users": [{"name": "openstack"}], "vhosts": [], "error": None}
    down = RabbitmqDefinitions().process(["Error: unable to perform an operation on node 'rabbit@node01'.", "", "__rc=69"])
    assert down["error"].startswith("rabbitmqctl export_definitions: exit status 69: Error: unable")
    assert "users" not in down
