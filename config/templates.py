"""The Jinja2 environment every template of files/templates/ is rendered with, and the line
each managed file starts with. A leaf (it imports only config.syntax): the file table
(config/files.py) and the modules that render a component's files for it (config/monitoring.py)
share it without importing each other."""

from __future__ import annotations

from pathlib import Path

import jinja2

from config.syntax import curl_quoted, erlang_ip, haproxy_word, option_value

TEMPLATES = Path(__file__).resolve().parent.parent / "files" / "templates"
MANAGED = "Managed by the openstack-ha pyinfra deploy; local changes are overwritten."

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)
# Values quoted for the file they land in (config/syntax.py).
env.filters["haproxy_word"] = haproxy_word
env.filters["option_value"] = option_value
env.filters["curl_quoted"] = curl_quoted
env.filters["erlang_ip"] = erlang_ip
env.filters["dirname"] = lambda path: str(Path(path).parent)
