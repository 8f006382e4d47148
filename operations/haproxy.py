"""HAProxy on every controller: every API of the catalogue on the VIP."""

from pyinfra.api import deploy

from config.files import HAPROXY_CFG

from operations.common import announce
from operations.steps import install_files, mark_pending, packages, service


@deploy("HAProxy")
def configure():
    """The new haproxy.cfg is checked with `haproxy -c` on the host before it replaces the
    old one; a change is applied with a reload (connections survive), never a restart."""
    packages(name="haproxy: packages", names=["haproxy", "socat"])
    reload = mark_pending("haproxy", "haproxy")
    install_files("haproxy", validate={HAPROXY_CFG: "haproxy -c -q -f {path}"})
    announce(reload, "reload haproxy")
    service(name="haproxy: running", unit="haproxy", reloaded=reload)
