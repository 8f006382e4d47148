"""keepalived on every controller: the VIP follows a live HAProxy and the ability to serve."""

import shlex

from pyinfra.api import deploy

from config.files import KEEPALIVED_CONF

from operations.common import announce, shell, site, wait_until
from operations.steps import install_files, mark_pending, packages, service

VIP_SECONDS = 30  # measured: 3.8 s for the first election on the lab


@deploy("keepalived")
def configure():
    """check_alive.sh, check_serving (keepalived_serve_check), then keepalived.conf checked by `keepalived --config-test`; a change
    is a reload (SIGHUP): with nopreempt the VIP stays where it is. After a change the run
    waits (bounded) until a controller answers on the VIP."""
    # check_serving runs with python3 (Debian's, as galera-clustercheck)
    packages(name="keepalived: packages", names=["keepalived", "socat"])
    changed = mark_pending("keepalived", "keepalived")
    install_files("keepalived", validate={KEEPALIVED_CONF: "keepalived --config-test -f {path}"})
    announce(changed, "reload keepalived")
    service(name="keepalived: running", unit="keepalived", reloaded=changed)
    vip = site()["vip"]
    shell(
        "keepalived: wait until a controller holds the VIP",
        [wait_until(f"ping -c1 -W1 {shlex.quote(vip)}", f"a controller to hold the VIP {vip}", VIP_SECONDS)],
        when=changed,
    )
