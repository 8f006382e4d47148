"""The shell wrapper of every fact, and the error contract.

Two pyinfra 3.10 behaviours shape the commands:
- a fact whose command exits non-zero fails the host with "could not load fact", and a fact
  with `requires_command` whose binary is missing quietly returns its default. Neither may
  hide a broken service, so no fact uses `requires_command`; instead each command checks its
  binary itself and always exits 0, printing `__missing=<binary>` or the tool's output
  followed by `__rc=<exit status>`. process() turns a missing binary, a non-zero status or
  unparsable output into an explicit `error` string.
- pyinfra sets no command timeout: every remote tool runs under `timeout`.

No fact takes a secret as an argument (pyinfra prints fact arguments with -v): MariaDB is
read as root through its unix socket, RabbitMQ's definitions from the management API as the
administrator (its password among the compared values on stdin, below; rabbitmqctl as root
when that fails) and its members through the management API as the monitoring account, whose login curl reads from a
0600 root file (`curl -K`, never an argument), HAProxy through its admin socket, memcached
with an unauthenticated `stats`.
"""

from __future__ import annotations

import json
import shlex

RC_PREFIX = "__rc="
MISSING_PREFIX = "__missing="
ARG_PREFIX = "__arg_"
# What a fact compares on the host, never printed (pyinfra prints fact arguments with -v and
# their output with -vvv): the run hands it to a bundle (facts.bundle, with_input) on stdin; it
# lands in a 0600 file of the bundle's private directory, named by $HA_INPUT, removed when the
# bundle ends. A JSON object: {"mysql": {user: expected hash}, "rabbitmq": {user: password}}.
# The facts answer yes or no per account; without it (read on their own), no.
INPUT_ENV = "HA_INPUT"
EXPECTED = (
    "import json, os, sys\n"
    "def expected(section):\n"
    "    try:\n"
    f"        with open(os.environ.get('{INPUT_ENV}') or os.devnull) as f:\n"
    "            return json.load(f).get(section) or {}\n"
    "    except (OSError, ValueError, AttributeError):\n"
    "        return {}\n"
)

# Python source for the facts' own HTTP reads on a node (python3 there, curl may not be):
# http_get(address, port, path, headers) -> (status line, body bytes), HTTP/1.0 over a plain
# socket (never chunked; the server closes), OSError on a failed connection or a timeout.
# json and socket only: python3 starts in half the CPU of urllib's imports.
HTTP_GET = """\
import json, socket, sys
def http_get(address, port, path, headers=(), timeout=10):
    host = ("[%s]" if ":" in address else "%s") % address
    s = socket.create_connection((address, port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.0\\r\\nHost: %s:%d\\r\\nAccept: application/json\\r\\n%s\\r\\n"
                   % (path, host, port, "".join("%s: %s\\r\\n" % h for h in headers))).encode())
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        s.close()
    head, _, body = b"".join(chunks).partition(b"\\r\\n\\r\\n")
    return head.split(b"\\r\\n", 1)[0].decode("latin-1"), body
"""

NO_OUTPUT = "no answer from the host (connection lost or command timed out; fact not collected)"


def probe(binary: str, command: str, args: dict[str, str] | None = None) -> str:
    """Shell text that runs `command` (stderr merged) if `binary` exists, always exits 0.

    Output: optional `__arg_<k>=<v>` lines (arguments process() needs), then either
    `__missing=<binary>` or the command's output and `__rc=<status>`.
    """
    echo_args = "".join(f"echo {shlex.quote(f'{ARG_PREFIX}{k}={v}')}; " for k, v in (args or {}).items())
    return (
        f"{echo_args}if command -v {binary} >/dev/null 2>&1; "
        # The extra newline: a tool whose output lacks a final one cannot hide the status.
        f"then ( {command} ) 2>&1; rc=$?; echo; echo {RC_PREFIX}$rc; "
        f"else echo {MISSING_PREFIX}{binary}; fi"
    )


# Where facts keep an answer derived from one file only (cached_by_file): tmpfs, root's, emptied
# by a reboot.
CACHE_DIR = "/run/openstack-ha/facts"


