"""Quoting a value for the syntax of the file it lands in (Jinja filters of config/files.py).

A value made only of SAFE characters is written bare, as before: a site whose values need no
quoting renders byte for byte what it did (no reload or restart for a cosmetic change).
Anything else is quoted so that the daemon's own parser reads back the exact value; the
characters a file cannot carry at all (control characters) are refused by preflight
(config/schema.py SECRET), never escaped here.
"""

from __future__ import annotations

import ipaddress

import re

SAFE = re.compile(r"[A-Za-z0-9_.,:@%+=/-]+")


def haproxy_word(value: str) -> str:
    """One word of haproxy.cfg (HAProxy 2.6 parse_line): single quotes keep everything
    literal ('#', spaces, '$', '\\', '"'); a single quote is closed, escaped and reopened."""
    return value if SAFE.fullmatch(value) else "'" + haproxy_inner(value) + "'"


def haproxy_inner(value: str) -> str:
    return value.replace("'", "'\\''")


def option_value(value: str) -> str:
    """An option value of a MariaDB option file (my.cnf): double-quoted so that '#' is not a
    comment and leading or trailing spaces stay; inside, backslash and double quote escaped
    (mysys unescapes \\\\ and \\")."""
    return value if SAFE.fullmatch(value) else '"' + option_inner(value) + '"'


def option_inner(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def curl_quoted(value: str) -> str:
    """A parameter of a curl config file (`-K`), always double-quoted: inside, curl unescapes
    \\\\ and \\" (and \\t \\n \\r \\v, which a value never needs: control characters are refused);
    the escaping is option_inner's, so mask() hides it already."""
    return '"' + option_inner(value) + '"'


# How a secret can appear inside a rendered file: config.secrets.mask() hides each form.
ENCODINGS = (haproxy_inner, option_inner)


def erlang_ip(address: str) -> str:
    """An IP address as an Erlang term: {10,77,0,11}; an IPv6 one as its eight 16-bit words."""
    ip = ipaddress.ip_address(address)
    words = ip.packed if ip.version == 4 else [int.from_bytes(ip.packed[i:i + 2], "big") for i in range(0, 16, 2)]
    return "{" + ",".join(str(w) for w in words) + "}"
