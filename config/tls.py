"""The VIP's certificate (the secret haproxy_tls_pem): the checks a new one must pass before
it replaces the old one, one source for both places they run.

- On each controller (operations/haproxy.py): the new file is staged beside the old one and
  checked there with the host's openssl and `haproxy -c`; only then is it moved in place.
- Offline in preflight (config/preflight.py), when the secrets are here: the same openssl
  checks with this machine's openssl, before any host is touched.

No check prints the key: every command's own output goes to /dev/null, and what fails is said
by the reason below. `openssl x509 -enddate` (the expiry date) reads the certificate only.
Here, a certificate that passes is read in this process (local_check()'s fast path: its
public key, dates, addresses; the key's public half), not by the checks one by one.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

SECRET = "haproxy_tls_pem"
# {pem}: the file checked, shell-quoted. `-passin pass:` makes an encrypted key fail at once
# instead of waiting for a passphrase (HAProxy cannot ask for one either).
OPENSSL_CHECKS = (
    ("openssl x509 -noout -in {pem}", "holds no certificate openssl can read"),
    ("openssl pkey -noout -passin pass: -in {pem}", "holds no private key openssl can read without a passphrase"),
    ('[ "$(openssl x509 -noout -pubkey -in {pem})" = "$(openssl pkey -pubout -passin pass: -in {pem})" ]',
     "has a private key that is not the first certificate's (another certificate's key, or the chain "
     "before the server certificate)"),
    ("openssl x509 -noout -checkend 0 -in {pem}", "has a certificate that has expired"),
)
# HAProxy loads the file as `crt` of a throwaway config (checked only, nothing binds).
HAPROXY_CHECK = (
    "printf 'defaults\\n  mode http\\n  timeout client 1s\\n  timeout server 1s\\n  timeout connect 1s\\n"
    "frontend tls_check\\n  bind 127.0.0.1:1 ssl crt %s\\n' {pem} | haproxy -c -q -f /dev/stdin",
    "is refused by `haproxy -c`",
)
FIX = (f"give {SECRET} the server certificate, then its chain, then the server's unencrypted private key "
       "(cat site.crt chain.crt site.key), valid today, and run again")
_PATH = "\0path\0"  # where the staged file's path goes in the host's command


def host_validation(who: str) -> str:
    """The command (a template with `{path}`, as operations.steps.managed_file takes it) that
    checks a staged certificate on a controller: the openssl checks, then haproxy -c. The first
    that fails prints one line naming `who` (host and target), the secret, what is wrong, that
    the old certificate stays, and the fix; the subshell exits 1."""
    steps = []
    for command, reason in (*OPENSSL_CHECKS, HAPROXY_CHECK):
        said = shlex.quote(f"{who}: the secret {SECRET} {reason}; the old certificate stays; fix: {FIX}")
        steps.append(f"if ! {command.format(pem=_PATH)} >/dev/null 2>&1; then echo {said} >&2; exit 1; fi")
    script = f"( {'; '.join(steps)} )"
    return script.replace("{", "{{").replace("}", "}}").replace(_PATH, "{path}")


def not_after(line: str) -> datetime | None:
    """The date of openssl's `notAfter=Nov 27 08:33:02 2028 GMT` (UTC), None if it is not one."""
    key, _, value = line.strip().partition("=")
    if key != "notAfter":
        return None
    try:
        return datetime.strptime(value.strip(), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


# How the HaproxyCertificate fact says the installed certificate's notAfter (UTC): written by
# the fact (facts/haproxy.py), read back by fact_date() (the report's row, the metric).
FACT_DATE = "%Y-%m-%dT%H:%M:%SZ"


def fact_date(value) -> datetime | None:
    """A date as the fact wrote it (FACT_DATE, UTC), None when it is none (absent, empty, not
    such a date). Pure."""
    try:
        return datetime.strptime(value or "", FACT_DATE).replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None


def days_left(until: datetime, now: datetime) -> float:
    return (until - now).total_seconds() / 86400


@contextmanager
def _pem_file(pem: str):
    """The PEM in a 0600 file of a 0700 directory (its path), both removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="ha-tls-") as directory:
        path = Path(directory) / "vip.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pem)
        yield path


# The fast path of local_check(), in this process: the PEM read by cryptography (paramiko's
# own dependency, so pyinfra's), no openssl process (two of them were ~40 ms of every run's
# preflight). It passes what OPENSSL_CHECKS pass: the first certificate and the first private
# key read (the key without a passphrase), the same public key, not expired (-checkend 0); and
# gives what local_check() and local_names() read (the dates, the IP addresses named). Any
# other outcome runs OPENSSL_CHECKS themselves, one by one, for the reason they give; each
# controller checks the file again with its own openssl before it is used.
@dataclass(frozen=True)
class Passed:
    not_before: datetime
    not_after: datetime
    addresses: tuple[str, ...]  # the certificate's subjectAltName IP addresses, in order


@lru_cache(maxsize=16)
def _passed_all(pem: str) -> Passed | None:
    """What the certificate says when the PEM passes every OPENSSL_CHECKS check, else None."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

    data = pem.encode()
    try:
        cert = x509.load_pem_x509_certificate(data)
        key = load_pem_private_key(data, password=None)
        mine, theirs = (k.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
                        for k in (cert.public_key(), key.public_key()))
    except (ValueError, TypeError, UnsupportedAlgorithm):  # unreadable, encrypted, a key type without a public half
        return None
    if mine != theirs or cert.not_valid_after_utc <= datetime.now(timezone.utc):
        return None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        addresses = tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        addresses = ()
    return Passed(cert.not_valid_before_utc, cert.not_valid_after_utc, addresses)


@lru_cache(maxsize=16)
def local_check(pem: str) -> tuple[str | None, datetime | None]:
    """(what is wrong with this PEM bundle, its certificate's notAfter) from this machine's
    openssl: the controllers' checks but haproxy -c. The PEM sits in a 0600 file of a 0700
    directory, removed at once. ("openssl not found", None) when there is none here."""
    if shutil.which("openssl") is None:
        return "openssl not found", None
    passed = _passed_all(pem)
    if passed is not None:
        return None, passed.not_after
    with _pem_file(pem) as path:
        quoted = shlex.quote(str(path))
        for command, reason in OPENSSL_CHECKS:
            run = subprocess.run(["sh", "-c", command.format(pem=quoted)], stdin=subprocess.DEVNULL,
                                 capture_output=True, timeout=30)
            if run.returncode != 0:
                return reason, None
        end = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(path)], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=30)
        return None, not_after(end.stdout)


