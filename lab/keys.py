"""The lab's credentials: its SSH key, its generated secrets file (one value for each secret
the deploy knows, config/secrets.py) and its certificate authority, which signs the VIP's
certificate (the secret haproxy_tls_pem) and, for galera_tls / rabbitmq_tls, each node's
certificate (host key tls_node_pem), all under /var/tmp/halab, outside the repository."""

from __future__ import annotations

import contextlib
import json
import os
import secrets as _secrets
import string
import tempfile
from pathlib import Path

from lab.host import run, write
from lab.names import CA_FILE, CA_KEY, EXTERNAL_VIP, SECRETS_FILE, SSH_KEY, STATE_DIR, VIP, LabError

_ALNUM = string.ascii_letters + string.digits
# (alphabet, length) of the secrets that need a form of their own: keepalived takes at most 8
# characters; an Erlang cookie is upper-case letters. Any other: 24 letters and digits.
_FORMS = {"vrrp_auth_pass": (_ALNUM, 8), "rabbitmq_erlang_cookie": (string.ascii_uppercase, 32)}


def _gen(alphabet: str, n: int) -> str:
    return "".join(_secrets.choice(alphabet) for _ in range(n))


def generate_secrets(have: frozenset = frozenset()) -> dict:
    """A fresh value for every secret the deploy knows (config/secrets.py; imported here, not at
    the top, so that the lab's command line needs nothing of the project to report an error);
    the VIP's certificate only when it is not in `have` (it takes openssl runs)."""
    from config.secrets import SECRETS

    made = {name: _gen(*_FORMS.get(name, (_ALNUM, 24))) for name in SECRETS if name != "haproxy_tls_pem"}
    if "haproxy_tls_pem" in SECRETS and "haproxy_tls_pem" not in have:
        made["haproxy_tls_pem"] = vip_certificate()
    return made


def _openssl(*args: str) -> None:
    run(["openssl", *args])


def ensure_ca() -> None:
    """The lab's CA (P-256, 10 years), made once."""
    if CA_FILE.exists() and CA_KEY.exists():
        return
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "3650", "-subj", "/CN=openstack-ha lab CA", "-keyout", str(CA_KEY), "-out", str(CA_FILE))
    os.chmod(CA_KEY, 0o600)


def vip_addresses() -> tuple[str, ...]:
    """The addresses the VIP's certificate names: the VIP, and the external VIP when the lab
    has one (HAProxy serves the public listeners there with the same certificate)."""
    return tuple(a for a in (VIP, EXTERNAL_VIP) if a)


def vip_certificate() -> str:
    """A certificate for the VIPs (subjectAltName IP:VIP and IP:EXTERNAL_VIP), signed by the
    lab's CA, followed by its key: the PEM bundle HAProxy reads."""
    ensure_ca()
    sans = ",".join(f"IP:{a}" for a in vip_addresses())
    with tempfile.TemporaryDirectory(dir=STATE_DIR) as d:
        key, csr, crt, ext = (f"{d}/{n}" for n in ("vip.key", "vip.csr", "vip.pem", "ext.cnf"))
        Path(ext).write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-subj", f"/CN={VIP}", "-keyout", key, "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", str(CA_FILE), "-CAkey", str(CA_KEY), "-CAcreateserial",
                 "-days", "825", "-extfile", ext, "-out", crt)
        return Path(crt).read_text() + Path(key).read_text()


NODE_TLS_DIR = STATE_DIR / "node-tls"
# A node's certificate serves both ends of a peer connection (Galera, the Erlang distribution).
NODE_EXT = "subjectAltName=DNS:{name},IP:{address}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"


def node_certificate(name: str, address: str, ca_file: Path, ca_key: Path, days: int = 825) -> str:
    """A controller's certificate (CN and DNS name `name`, IP `address`, server and client use),
    signed by the CA (`ca_file`, `ca_key`), followed by its key: the PEM of host key tls_node_pem."""
    with tempfile.TemporaryDirectory() as d:
        key, csr, crt, ext = (f"{d}/{n}" for n in ("node.key", "node.csr", "node.pem", "ext.cnf"))
        Path(ext).write_text(NODE_EXT.format(name=name, address=address))
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-subj", f"/CN={name}", "-keyout", key, "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", str(ca_file), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-days", str(days), "-extfile", ext, "-out", crt)
        return Path(crt).read_text() + Path(key).read_text()


def ensure_node_pem(name: str, address: str) -> str:
    """The lab node's tls_node_pem (mode 0600 under NODE_TLS_DIR), issued once from the lab's CA
    (again when the CA is newer than it, or the address it names changed). Returns its path."""
    ensure_ca()
    path = NODE_TLS_DIR / f"{name}.pem"
    if path.exists() and path.stat().st_mtime >= CA_FILE.stat().st_mtime:
        p = run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], check=False, input=path.read_text())
        if f"IP Address:{address}" in (p.stdout or ""):
            return str(path)
    NODE_TLS_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(NODE_TLS_DIR, 0o700)
    write(path, node_certificate(name, address, CA_FILE, CA_KEY), 0o600)
    return str(path)


def names_vips(pem: str) -> bool:
    """Whether the certificate of a PEM bundle names every address of vip_addresses(), as
    preflight reads it (config.tls.local_names: in this process for a bundle that passes its
    checks; the inventory runs this at every load). Imported here, as lab/sitemodel.py imports
    config: the lab package itself runs without the project beside it (`python -m lab`)."""
    from config.tls import local_names

    return set(vip_addresses()) <= set(local_names(pem)[1])


def read_secrets(path: Path, remedy: str) -> dict:
    """A secrets file's JSON object ({} when it does not exist); LabError naming `remedy` when
    it cannot be read (never its content)."""
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise LabError(f"{path} is not valid JSON: {remedy}") from None


def ensure_secrets() -> str:
    """Create the lab's secrets file once (mode 0600); add keys it lacks. Returns its path."""
    path = Path(SECRETS_FILE)
    current = read_secrets(path, "remove it (python -m lab down --purge)")
    if not CA_FILE.exists():
        current.pop("haproxy_tls_pem", None)  # signed by a CA that is gone: the clients could not trust it
    elif current.get("haproxy_tls_pem") and not names_vips(current["haproxy_tls_pem"]):
        current.pop("haproxy_tls_pem")  # made before the external VIP: a new one names both
    fresh = generate_secrets(frozenset(k for k, v in current.items() if v))
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