def cached_by_file(path: str, name: str, command: str) -> str:
    """Shell text: `command`'s output (stderr merged, exit status kept), for an answer that
    depends on the file at `path` alone. The output of a status 0 is kept in CACHE_DIR/`name`
    with the file's identity (device, inode, size, mtime and ctime to the nanosecond): while the
    file is that same one, a later run prints the kept output and does not run `command`.
    Writing or replacing the file changes its ctime, which no tool sets back, so a changed file
    is always read again; a file that changes between the identity and the read is kept under
    the older identity, which a later run no longer matches. Without a readable identity, or if
    the directory cannot be written, `command` runs each time."""
    cache = shlex.quote(f"{CACHE_DIR}/{name}")
    return (
        f"k=$(stat -Lc '%d:%i:%s:%.9Y:%.9Z' -- {shlex.quote(path)} 2>/dev/null); "
        f"if [ -n \"$k\" ] && {{ IFS= read -r h && [ \"$h\" = \"$k\" ] && cat; }} 2>/dev/null <{cache}; then exit 0; fi; "
        f"o=$( ( {command} ) 2>&1); rc=$?; printf '%s\\n' \"$o\"; "
        f"if [ $rc -eq 0 ] && [ -n \"$k\" ]; then {{ mkdir -p -m 0700 {shlex.quote(CACHE_DIR)} && "
        f"printf '%s\\n%s\\n' \"$k\" \"$o\" >{cache}.$$ && mv -f {cache}.$$ {cache}; }} 2>/dev/null; fi; exit $rc"
    )


def split_probe(output: list[str]) -> tuple[list[str], int | None, str | None, dict[str, str]]:
    """(body lines, exit status or None, missing binary or None, echoed args) of a probe()."""
    body: list[str] = []
    rc: int | None = None
    missing: str | None = None
    args: dict[str, str] = {}
    for raw in output:
        line = raw.rstrip("\r\n")
        if line.startswith(RC_PREFIX):
            try:
                rc = int(line[len(RC_PREFIX):])
            except ValueError:
                rc = -1
        elif line.startswith(MISSING_PREFIX):
            missing = line[len(MISSING_PREFIX):]
        elif line.startswith(ARG_PREFIX) and "=" in line:
            key, _, value = line[len(ARG_PREFIX):].partition("=")
            args[key] = value
        else:
            body.append(line)
    return body, rc, missing, args


def failure(body: list[str], rc: int | None, missing: str | None, what: str) -> str | None:
    """The error text of a probe, or None when it ran and exited 0."""
    if missing:
        return f"{missing} not installed (command not found)"
    if rc is None:
        return f"{what}: no exit status in the output (probe cut short)"
    if rc == 0:
        return None
    if rc == 124:
        return f"{what}: timed out"
    # The tool's own error line if it printed one (rabbitmqctl follows it with its usage text
    # or a list of hints), else its last line.
    said = next((line.strip() for line in body if line.strip().lower().startswith("error")), "")
    said = said or next((line.strip() for line in reversed(body) if line.strip()), "")
    return f"{what}: exit status {rc}" + (f": {said[:300]}" if said else "")


def key_values(lines: list[str], sep: str = "=") -> dict[str, str]:
    """`key=value` lines as a dict (stripped); other lines ignored."""
    out = {}
    for line in lines:
        key, found, value = line.partition(sep)
        if found:
            out[key.strip()] = value.strip()
    return out


def find_json_object(body: list[str], key: str, what: str):
    """(the first JSON object in the output that has `key`, None) or (None, error text).

    Tools print warnings or Erlang terms (`{badrpc,...}`) around their JSON: each line that
    starts with `{` is tried; the error quotes the start of the output.
    """
    text = "\n".join(body)
    decoder = json.JSONDecoder()
    offset = 0
    problem = None
    for line in body:
        if line.lstrip().startswith("{"):
            start = offset + len(line) - len(line.lstrip())
            try:
                data, _ = decoder.raw_decode(text[start:])
            except ValueError as exc:
                problem = problem or f"unparsable JSON ({exc})"
            else:
                if isinstance(data, dict) and key in data:
                    return data, None
                problem = problem or f"JSON without {key!r}"
        offset += len(line) + 1
    snippet = " ".join(text.split())[:160]
    return None, f"{what}: {problem or 'no JSON in the answer'}" + (f": {snippet}" if snippet else "")


def as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


TLS_STATES = ("tls", "plain", "stopped", "unknown")


def tls_reading(output: list[str], key: str) -> dict:
    """`{key: "tls" | "plain" | "stopped" | "unknown", "error": None}` from the lines `<key>=<state>`
    and `end=yes` (facts.galera.GaleraTls, facts.rabbitmq.RabbitmqTls); an error when either is
    missing (output cut short)."""
    values = key_values(output)
    if values.get("end") != "yes" or values.get(key) not in TLS_STATES:
        return {key: None, "error": f"{key} tls: output cut short (no end marker)"}
    return {key: values[key], "error": None}
