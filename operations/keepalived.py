"""keepalived on every controller: the VIP follows a live HAProxy."""

from pyinfra.api import deploy

from operations.common import announce, any_will_change, install_files, packages, service, shell, site, wait_until

VIP_SECONDS = 30  # measured: 3.8 s for the first election on the lab


@deploy("keepalived")
def configure():
    """check_alive.sh, then keepalived.conf checked by `keepalived --config-test`; a change
    is a reload (SIGHUP): with nopreempt the VIP stays where it is. After a change the run
    waits (bounded) until a controller answers on the VIP."""
    packages(name="keepalived: packages", names=["keepalived", "socat"])
    ops = install_files(
        "keepalived",
        validate={"/etc/keepalived/keepalived.conf": "keepalived --config-test -f {path}"},
    )
    announce(ops, "reload keepalived")
    changed = any_will_change(ops)
    service(name="keepalived: running", unit="keepalived", reloaded=changed)
    # notify.sh records each state change, and a reload is none: when it is new or changed,
    # record the current state from keepalived's own dump (SIGUSR1 -> /tmp/keepalived.data).
    _, notify, _ = ops
    state_file = site()["keepalived_state_file"]
    shell(
        "keepalived: record the current VRRP state",
        [f"mkdir -p $(dirname {state_file}) && rm -f /tmp/keepalived.data && kill -USR1 $(cat /run/keepalived.pid) && "
         "for i in $(seq 50); do grep -q '^ *State = ' /tmp/keepalived.data 2>/dev/null && break; sleep 0.1; done && "
         f"sed -n 's/^ *State = //p' /tmp/keepalived.data | head -n1 > {state_file}.new && "
         f"mv {state_file}.new {state_file}"],
        when=notify.will_change,
    )
    vip = site()["vip"]
    shell(
        "keepalived: wait until a controller holds the VIP",
        [wait_until(f"ping -c1 -W1 {vip}", f"a controller to hold the VIP {vip}", VIP_SECONDS)],
        when=changed,
    )
