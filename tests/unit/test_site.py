"""The site model (config/site.py): the database writer and listener, one source for the
rendered server lines, the deploy's rolling restart and the maintenance command."""

from __future__ import annotations

import pytest

from config.site import build_site

NET = {"internal_network": "10.77.0.0/24", "vip": "10.77.0.100", "vip_interface": "eth0"}


def site(names, services=None):
    hosts = [(n, {"address": f"10.77.0.{11 + i}", "vrrp_priority": 150 - 10 * i}) for i, n in enumerate(names)]
    return build_site(hosts, {**NET, **({"services": services} if services else {})})


@pytest.mark.parametrize("names", [("node01", "node02", "node03"), ("c", "a", "b", "d")])
def test_the_writer_is_the_database_listeners_one_server_without_backup(names):
    s = site(names)
    (db,) = [lst for lst in s.listeners if lst.name == s.db_listener]
    active = [line.split()[1] for line in db.servers if " backup" not in line]
    assert s.writer == names[0] and active == [s.writer]
    assert all(" backup" in line for line in db.servers if line.split()[1] != s.writer)
    # no other listener has backup servers
    assert not any(" backup" in line for lst in s.listeners if lst.name != s.db_listener for line in lst.servers)


def test_the_database_listener_is_the_active_backup_one():
    assert site(("a", "b", "c")).db_listener == "mariadb"
    s = site(("a", "b", "c"), services={"mariadb": {"enabled": False}})
    with pytest.raises(KeyError, match="active_backup"):
        s.db_listener


@pytest.mark.parametrize("name,value", [
    ("controllers", ([("a", {})], {})), ("others", ["h1", ("h2", {})]), ("_private", ["h"]), ("__file__", "x"),
    ("number", 5), ("text", "host"), ("mixed", ["h", 5]), ("pair", (["h"], {"k": 1})), ("dict", {"h": {}}),
    ("empty_list", []), ("bad_tuple", ("h", {})),
])
def test_our_inventory_group_rule_is_pyinfras(name, value):
    """config.site.is_inventory_group is pyinfra_cli.inventory._is_inventory_group, without the
    import (which monkey-patches the process for gevent)."""
    from pyinfra_cli.inventory import _is_inventory_group

    from config.site import is_inventory_group
    assert is_inventory_group(name, value) == bool(_is_inventory_group(name, value)), (name, value)
