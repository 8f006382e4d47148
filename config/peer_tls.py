"""TLS between the controllers (galera_tls, rabbitmq_tls) and AMQP over TLS for the OpenStack
services (rabbitmq_amqp_tls, config/amqp_tls.py): the certificate material as data, the files each
daemon reads, and preflight's checks of it.

The material is two kinds of file on the machine that deploys, never in git: the CA certificate
(site key peer_tls_ca_file) and, per controller, its certificate (chain) followed by its
unencrypted private key (host key tls_node_pem, mode 0600). Each daemon gets its own copy under
its directory (config/paths.py), 0640 root:<its group>: the CA, the node's certificate chain and
the node's key (a file of its own, shown nowhere: a secret ManagedFile).

Offline (placeholders instead of the secrets: `make render`, a printed diff) no key is read: the
key file renders as a placeholder, and a file that cannot be read as another one.

The checks reuse config/tls.py's openssl commands (certificate and key read, key matching the
first certificate, not expired), then: the certificate names the node's address, is valid
already, and is signed by the CA (`openssl verify`, the certificate only).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from config import tls
from config.schema import LOCAL_FILE
from config.paths import GALERA_TLS_DIR, RABBITMQ_DIST_OPTFILE, RABBITMQ_TLS_DIR
from config.secrets import PLACEHOLDERS, REPO_ROOT
from config.site import GROUP

SWITCHES = ("galera_tls", "rabbitmq_tls", "rabbitmq_amqp_tls")
CA_KEY, NODE_KEY = "peer_tls_ca_file", "tls_node_pem"
# The files a daemon reads: {component: (directory, group)}; names inside each directory below.
DIRS = {"galera": (GALERA_TLS_DIR, "mysql"), "rabbitmq": (RABBITMQ_TLS_DIR, "rabbitmq")}
# The switches that install a component's copy of the material (RabbitMQ's serves both its
# Erlang distribution and its AMQP listener).
SWITCH_OF = {"galera": ("galera_tls",), "rabbitmq": ("rabbitmq_tls", "rabbitmq_amqp_tls")}
NONE_ON = " and ".join(SWITCHES[:-1]) + " and " + SWITCHES[-1] + " are False"
CA_NAME, CERT_NAME, KEY_NAME = "ca.pem", "node.crt", "node.key"
DIST_OPTFILE = RABBITMQ_DIST_OPTFILE
PLACEHOLDER_KEY = "__TLS_NODE_KEY__"
PLACEHOLDER_FILE = "__PEER_TLS_FILE_NOT_READ__"

_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", re.S)
_KEY = re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----\n?", re.S)


def on(data: dict) -> bool:
    """Whether the site asks for any TLS that uses the controllers' certificates."""
    return any(data.get(k) for k in SWITCHES)


def paths(component: str) -> dict[str, str]:
    """{ca, cert, key}: where `component` ("galera" or "rabbitmq") reads the material."""
    directory = DIRS[component][0]
    return {"ca": f"{directory}/{CA_NAME}", "cert": f"{directory}/{CERT_NAME}", "key": f"{directory}/{KEY_NAME}"}


def local_path(value: str) -> Path:
    """A path of the site's data on this machine: relative to the repository root, or absolute."""
    p = Path(value)
    return p if p.is_absolute() else REPO_ROOT / p


def split_pem(pem: str) -> tuple[str, str]:
    """(the certificate blocks, in order; the first private key block) of a PEM bundle. Pure."""
    certs = "".join(m.group(0).rstrip("\n") + "\n" for m in _CERT.finditer(pem))
    key = _KEY.search(pem)
    return certs, (key.group(0).rstrip("\n") + "\n") if key else ""


def offline(secrets: dict) -> bool:
    """Whether `secrets` are placeholders only (an offline render, a printed diff): no key is read."""
    return all(PLACEHOLDERS.get(k) == v for k, v in secrets.items())


def _read(value: str | None) -> str | None:
    try:
        return local_path(value).read_text() if value else None
    except (OSError, UnicodeDecodeError):
        return None


def material(site, name: str, secrets: dict) -> dict[str, str]:
    """{ca, cert, key}: what controller `name`'s files hold; the key a placeholder offline."""
    ca = _read(site.data.get(CA_KEY))
    node = _read(site.controller(name).tls_node_pem)
    cert, key = split_pem(node) if node else (None, None)
    return {
        "ca": ca if ca is not None else PLACEHOLDER_FILE + "\n",
        "cert": cert if cert else PLACEHOLDER_FILE + "\n",
        "key": PLACEHOLDER_KEY + "\n" if offline(secrets) else (key or PLACEHOLDER_FILE + "\n"),
    }


# --- preflight --------------------------------------------------------------------------------


