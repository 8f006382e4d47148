"""keepalived on every controller: the VIP follows a live HAProxy."""

from pyinfra.api import deploy
from pyinfra.operations import systemd

from operations.common import announce, any_will_change, install_files, packages


@deploy("keepalived")
def configure():
    """check_alive.sh, then keepalived.conf checked by `keepalived --config-test`; a change
    is a reload (SIGHUP): with nopreempt the VIP stays where it is."""
    packages(name="keepalived: packages", names=["keepalived", "socat"])
    ops = install_files(
        "keepalived",
        validate={"/etc/keepalived/keepalived.conf": "keepalived --config-test -f {path}"},
    )
    for op in ops:
        announce(op, "reload keepalived")
    systemd.service(
        name="keepalived: running", service="keepalived", running=True, enabled=True,
        reloaded=any_will_change(ops),
    )