def not_before(line: str) -> datetime | None:
    """The date of openssl's `notBefore=Nov 27 08:33:02 2026 GMT` (UTC), None if it is not one."""
    key, _, value = line.strip().partition("=")
    return not_after(f"notAfter={value}") if key == "notBefore" else None


def san_addresses(text: str) -> tuple[str, ...]:
    """The IP addresses of openssl's `X509v3 Subject Alternative Name:` block
    (`DNS:vip.example, IP Address:10.0.0.10`), in order. Pure."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if "Subject Alternative Name" in line and i + 1 < len(lines):
            for item in lines[i + 1].split(","):
                kind, _, value = item.strip().partition(":")
                if kind == "IP Address":
                    out.append(value.strip())
    return tuple(out)


@lru_cache(maxsize=16)
def local_names(pem: str) -> tuple[datetime | None, tuple[str, ...]]:
    """(the certificate's notBefore, the IP addresses it names) from this machine's openssl,
    the PEM in a 0600 file of a 0700 directory, removed at once; (None, ()) when openssl
    cannot say. Reads the certificate only (never prints the key)."""
    if shutil.which("openssl") is None:
        return None, ()
    passed = _passed_all(pem)  # read already by local_check(), its callers' first step
    if passed is not None:
        return passed.not_before, passed.addresses
    with _pem_file(pem) as path:
        run = subprocess.run(["openssl", "x509", "-noout", "-startdate", "-ext", "subjectAltName", "-in", str(path)],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    start = next((d for d in map(not_before, run.stdout.splitlines()) if d), None)
    return start, san_addresses(run.stdout)
