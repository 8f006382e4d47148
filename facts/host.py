"""The host: managed files and systemd units, each read for many at once in one round trip."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from config.paths import BACKUP_TIMERS, FIREWALL_UNIT, METRICS_UNIT, MONITORING_UNITS

UNITS = ("memcached", "mariadb", "rabbitmq-server", "haproxy", "keepalived", "galera-clustercheck", FIREWALL_UNIT,
         "epmd.socket", *BACKUP_TIMERS, *MONITORING_UNITS, f"{METRICS_UNIT}.timer")
# A config written whose restart or reload has not happened yet (a run interrupted in between)
# leaves a marker here; the next run applies it.
PENDING_DIR = "/var/lib/openstack-ha/pending"
# A component's systemd unit files written, their `systemctl daemon-reload` not done yet: the
# marker PENDING_DIR/daemon-reload.<component> (no unit has that name).
RELOAD_MARKER = "daemon-reload."
RELOADS_LINE = "daemon-reload:"  # ServiceStates' line that lists them
# The UnitFileStates `systemctl is-enabled` prints and exits 0 on (systemctl-is-enabled.c):
# ServiceStates takes them from `systemctl show`, and asks is-enabled itself for any other.
ENABLED_STATES = ("enabled", "enabled-runtime", "static", "indirect", "generated")
# Secrets handed to a command (operations.steps.secret_input): 0700, each file 0600, removed
# by the command that reads it.
SECRET_DIR = "/var/lib/openstack-ha/private"
EMPTY_SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"  # sha1sum of /dev/null: FileStates' sentinel


class FileStates(FactBase):
    """
    Owner, group, mode and SHA1 of several files in one round trip; None for a missing file:

    .. code:: python

        {"files": {"/etc/haproxy/haproxy.cfg": {"user": "root", "group": "haproxy", "mode": "640",
                                                "sha1": "3f7a..."},
                   "/etc/memcached.conf": None},
         "error": None}
    """

    @staticmethod
    def default():
        return {"files": {}, "error": "no answer from the host"}

    def command(self, paths):
        """A constant number of processes whatever the number of paths (it was three per path,
        most of the remote CPU of a no-op run): builtins decide present or missing, then one
        `stat` and one `sha1sum` over all present paths, joined per path in order. The lines
        are byte for byte those of the former per-path command (test_host_fact_commands.py keeps
        it; each path's own `stat` is still used when the one `stat` fails: a path removed in between): the same `echo` of the same words
        (dash's echo reads backslashes in them alike). sha1sum skips a path it cannot read
        (a directory, no permission) and escapes some names, so its lines are never matched
        by name: after each path comes a sentinel, /dev/null spelt as no path given is, whose
        line ends that path's group (empty: no checksum, as before)."""
        if not paths:
            return ""
        sentinel = next(s for s in (f"/dev/{'./' * n}null" for n in range(1, len(paths) + 2)) if s not in paths)
        quoted = " ".join(shlex.quote(p) for p in paths)
        end = shlex.quote(f"{EMPTY_SHA1}  {sentinel}")
        return (
            f"set --; f=; for p in {quoted}; do if [ -e \"$p\" ]; then set -- \"$@\" \"$p\" {sentinel}; f=${{f}}1; "
            "else f=${f}0; fi; done; nl=$(printf '\\n.'); nl=${nl%.}; "
            "if [ $# -eq 0 ] || st=$(stat -c '%U %G %a' -- \"$@\" 2>/dev/null); then st=$st$nl; one=1; else one=; fi; "
            "h=; [ $# -eq 0 ] || h=$(sha1sum -- \"$@\" 2>/dev/null)$nl; "
            f"for p in {quoted}; do c=${{f%\"${{f#?}}\"}}; f=${{f#?}}; "
            "if [ \"$c\" = 0 ]; then echo M \"$p\"; continue; fi; "
            "if [ -n \"$one\" ]; then s=${st%%\"$nl\"*}; st=${st#*\"$nl\"}; st=${st#*\"$nl\"}; "
            "else s=$(stat -c '%U %G %a' \"$p\"); fi; "
            f"x=; while [ -n \"$h\" ]; do l=${{h%%\"$nl\"*}}; h=${{h#*\"$nl\"}}; [ \"$l\" = {end} ] && break; "
            "[ -n \"$x\" ] || x=${l%% *}; done; "
            "echo \"F $s $x $p\"; done"
        )


    def process(self, output):
        states = {}
        for line in output:
            parts = line.split(" ", 5)
            if parts[0] == "M" and len(parts) == 2:
                states[parts[1]] = None
            elif parts[0] == "F" and len(parts) == 6 and len(parts[4]) == 40:
                states[parts[5]] = {"user": parts[1], "group": parts[2], "mode": parts[3], "sha1": parts[4]}
        return {"files": states, "error": None if states else "file states: nothing read"}


class ServiceStates(FactBase):
    """
    Active and enabled state of several systemd units in one round trip, which of them
    have a restart or reload pending (a marker in PENDING_DIR), and the components whose
    unit files were written without the `systemctl daemon-reload` after them (a marker
    RELOAD_MARKER + component, operations.steps.mark_reload):

    .. code:: python

        {"units": {"haproxy": {"active": "active", "enabled": "enabled", "pending": False},
                   "keepalived": {"active": "inactive", "enabled": "not-found", "pending": True}},
         "reloads": ["haproxy"],
         "error": None}
    """

    @staticmethod
    def default():
        return {"units": {}, "reloads": [], "error": "no answer from the host"}

    def command(self, units):
        """One `systemctl show` for all units instead of two systemctl per unit (most of the
        remote CPU of a no-op run), each unit's line byte for byte that of per_unit_command.
        `show` answers what `is-active` says (ActiveState, also for a unit that does not
        exist) but `is-enabled` only where it is sure: a loaded unit under its own name (Id;
        an alias answers its target's state) whose UnitFileState is one `is-enabled` exits 0
        on, and a unit with no file (LoadState not-found: `is-enabled` exits 1 there, and the
        per-unit line says "not-found"; a systemd that also prints "not-found" on stdout adds
        a line of one word there, which process() skips). Any other unit (masked, disabled, an
        alias, a `show` that failed) is read with the former per-unit command, so its line is
        what it always was. (A controller that is not the backup node has the backup timers
        not found: they were two systemctl each, ~10 ms of CPU, at every run.)"""
        if not units:
            return self.per_unit_command(units)
        # LoadState:UnitFileState settled by `show`: a loaded unit enabled some way, a missing one
        fast = "|".join([*(f"loaded:{state}" for state in ENABLED_STATES), "not-found:"])
        fallback = " ".join(f"{u}) {{ {self._per_unit(u)}; }} </dev/null;;" for u in dict.fromkeys(units))
        body = (
            f"for u in {' '.join(units)}; do i=; a=; e=; s=; "
            "while IFS= read -r l && [ -n \"$l\" ]; do case $l in Id=*) i=${l#Id=};; ActiveState=*) a=${l#*=};; "
            "UnitFileState=*) e=${l#*=};; LoadState=*) s=${l#*=};; esac; done; "
            "case $u in *.*) n=$u;; *) n=$u.service;; esac; "
            f"if [ \"$i\" = \"$n\" ] && [ -n \"$a\" ] && case $s:$e in {fast}) true;; *) false;; esac; "
            f"then p=; [ -e {PENDING_DIR}/$u ] && p=pending; echo \"$u $a ${{e:-not-found}} $p\"; "
            f"else case $u in {fallback} esac; fi; done"
        )
        return (f"systemctl show -p Id,ActiveState,UnitFileState,LoadState -- {' '.join(units)} 2>/dev/null | "
                f"{{ {body}; }}; {self._reloads()}")

    @staticmethod
    def _per_unit(u):
        return (f'echo "{u} $(systemctl is-active {u}) $(systemctl is-enabled {u} 2>/dev/null || echo not-found) '
                f'$(test -e {PENDING_DIR}/{u} && echo pending)"')

    @staticmethod
    def _reloads():
        # the shell's own glob (sorted as ls sorts): no process (ls, sed and tr were three)
        return (f"r=; for f in {PENDING_DIR}/{RELOAD_MARKER}*; do [ -e \"$f\" ] && r=\"$r${{f##*/{RELOAD_MARKER}}} \"; done; "
                f"echo \"{RELOADS_LINE} $r\"")

    @classmethod
    def per_unit_command(cls, units):
        """The former command, three processes per unit: the fallback of the command above
        and the reference its unit tests hold it to, byte for byte."""
        return "; ".join((*(cls._per_unit(u) for u in units), cls._reloads()))

    def process(self, output):
        states, reloads = {}, []
        for line in output:
            parts = line.split()
            if parts[:1] == [RELOADS_LINE]:
                reloads = sorted(parts[1:])
            elif len(parts) >= 3:
                states[parts[0]] = {"active": parts[1], "enabled": parts[2], "pending": parts[3:] == ["pending"]}
        return {"units": states, "reloads": reloads, "error": None if states else "unit states: nothing read"}


class Maintenance(FactBase):
    """Whether this controller is in maintenance: its marker (config.files.MAINTENANCE_FILE)
    says 1. A missing file or 0 is not (keepalived writes 0 when the file is missing).

    .. code:: python

        {"out": True, "error": None}
    """

    @staticmethod
    def default():
        return {"out": None, "error": "no answer from the host"}

    def command(self, path: str):
        return f"echo \"maintenance=$(head -c 8 {shlex.quote(path)} 2>/dev/null | tr -d '[:space:]')\""

    def process(self, output):
        for line in output:
            if line.startswith("maintenance="):
                return {"out": line.partition("=")[2].strip() == "1", "error": None}
        return {**self.default(), "error": "maintenance marker: nothing read"}


class PeerReach(FactBase):
    """
    Whether this controller reaches each peer, asked from the controller itself: a TCP
    connection to each (address, port), bounded by `timeout` seconds, all in parallel. "open":
    accepted; "refused": the peer answered with a reset (it is there, nothing listens); "none":
    no answer (cut off, or the peer is down). A partition shows here, not in the peer's own facts:

    .. code:: python

        {"reach": {"10.77.0.11": {4567: "open", 25672: "open"},
                   "10.77.0.12": {4567: "none", 25672: "none"}}, "error": None}
    """

    @staticmethod
    def default():
        return {"reach": {}, "error": "no answer from the host"}

    def command(self, addresses, ports, timeout: int = 2):
        """Every probe in one bash, all bounded by one `timeout` (it was a timeout and a bash
        per probe: two processes each, at every run, more with every controller). The probes
        asked are said first (`A address/port ...`); one still waiting when the timeout ends
        the group printed nothing, and process() says it "none", as the timeout of one did."""
        targets = " ".join(f"{a}/{int(p)}" for a in addresses for p in ports)
        script = (f"for t in {targets}; do ( r=$(exec 2>&1 3<>/dev/tcp/$t) && echo \"R ${{t%/*}} ${{t##*/}} open\" || "
                  "case \"$r\" in *refused*) echo \"R ${t%/*} ${t##*/} refused\";; *) echo \"R ${t%/*} ${t##*/} none\";; esac ) & "
                  "done; wait")
        return f"echo 'A {targets}'; timeout {int(timeout)} bash -c {shlex.quote(script)}; echo end=yes"

    def process(self, output):
        reach: dict = {}
        asked: list[tuple[str, int]] = []
        done = False
        for line in output:
            words = line.split()
            if words[:1] == ["R"] and len(words) == 4 and words[2].isdigit():
                reach.setdefault(words[1], {})[int(words[2])] = words[3]
            elif words[:1] == ["A"]:
                asked = [(t.rpartition("/")[0], int(t.rpartition("/")[2])) for t in words[1:] if t.rpartition("/")[2].isdigit()]
            elif line.strip() == "end=yes":
                done = True
        if not done:
            return {**self.default(), "error": "peer reach: output cut short (no end marker)"}
        for address, port in asked:  # no answer before the timeout ended it
            reach.setdefault(address, {}).setdefault(port, "none")
        return {"reach": reach, "error": None}
