"""Secrets with spaces, quotes, `#`, `$` and `\\` work end to end on the lab.

The deploy runs with such values for the three secrets that land in files or on stdin
(HA_SECRET_* overrides the lab's secrets file for one run): the state-transfer password in
galera.cnf (then a node is made to rejoin by a full state transfer, which logs in with it),
the HAProxy stats password in haproxy.cfg (the stats page answers it, and refuses it with a
character more), the RabbitMQ passwords (the management API's basic auth takes them, exactly;
the health report's, from curl's config file, reads every member). Then the lab's own
secrets are deployed back. No printed output may contain any of the values.
"""

from __future__ import annotations

import lab
from lab import drills, sitemodel
from lab.clients import management_status, stats_status
from lab.drills import log

HOSTILE = {
    "mariadb_sst_password": "a'b\"c#d$e\\f g",
    "haproxy_stats_password": "st a'ts\"#$\\x",
    "rabbitmq_password": "rab b'it\"#$\\",
    "rabbitmq_admin_password": "ad m'in\"#$\\",
    # the health report's login: curl reads it from its 0600 config file (-K), double-quoted
    "rabbitmq_monitor_password": "mo n'it\"#$\\",
}
ENV = {sitemodel.secret_env(k): v for k, v in HOSTILE.items()}


def test_secrets_with_quotes_hash_dollar_backslash_and_spaces_work_end_to_end(healthy):
    try:
        run = drills.pyinfra("-y", "inventories/lab.py", "deploy.py", env=ENV)
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
        for value in HOSTILE.values():
            assert value not in run.stdout
        # a full state transfer (mariabackup logs in to the donor as sst with the new password)
        lab.exec_("node03", ["sh", "-c", "systemctl stop mariadb && rm -f /var/lib/mysql/grastate.dat "
                             "/var/lib/mysql/galera.cache && timeout 300 systemctl start mariadb"], timeout=360)
        journal = lab.exec_("node03", ["journalctl", "-u", "mariadb", "--since", "-5min", "--no-pager"]).stdout
        assert "mariabackup SST started on joiner" in journal and "SST succeeded" in journal, journal[-3000:]
        assert drills.wsrep("node03").get("wsrep_local_state_comment") == "Synced"
        assert stats_status(HOSTILE["haproxy_stats_password"]) == "200"
        assert stats_status(HOSTILE["haproxy_stats_password"] + "x") == "401"
        # the exact bytes, as a client sends them: the management API's basic auth
        assert management_status(HOSTILE["rabbitmq_admin_password"]) == "200"
        assert management_status(HOSTILE["rabbitmq_admin_password"] + "x") == "401"
        # the health report's account: the deploy's report above read every member with it (rc 0)
        assert management_status(HOSTILE["rabbitmq_monitor_password"], "rabbitmq_monitor_user") == "200"
        assert management_status(HOSTILE["rabbitmq_monitor_password"] + "x", "rabbitmq_monitor_user") == "401"
        # and rabbitmqctl reading it from stdin (Debian's rabbitmqctl wrapper re-splits its arguments)
        auth = lab.exec_("node01", ["rabbitmqctl", "authenticate_user", sitemodel.data("rabbitmq_user")], input=HOSTILE["rabbitmq_password"])
        assert auth.returncode == 0, auth.stdout + auth.stderr
        log("hostile secrets: SST with the sst password, stats page 200/401, RabbitMQ authenticates")
    finally:
        run = drills.deploy()  # the lab's own secrets again
        assert run.returncode == 0, drills.run_excerpt(run.stdout)
