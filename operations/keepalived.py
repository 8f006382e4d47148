"""keepalived on every controller: the VIP follows a live HAProxy and the ability to serve."""

import shlex

from pyinfra.api import deploy

from config.files import KEEPALIVED_AUTH, KEEPALIVED_CONF
from config.packages import PACKAGES

from operations.common import announce, shell, site, wait_until
from operations.steps import install_files, mark_pending, packages, service

VIP_SECONDS = 30  # measured: 3.8 s for the first election on the lab
# The keepalived.conf in place, its include pointed at the staged password file ({path}).
AUTH_CHECK = (
    f"( if test -f {KEEPALIVED_CONF}; then t=$(mktemp) && "
    f"sed 's|^\\(\\s*include \\){KEEPALIVED_AUTH}$|\\1{{path}}|' {KEEPALIVED_CONF} > $t && "
    "keepalived --config-test -f $t; rc=$?; rm -f $t; exit $rc; fi )"
)


@deploy("keepalived")
def configure():
    """check_alive.sh, check_serving (keepalived_serve_check; python3, Debian's, as
    galera-clustercheck), the VRRP password's file (checked with the keepalived.conf in place), then
    keepalived.conf (which includes it), each checked by `keepalived --config-test`; a change
    is a reload (SIGHUP): with nopreempt the VIP stays where it is. After a change the run
    waits (bounded) until a controller answers on the VIP."""
    packages(name="keepalived: packages", names=list(PACKAGES["keepalived"]))
    changed = mark_pending("keepalived", "keepalived")
    install_files("keepalived", validate={
        # a new password: the keepalived.conf in place checked with it (none yet: the new one is, next)
        KEEPALIVED_AUTH: (AUTH_CHECK, f"keepalived --config-test of {KEEPALIVED_CONF} including it"),
        KEEPALIVED_CONF: "keepalived --config-test -f {path}",
    })
    announce(changed, "reload keepalived")
    service(name="keepalived: running", unit="keepalived", reloaded=changed)
    vip = site()["vip"]
    shell(
        "keepalived: wait until a controller holds the VIP",
        [wait_until(f"ping -c1 -W1 {shlex.quote(vip)}", f"a controller to hold the VIP {vip}", VIP_SECONDS)],
        when=changed,
    )
