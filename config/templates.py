"""The Jinja2 environment every template of files/templates/ is rendered with, and the line
each managed file starts with. A leaf (it imports only config.syntax): the file table
(config/files.py) and the modules that render a component's files for it (config/monitoring.py)
share it without importing each other."""

from __future__ import annotations

import hashlib
from pathlib import Path

import jinja2

from config.syntax import curl_quoted, erlang_ip, haproxy_word, option_value

TEMPLATES = Path(__file__).resolve().parent.parent / "files" / "templates"
MANAGED = "Managed by the openstack-ha pyinfra deploy; local changes are overwritten."

OPTIONS = {"undefined": jinja2.StrictUndefined, "trim_blocks": True, "lstrip_blocks": True,
           "keep_trailing_newline": True, "autoescape": False}
# Each template compiled once per machine, not once per run (~0.05 s of every run's CPU):
# jinja2's cache in its own per-user directory (0700, owner checked), keyed by a template's name
# and source; its files named by these options and jinja2's version too (compiled code depends
# on them), apart from other projects'.
_COMPILED_WITH = hashlib.sha1(repr((sorted((k, str(v)) for k, v in OPTIONS.items()), jinja2.__version__)).encode()).hexdigest()[:12]
env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    bytecode_cache=jinja2.FileSystemBytecodeCache(pattern=f"__openstack_ha_{_COMPILED_WITH}_%s.cache"),
    **OPTIONS,
)
# Values quoted for the file they land in (config/syntax.py).
env.filters["haproxy_word"] = haproxy_word
env.filters["option_value"] = option_value
env.filters["curl_quoted"] = curl_quoted
env.filters["erlang_ip"] = erlang_ip
env.filters["dirname"] = lambda path: str(Path(path).parent)
