"""config.catalogue: the article's listeners as data, and a site's overrides."""

from __future__ import annotations

import pytest

from config.catalogue import CATALOGUE, PORT_KEYS, CatalogueError, Service, merge_catalogue
from config.defaults import DEFAULTS
from config.site import build_site
from unitkit import prod_data

ARTICLE_ORDER = [
    "rabbitmq_management", "keystone_internal", "keystone_admin", "glance_registry", "glance_api",
    "nova_api", "nova_metadata", "placement_api", "nova_novncproxy", "neutron_server", "horizon",
    "cinder_api", "heat_api", "heat_api_cfn", "mariadb",
]


def names(services):
    return [s.name for s in services]


def test_no_overrides_is_the_article_in_order():
    assert names(merge_catalogue({})) == ARTICLE_ORDER
    assert names(merge_catalogue(None)) == ARTICLE_ORDER
    assert list(merge_catalogue({})) == list(CATALOGUE)


def test_legacy_off_drops_keystone_admin_and_glance_registry():
    got = names(merge_catalogue({}, legacy_enabled=False))
    assert got == [n for n in ARTICLE_ORDER if n not in ("keystone_admin", "glance_registry")]
    assert {s.name for s in CATALOGUE if s.legacy} == {"keystone_admin", "glance_registry"}


def test_override_a_field_keeps_the_others():
    by = {s.name: s for s in merge_catalogue({"horizon": {"port": 8080}})}
    assert by["horizon"].port == 8080
    assert by["horizon"].balance == "source" and by["horizon"].fall == 2
    assert by["horizon"].http_request == ("del-header X-Forwarded-Proto if { ssl_fc }",)
    # The catalogue itself is untouched.
    assert {s.name: s for s in CATALOGUE}["horizon"].port == 80


def test_override_lists_become_tuples():
    by = {s.name: s for s in merge_catalogue({
        "nova_api": {"http_request": ["del-header X-Forwarded-Proto"]},
        "mariadb": {"timeouts": {"client": "7200s", "server": "7200s"}},
    })}
    assert by["nova_api"].http_request == ("del-header X-Forwarded-Proto",)
    assert by["mariadb"].timeouts == (("client", "7200s"), ("server", "7200s"))
    hash(by["nova_api"])  # still a frozen, hashable Service


def test_disable():
    got = names(merge_catalogue({"glance_registry": {"enabled": False}, "heat_api_cfn": {"enabled": False}}))
    assert got == [n for n in ARTICLE_ORDER if n not in ("glance_registry", "heat_api_cfn")]


def test_legacy_service_re_enabled_when_legacy_is_off_is_still_dropped():
    # haproxy_legacy_services=False wins over a legacy entry's own data.
    assert "keystone_admin" not in names(merge_catalogue({"keystone_admin": {"port": 35358}}, legacy_enabled=False))
    # ... unless the site says it is not legacy for it.
    assert "keystone_admin" in names(merge_catalogue({"keystone_admin": {"legacy": False}}, legacy_enabled=False))


def test_add_a_site_service_at_the_end_with_defaults():
    services = merge_catalogue({"octavia_api": {"port": 9876}})
    assert names(services) == ARTICLE_ORDER + ["octavia_api"]
    assert services[-1] == Service("octavia_api", 9876)
    assert services[-1].mode == "http" and services[-1].forwardfor and not services[-1].active_backup


def test_added_service_becomes_a_listener_on_every_controller():
    hosts, group = prod_data()
    group["services"] = {"octavia_api": {"port": 9876, "backend_port": 19876}}
    site = build_site(hosts, group)
    listener = {l.name: l for l in site.listeners}["octavia_api"]
    assert listener.bind == "100.2.30.40:9876 ssl crt /etc/haproxy/openstack-ha.pem"  # an HTTP API: TLS by default
    assert listener.servers == tuple(
        f"server node0{i} 100.2.30.4{i}:19876 check inter 2000 rise 2 fall 5"
        " observe layer4 error-limit 2 on-error mark-down" for i in (1, 2, 3)
    )


@pytest.mark.parametrize("service", ["horizon", "octavia_api"])
def test_unknown_field_names_the_service_and_field(service):
    with pytest.raises(CatalogueError) as exc:
        merge_catalogue({service: {"port": 8080, "prot": 8080}})
    msg = str(exc.value)
    assert f"services.{service}" in msg
    assert "'prot'" in msg
    assert "known fields" in msg and "port" in msg


def test_site_service_without_a_port_is_refused():
    with pytest.raises(CatalogueError) as exc:
        merge_catalogue({"octavia_api": {"mode": "http"}})
    assert "services.octavia_api" in str(exc.value) and "'port'" in str(exc.value)


def test_an_entry_that_is_not_a_dict_is_refused():
    with pytest.raises(CatalogueError) as exc:
        merge_catalogue({"horizon": 8080})
    assert "services.horizon" in str(exc.value)


def test_catalogue_error_is_a_value_error():
    assert issubclass(CatalogueError, ValueError)


def test_catalogue_ports_are_distinct():
    ports = [s.port or DEFAULTS[s.port_key] for s in CATALOGUE]
    assert len(ports) == len(set(ports))


def test_a_port_has_one_source():
    # Each listener's port is either the catalogue's or a site key's (the daemon's), never both.
    for svc in CATALOGUE:
        assert (svc.port is None) == (svc.port_key is not None), svc.name
    assert PORT_KEYS == {"mariadb": "mariadb_port", "rabbitmq_management": "rabbitmq_management_port"}
    hosts, group = prod_data()
    by = {s.name: s for s in build_site(hosts, {**group, "mariadb_port": 3307, "rabbitmq_management_port": 15673}).services}
    assert (by["mariadb"].port, by["rabbitmq_management"].port) == (3307, 15673)


def test_services_not_a_dict_is_refused():
    with pytest.raises(CatalogueError) as exc:
        merge_catalogue(["octavia_api"])
    assert "expected a dict" in str(exc.value)
