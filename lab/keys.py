"""The lab's credentials: its SSH key and its generated secrets file (one value for each secret
the deploy knows, config/secrets.py), both under /var/tmp/halab, outside the repository."""

from __future__ import annotations

import contextlib
import json
import os
import secrets as _secrets
import string
from pathlib import Path

from lab.host import run, write
from lab.names import SECRETS_FILE, SSH_KEY, STATE_DIR, LabError

_ALNUM = string.ascii_letters + string.digits
# (alphabet, length) of the secrets that need a form of their own: keepalived takes at most 8
# characters; an Erlang cookie is upper-case letters. Any other: 24 letters and digits.
_FORMS = {"vrrp_auth_pass": (_ALNUM, 8), "rabbitmq_erlang_cookie": (string.ascii_uppercase, 32)}


def _gen(alphabet: str, n: int) -> str:
    return "".join(_secrets.choice(alphabet) for _ in range(n))


def generate_secrets() -> dict:
    """A fresh value for every secret the deploy knows (config/secrets.py; imported here, not at
    the top, so that the lab's command line needs nothing of the project to report an error)."""
    from config.secrets import SECRETS

    return {name: _gen(*_FORMS.get(name, (_ALNUM, 24))) for name in SECRETS}


def ensure_secrets() -> str:
    """Create the lab's secrets file once (mode 0600); add keys it lacks. Returns its path."""
    path = Path(SECRETS_FILE)
    current = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            raise LabError(f"{path} is not valid JSON: remove it (python -m lab down --purge)")
    fresh = generate_secrets()
    merged = {**fresh, **{k: v for k, v in current.items() if v}}
    if merged != current or (path.stat().st_mode & 0o777) != 0o600:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        write(path, json.dumps(merged, indent=2, sort_keys=True) + "\n", 0o600)
    return str(path)


def ensure_key() -> None:
    key = Path(SSH_KEY)
    if key.exists() and Path(SSH_KEY + ".pub").exists():
        return
    for p in (key, Path(SSH_KEY + ".pub")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "halab", "-f", SSH_KEY])
    os.chmod(SSH_KEY, 0o600)
