"""HAProxy's runtime API (the admin socket haproxy.cfg's `stats socket` opens: the site's
haproxy_stats_socket), spoken here only.

The shell that sends requests, every one bounded by TIMEOUT; the requests the deploy and the
maintenance command send; `show stat`'s CSV read by column NAME, in Python (parse_stat) and in
the shell (stat_awk), never by position. Pure (no pyinfra, no I/O): the facts
(facts/haproxy.py), the deploy (operations/galera.py, operations/maintenance.py), the
maintenance plan (operations/maintenance_plan.py) and the lab (lab/clients.py) build their
command lines and read their answers here. Tested in tests/unit/test_haproxy_api.py, the shell
run against captured answers (tests/unit/captures/haproxy_servers/).
"""

from __future__ import annotations

import shlex

TIMEOUT = 5  # seconds one request may take: connect, send, read the whole answer

q = shlex.quote


# --- sending -------------------------------------------------------------------------------


def ask(socket: str, request: str) -> str:
    """Shell: send one request line (`;`-separated commands run in order on one connection)
    and print HAProxy's answer; socat's own error line on stderr when the socket does not
    answer, exit status 124 after TIMEOUT."""
    return f"echo {q(request)} | timeout {TIMEOUT} socat stdio UNIX-CONNECT:{q(socket)}"


def send_file(socket: str, path: str) -> str:
    """Shell: send the request line file `path` holds; print the answer."""
    return f"timeout {TIMEOUT} socat stdio UNIX-CONNECT:{q(socket)} < {q(path)}"


def silent(send: str) -> str:
    """Shell: run `send` (a request); any answer is an error (the `set server` and `shutdown
    sessions` commands answer nothing when they succeed)."""
    return (f"out=$({send}); test -z \"$(echo \"$out\" | tr -d '[:space:]')\" || "
            f"{{ echo \"$(hostname): haproxy: $out\" >&2; exit 1; }}")


def api(socket: str, line: str) -> str:
    """Shell: send one request line to this controller's HAProxy, any answer an error. A
    controller whose HAProxy does not run has no runtime state: nothing is sent (its unit
    replays HAPROXY_MAINT_FILE at start; a first deploy has nothing to move)."""
    return f"if test -S {q(socket)}; then {silent(ask(socket, line))}; fi"


def replay(socket: str, path: str) -> str:
    """Shell: send the line of the replay file `path` (if any) to this controller's HAProxy."""
    return f"if test -S {q(socket)} && test -s {q(path)}; then {silent(send_file(socket, path))}; fi"


# --- the requests --------------------------------------------------------------------------


def requests(listeners: list[str], node: str, *verbs: str) -> str:
    """One request line: each verb for the node's server of each listener, `;`-separated
    (HAProxy runs them in order, on one connection). Verbs: `state maint|drain|ready`,
    `shutdown sessions`."""
    out = []
    for listener in listeners:
        for verb in verbs:
            out.append(f"shutdown sessions server {listener}/{node}" if verb == "shutdown sessions"
                       else f"set server {listener}/{node} {verb}")
    return "; ".join(out)


def maint_line(listeners: list[str], nodes) -> str:
    """The line HAPROXY_MAINT_FILE holds: every listener's server of each node in maintenance
    in maint; "" when none is."""
    return "; ".join(r for n in sorted(nodes) for r in [requests(listeners, n, "state maint")] if r)


# --- `show stat`, by column name -----------------------------------------------------------


def parse_stat(lines) -> list[dict[str, str]] | None:
    """`show stat`'s CSV as rows {column name: value}, FRONTEND and BACKEND rows included;
    None when the answer holds no header line (`# pxname,svname,...`)."""
    header, rows = None, []
    for line in lines:
        if line.startswith("# "):
            header = line[2:].rstrip("\n").split(",")
            continue
        if header is None or not line.strip():
            continue
        rows.append(dict(zip(header, line.rstrip("\n").split(","))))
    return None if header is None else rows


# awk: the header line names the columns (col[name] = its position); a program reads a
# column as $col["status"], whatever HAProxy's version puts where.
STAT_COLUMNS = '/^# / {sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next}'


def stat_awk(socket: str, program: str, **variables: str) -> str:
    """Shell: `show stat` through awk `program`, which reads the columns by name
    ($col["svname"]); `variables` are passed with -v."""
    given = "".join(f" -v {k}={q(v)}" for k, v in variables.items())
    return f"{ask(socket, 'show stat')} | awk -F,{given} {q(STAT_COLUMNS + ' ' + program)}"


def sessions(socket: str, node: str, skip: str) -> str:
    """Shell: the open sessions (scur) of `node`'s servers, every listener but `skip`."""
    return stat_awk(socket, '$col["svname"]==s && $col["pxname"]!=skip {n+=$col["scur"]} END {print n+0}',
                    s=node, skip=skip)


def server_up(socket: str, listener: str, node: str) -> str:
    """Shell test: `listener/node` is UP (its checks pass, not in maint)."""
    return stat_awk(socket, '$col["pxname"]==p && $col["svname"]==s && $col["status"]=="UP" {ok=1} END {exit !ok}',
                    p=listener, s=node)


def all_maint(socket: str, node: str) -> str:
    """Shell test: no server of `node` shows a status but MAINT (an answer without any
    passes: a socket that does not answer shows nothing)."""
    return stat_awk(socket, '$col["svname"]==s && $col["status"]!="MAINT" && $col["status"]!="" {bad=1} END {exit bad}',
                    s=node)
