"""The OpenFlow channel over TLS: a run's own certificates, and Open vSwitch told to use them.

With ``controller: {tls: true}`` in a scenario the switches reach the controller at
``ssl:127.0.0.1:PORT`` instead of ``tcp:``, and both ends prove who they are: a CA made
for this run alone signs one certificate for the controller and one for the switches
(ECDSA P-256, valid for a day), the controller (os-ken: ``--ctl-privkey``, ``--ctl-cert``,
``--ca-certs``) requires the switches' certificate, and Open vSwitch (``ovs-vsctl set-ssl``)
checks the controller's against the same CA.  The files live in ``<run>/net/tls/`` (keys
0600); the CA's key is not kept.  Open vSwitch's SSL settings are global to the database,
so a network that set them removes them when it stops (one network per machine holds).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID = datetime.timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    """Where a run's certificates and keys are (PEM)."""

    ca_cert: Path
    controller_key: Path
    controller_cert: Path
    switch_key: Path
    switch_cert: Path

    @classmethod
    def at(cls, directory: Path) -> TlsFiles:
        """The files' places in ``directory``."""
        d = Path(directory)
        return cls(d / "ca-cert.pem", d / "controller-key.pem", d / "controller-cert.pem",
                   d / "switch-key.pem", d / "switch-cert.pem")

    def controller_args(self, port: int) -> list[str]:
        """os-ken's options to listen for TLS on ``port``, switches' certificates required."""
        return ["--ofp-ssl-listen-port", str(port), "--ctl-privkey", str(self.controller_key),
                "--ctl-cert", str(self.controller_cert), "--ca-certs", str(self.ca_cert)]


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshcast-testbed"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _certificate(subject: x509.Name, public_key, issuer: x509.Name, issuer_key,
                 ca: bool, now: datetime.datetime) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + VALID)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> TlsFiles:
    """A fresh CA, and a controller and a switch certificate it signed, in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("meshcast run CA")
    ca_cert = _certificate(ca_name, ca_key.public_key(), ca_name, ca_key, True, now)
    files = TlsFiles.at(directory)
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for common, key_path, cert_path in (("controller", files.controller_key,
                                         files.controller_cert),
                                        ("switches", files.switch_key, files.switch_cert)):
        key = ec.generate_private_key(ec.SECP256R1())
        _write_key(key_path, key)
        cert = _certificate(_name(common), key.public_key(), ca_name, ca_key, False, now)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def ovs_set_ssl(files: TlsFiles) -> None:
    """Open vSwitch's key, certificate and CA for ``ssl:`` controller connections."""
    subprocess.run(["ovs-vsctl", "set-ssl", str(files.switch_key), str(files.switch_cert),
                    str(files.ca_cert)], check=True, capture_output=True, timeout=30)


def ovs_del_ssl() -> None:
    """Remove Open vSwitch's SSL settings (those :func:`ovs_set_ssl` made)."""
    subprocess.run(["ovs-vsctl", "del-ssl"], check=False, capture_output=True, timeout=30)
