"""The whole HA layer, in one idempotent run:

    pyinfra inventories/lab.py deploy.py            (or inventories/prod.py on real controllers)
    pyinfra inventories/lab.py deploy.py --dry --diff   (what would change, secrets masked)

Preflight first (a wrong inventory stops here, before any operation), then each component in
dependency order, then the verification facts and the health report.
"""

from pyinfra import logger

from operations import backup, common, dbcheck, firewall, galera, haproxy, keepalived, memcached, monitoring, rabbitmq, upgrade
from operations.verify import verify
from operations import host as host_basics

site = common.site()  # runs preflight once; exits with one line per problem

host_basics.configure()
upgrade.configure()  # package_versions only: the pins held before any package is installed, upgrades announced
firewall.configure()  # before any daemon whose port it guards; a new controller admitted everywhere first
memcached.configure()
galera.configure()
dbcheck.configure()  # the Galera-aware check HAProxy's mariadb listener asks
rabbitmq.configure()
haproxy.configure()  # before keepalived: check_alive needs a live HAProxy
keepalived.configure()
monitoring.configure()  # monitoring_enabled only: Prometheus, Alertmanager, the exporters, the collector
backup.configure()  # backup_enabled only: backup_node's script, service and timers; its copies' SSH key

common.blast_radius()  # printed once, after the last host planned

if common.is_first():
    for key, value in site.client_strings({"rabbitmq_password": "<rabbitmq_password>"}).items():
        logger.info(f"for OpenStack services: {key} = {value}")

verify()  # facts read after the changes; a failed check fails the run with its reason
