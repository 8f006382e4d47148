"""HAProxy on every controller: every API of the catalogue on the VIP."""

import os

from pyinfra import host
from pyinfra.api import deploy

from config.files import HAPROXY_CFG, HAPROXY_DOWN_FILE, HAPROXY_UNIT_DROPIN
from config.packages import PACKAGES
from config.tls import host_validation

from operations.before import unit_state
from operations.common import announce, files_of, shell, site
from operations.maintenance import reapply
from operations.steps import install_files, mark_pending, packages, service


@deploy("HAProxy")
def configure():
    """The VIP's certificate (haproxy_tls) and the new haproxy.cfg are each checked on the host
    before they replace the old ones: the certificate with openssl (it parses, its key is the
    certificate's, it has not expired) and `haproxy -c` (config/tls.py), the config with
    `haproxy -c`. A change of either (a certificate rotation too) is applied with a reload
    (connections survive), never a restart. The unit's drop-in tells keepalived when HAProxy
    stops or dies (HAPROXY_DOWN_FILE) and puts the servers of controllers in maintenance in
    maint at every start; the deploy does after a reload (operations/maintenance.py reapply())."""
    packages(name="haproxy: packages", names=list(PACKAGES["haproxy"]))
    reload = mark_pending("haproxy", "haproxy")
    validate = {HAPROXY_CFG: "haproxy -c -q -f {path}"}
    if site()["haproxy_tls"]:
        pem = site()["haproxy_tls_pem_path"]
        validate[pem] = (host_validation(f"{host.name}: {pem}"), "openssl and haproxy -c checks of the certificate")
    ops = install_files("haproxy", validate=validate)
    dropin = next(op for op, f in zip(ops, files_of("haproxy")) if f.path == HAPROXY_UNIT_DROPIN)
    # keepalived watches the state file's directory: it exists before keepalived loads its config
    shell("haproxy: reload systemd units (its drop-in)",
          [f"install -d {os.path.dirname(HAPROXY_DOWN_FILE)}", "systemctl daemon-reload"], when=dropin.will_change)
    announce(reload, "reload haproxy")
    started = unit_state("haproxy").get("active") != "active"
    service(name="haproxy: running", unit="haproxy", reloaded=reload)
    # A reload or a start forgets the runtime API's states: controllers in maintenance stay out.
    reapply(reload or started)
