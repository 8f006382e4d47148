"""HAProxy on every controller: every API of the catalogue on the VIP."""

import os

from pyinfra import host
from pyinfra.api import deploy

from config.files import HAPROXY_CFG, HAPROXY_DOWN_FILE, HAPROXY_STATS_USERS, HAPROXY_UNIT_DROPIN
from config.packages import PACKAGES
from config.tls import host_validation

from operations.before import unit_state
from operations.common import announce, files_of, one_at_a_time, site, turn, unit_log
from operations.maintenance import reapply
from operations.steps import clear_pending, daemon_reload, install_files, mark_pending, mark_reload, packages, pending, service


def validation() -> dict:
    """The host's checks of the two config files before they replace the old ones
    (operations.steps.install_files' `validate`): the new haproxy.cfg with the stats account's
    file, as the unit loads them; a new stats account with the haproxy.cfg in place (none yet:
    the new one is checked with it next)."""
    return {
        HAPROXY_STATS_USERS: (f"if test -f {HAPROXY_CFG}; then haproxy -c -q -f {HAPROXY_CFG} -f {{path}}; fi",
                              f"haproxy -c of {HAPROXY_CFG} with it"),
        HAPROXY_CFG: f"haproxy -c -q -f {{path}} -f {HAPROXY_STATS_USERS}",
    }


@deploy("HAProxy")
def configure():
    """The VIP's certificate (haproxy_tls) and the new haproxy.cfg are each checked on the host
    before they replace the old ones: the certificate with openssl (it parses, its key is the
    certificate's, it has not expired) and `haproxy -c` (config/tls.py), the config with
    `haproxy -c`, with the stats account's file (HAPROXY_STATS_USERS, written first, itself
    checked with the haproxy.cfg in place) as the unit loads them. A change of either (a certificate rotation, the stats password too) is
    applied with a reload (connections survive). A change of the unit's drop-in (its command
    line: a reload re-executes the one HAProxy started with) is a restart, one controller at a
    time. The unit's drop-in tells keepalived when HAProxy
    stops or dies (HAPROXY_DOWN_FILE) and puts the servers of controllers in maintenance in
    maint at every start; the deploy does after a reload (operations/maintenance.py reapply())."""
    packages(name="haproxy: packages", names=list(PACKAGES["haproxy"]))
    # A change an earlier run wrote and did not apply (interrupted, or a peer failed first): it
    # may have been the drop-in, whose new command line only a restart takes (a reload re-runs
    # the old one and its new worker cannot load the new config): restarted, to be sure.
    left = pending("haproxy")
    reload = mark_pending("haproxy", "haproxy")
    units = mark_reload("haproxy", (HAPROXY_UNIT_DROPIN,))
    validate = validation()
    if site()["haproxy_tls"]:
        pem = site()["haproxy_tls_pem_path"]
        validate[pem] = (host_validation(f"{host.name}: {pem}"), "openssl and haproxy -c checks of the certificate")
    ops = install_files("haproxy", validate=validate)
    dropin = next(op for op, f in zip(ops, files_of("haproxy")) if f.path == HAPROXY_UNIT_DROPIN)
    # keepalived watches the state file's directory: it exists before keepalived loads its config
    daemon_reload("haproxy: reload systemd units (its drop-in)", "haproxy", units,
                  before=(f"install -d {os.path.dirname(HAPROXY_DOWN_FILE)}",))
    started = unit_state("haproxy").get("active") != "active"
    # A running HAProxy whose drop-in changed: restarted (a start reads the new one anyway).
    restart = (dropin.will_change or left) and not started
    announce(reload or restart, ("restart haproxy (its unit changed, or a change of an earlier run is pending; one "
                                 "controller at a time)") if restart else "reload haproxy")
    # The marker stays until this controller's restart turn (a run cut before it restarts next time).
    service(name="haproxy: running", unit="haproxy", reloaded=reload and not restart, keep_pending=restart)
    for name, mine in one_at_a_time([c.name for c in site().controllers]):
        turn(name=f"haproxy: restart {name}",
             commands=["systemctl daemon-reload",  # a run cut between the drop-in and its daemon-reload
                       f"timeout 300 systemctl restart haproxy || {{ {unit_log('haproxy')}; exit 1; }}", clear_pending("haproxy")],
             run=mine and restart)
    # A reload or a start forgets the runtime API's states: controllers in maintenance stay out.
    reapply(reload or started or restart)
