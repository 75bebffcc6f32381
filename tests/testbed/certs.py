"""Test certificates: a CA, a server certificate for localhost, client certificates by name;
and a mutual-TLS (or server-only TLS) gRPC channel with them."""
from __future__ import annotations

import datetime
import os

import grpc


def certs(d: str, clients=("client",)) -> dict[str, str]:
    """Files in `d`: {"ca": …, "server": …, "server_key": …, <client>: …, <client>_key: …}.
    The server certificate is for localhost; each client's common name is its name."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731

    def make(cn, key, ca=False, san=None):
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name("test-ca"))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), False)
        return b.sign(ca_key, hashes.SHA256())

    def write(fname, data):
        p = os.path.join(d, fname)
        with open(p, "wb") as f:
            f.write(data)
        return p
    pem = serialization.Encoding.PEM
    out = {"ca": write("ca.pem", make("test-ca", ca_key, ca=True).public_bytes(pem))}
    for who in ("server", *clients):
        k = ec.generate_private_key(ec.SECP256R1())
        cn, san = ("localhost", "localhost") if who == "server" else (who, None)
        out[who] = write(f"{who}.pem", make(cn, k, san=san).public_bytes(pem))
        out[who + "_key"] = write(f"{who}.key", k.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return out


def tls_channel(port: int, c: dict, who: str | None = None) -> grpc.Channel:
    """A channel to localhost:port trusting c's CA, with `who`'s client certificate (none:
    server-only TLS)."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(c["ca"], "rb").read(),
        private_key=open(c[who + "_key"], "rb").read() if who else None,
        certificate_chain=open(c[who], "rb").read() if who else None)
    return grpc.secure_channel(f"localhost:{port}", creds)
