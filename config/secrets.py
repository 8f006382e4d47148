"""Secrets: where they come from and how they are masked.

A secret's value never goes in git, a log, an operation argument or a printed diff. Values
come from the site's untracked `secrets_file` (JSON object) or from HA_SECRET_<NAME>
environment variables, which win. Wherever a file is shown rather than installed (offline
render, --diff), each value is replaced by its placeholder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from config.syntax import ENCODINGS

REPO_ROOT = Path(__file__).resolve().parent.parent

# name -> what it is for. Placeholders are valid where the value goes (the VRRP one is
# 8 characters, keepalived's limit), so a rendered config still passes the binaries' checks.
SECRETS = {
    "vrrp_auth_pass": "keepalived VRRP PASS authentication, at most 8 characters",
    "haproxy_stats_password": "HAProxy stats page password",
    "mariadb_admin_password": "MariaDB admin account",
    "mariadb_sst_password": "MariaDB account used by mariabackup state transfers",
    "rabbitmq_password": "RabbitMQ account used by the OpenStack services",
    "rabbitmq_admin_password": "RabbitMQ management administrator (rabbitmq_admin_user)",
    "rabbitmq_monitor_password": "RabbitMQ account of the health report (rabbitmq_monitor_user, tag monitoring)",
    "rabbitmq_erlang_cookie": "Erlang cookie shared by the RabbitMQ nodes",
    "haproxy_tls_pem": "the VIP's TLS certificate chain and private key, PEM (haproxy_tls only)",
}
# Secrets a site needs only when a site key is true: {secret: site key}.
NEEDED_WHEN = {"haproxy_tls_pem": "haproxy_tls"}


def needed(name: str, data: dict) -> bool:
    """Whether a site with these data (defaults applied) needs secret `name`."""
    return name not in NEEDED_WHEN or bool(data.get(NEEDED_WHEN[name]))


def placeholder(name: str) -> str:
    return "__VRRP__" if name == "vrrp_auth_pass" else f"__{name.upper()}__"


PLACEHOLDERS = {name: placeholder(name) for name in SECRETS}


def env_name(name: str) -> str:
    return f"HA_SECRET_{name.upper()}"


class SecretsError(ValueError):
    pass


def secrets_path(secrets_file: str | None, environ=os.environ) -> Path | None:
    path = environ.get("HA_SECRETS_FILE") or secrets_file
    if not path:
        return None
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def load_secrets(secrets_file: str | None, environ=os.environ) -> dict[str, str]:
    """The secrets found for a site: file values, overridden by the environment.

    Missing secrets are simply absent; preflight reports them. An unreadable or malformed
    file raises SecretsError naming the file (never its content).
    """
    values: dict[str, str] = {}
    path = secrets_path(secrets_file, environ)
    if path is not None and path.exists():
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SecretsError(f"secrets file {path}: cannot be read as a JSON object ({type(exc).__name__})")
        if not isinstance(loaded, dict):
            raise SecretsError(f"secrets file {path}: expected a JSON object of name: value")
        # As written: a value that is not a JSON string (a number would become "1234.5"), or
        # blank, is preflight's to refuse, by name.
        values.update({k: v for k, v in loaded.items() if v is not None})
    for name in SECRETS:
        if environ.get(env_name(name)):
            values[name] = environ[env_name(name)]
    if isinstance(values.get("haproxy_tls_pem"), str) and values["haproxy_tls_pem"].strip():
        # A file of its own, as given (`$(cat site.pem)` drops the final newline): one final newline.
        values["haproxy_tls_pem"] = values["haproxy_tls_pem"].strip() + "\n"
    return values


def mask(text: str, secrets: dict[str, str]) -> str:
    """Replace every secret value in text by its placeholder (longest values first), also
    as it is quoted in a rendered file (config.syntax.ENCODINGS)."""
    forms = {
        form: PLACEHOLDERS[name]
        for name, value in secrets.items() if value and name in PLACEHOLDERS
        for form in {value, *(encode(value) for encode in ENCODINGS)}
    }
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, forms[form])
    return text