def _verify(cert: str, ca: str) -> bool | None:
    """Whether `cert` (certificates only, its chain after it) is signed by `ca`, by this machine's
    openssl; None when there is none. Certificates only: nothing here is secret."""
    if shutil.which("openssl") is None:
        return None
    with tls._pem_file(ca) as ca_path, tls._pem_file(cert) as cert_path:
        run = subprocess.run(["openssl", "verify", "-CAfile", str(ca_path), "-untrusted", str(cert_path), str(cert_path)],
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return run.returncode == 0


FIX_NODE = (f"give {NODE_KEY} a PEM file of this controller's certificate (subjectAltName IP:<its address>, "
            "DNS:<its name>; extendedKeyUsage serverAuth,clientAuth), signed by the CA of peer_tls_ca_file, "
            "then its chain, then its unencrypted key (cat node.crt chain.crt node.key), mode 0600")


def check(hosts: list[tuple[str, dict]], data: dict, site_keys, bad: set, required: bool, err, warn,
          now: datetime | None = None) -> None:
    """Preflight's checks of the material (errors stop the run before any host is touched).
    Off: a key that was set has no effect (a warning). `required` False (an offline render):
    a missing file is a warning."""
    G = GROUP
    if set(SWITCHES) & bad:
        return
    if not on(data):
        if CA_KEY in site_keys and data.get(CA_KEY) is not None:
            warn(G, CA_KEY, f"has no effect while {NONE_ON}", f"set one True, or remove {CA_KEY}")
        for name, hd in hosts:
            if NODE_KEY in hd:
                warn(name, NODE_KEY, f"has no effect while {NONE_ON}", f"set one True, or remove {NODE_KEY}")
        return
    now = now or datetime.now(timezone.utc)
    switched = " and ".join(k for k in SWITCHES if data.get(k))
    missing = err if required else warn
    ca = None
    if CA_KEY in bad:
        pass
    elif not data.get(CA_KEY):
        missing(G, CA_KEY, f"missing: {switched} needs the CA certificate of the controllers' certificates",
                f"set {CA_KEY} to its PEM file on this machine, or set {switched} False")
    else:
        path = local_path(data[CA_KEY])
        ca = _read(data[CA_KEY])
        if ca is None:
            missing(G, CA_KEY, f"{path} cannot be read", f"give {CA_KEY} the CA certificate's PEM file")
        elif not _CERT.search(ca) or _KEY.search(ca):
            err(G, CA_KEY, f"{path} {'holds a private key' if _KEY.search(ca) else 'holds no certificate'}",
                f"give {CA_KEY} the CA certificate alone (no key: the controllers need none of the CA's)")
            ca = None
    for name, hd in hosts:
        value = hd.get(NODE_KEY)
        if value is None:
            missing(name, NODE_KEY, f"missing: {switched} needs this controller's certificate and key",
                    f"set {NODE_KEY} in its host data: {FIX_NODE}")
            continue
        if LOCAL_FILE.why(value) is not None:
            continue  # refused by the schema (preflight said why)
        path = local_path(value)
        pem = _read(value)
        if pem is None:
            missing(name, NODE_KEY, f"{path} cannot be read", FIX_NODE)
            continue
        if path.stat().st_mode & 0o077:
            err(name, NODE_KEY, f"{path} is readable or writable by group or others (mode {path.stat().st_mode & 0o777:o}): "
                "it holds a private key", f"chmod 600 {path}")
        reason, until = tls.local_check(pem)
        if reason == "openssl not found":
            warn(name, NODE_KEY, "openssl is not installed here: the certificate is not checked before the deploy",
                 "install openssl (apt-get install openssl)")
            continue
        if reason:
            err(name, NODE_KEY, f"{path} {reason} (key not shown)", FIX_NODE)
            continue
        start, addresses = tls.local_names(pem)
        address = hd.get("address")
        if start is not None and start > now:
            err(name, NODE_KEY, f"{path}: the certificate is not valid before {start:%Y-%m-%d %H:%M} UTC (notBefore)",
                f"deploy it from then on, or {FIX_NODE}")
        if address and address not in addresses:
            err(name, NODE_KEY, f"{path}: the certificate does not name the node's address {address} "
                f"(its IP addresses: {', '.join(addresses) or 'none'})", FIX_NODE)
        left = tls.days_left(until, now) if until else None
        if left is not None and left < data.get("haproxy_tls_expiry_warn_days", 0):
            warn(name, NODE_KEY, f"{path}: the certificate expires in {left:.0f} days ({until:%Y-%m-%d %H:%M} UTC)",
                 f"renew it: {FIX_NODE}")
        if ca is not None and _verify(split_pem(pem)[0], ca) is False:
            err(name, NODE_KEY, f"{path}: the certificate is not signed by the CA of {CA_KEY} (openssl verify)",
                f"issue it from that CA, or set {CA_KEY} to the CA that signed it")
