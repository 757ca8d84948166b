"""Test certificates, made by the tests themselves with the openssl CLI (none
is committed).

    ca = CertAuthority(tmp_path / "ca")
    server = ca.issue("server", server=True)            # .cert, .key
    alice = ca.issue("alice")                           # a client certificate
    old = ca.issue("bob", expired=True)                 # valid in 2020 only
    ca.revoke(alice); ca.write_crl(path)                # a CRL listing alice's serial
    other = ca.issue("m", server=True, san="DNS:m.test,IP:127.0.0.1")
    files = ClientFiles(ca.cert, alice.cert, alice.key) # for Server(client_tls=)

Keys are EC P-256 (fast to make). Server certificates carry 127.0.0.1 and
localhost as subject alternative names and both server and client usage
(members use theirs as TLS clients of each other too).
"""

import collections
import os
import subprocess

Issued = collections.namedtuple("Issued", "cert key")
ClientFiles = collections.namedtuple("ClientFiles", "ca cert key")
ClientFiles.__new__.__defaults__ = (None, None)

_CONFIG = """\
[ca]
default_ca = test_ca
[test_ca]
database = {dir}/index.txt
new_certs_dir = {dir}/issued
serial = {dir}/serial
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none
[any_name]
commonName = supplied
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = {san}
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
"""


def _run(*args):
    p = subprocess.run(["openssl"] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(map(str, args)), p.stderr))
    return p.stdout


class CertAuthority:
    def __init__(self, directory, name="cairn-test-ca", san="IP:127.0.0.1,DNS:localhost"):
        self.dir = str(directory)
        os.makedirs(os.path.join(self.dir, "issued"), exist_ok=True)
        with open(os.path.join(self.dir, "index.txt"), "w"):
            pass
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        self.config = os.path.join(self.dir, "ca.cnf")
        with open(self.config, "w") as f:
            f.write(_CONFIG.format(dir=self.dir, san=san))
        self.key = os.path.join(self.dir, "ca.key")
        self.cert = os.path.join(self.dir, "ca.crt")
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", self.key, "-out", self.cert, "-days", "3", "-subj", "/CN=" + name)

    def issue(self, cn, server=False, expired=False, file_name=None, san=None):
        base = os.path.join(self.dir, file_name or cn)
        key, csr, cert = base + ".key", base + ".csr", base + ".crt"
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
        dates = ["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"] if expired \
            else ["-days", "3"]
        ext = []
        if san:
            ext_file = base + ".ext"
            with open(ext_file, "w") as f:
                f.write("[own]\nbasicConstraints = critical,CA:FALSE\n"
                        "keyUsage = critical,digitalSignature,keyEncipherment\n"
                        "extendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = %s\n" % san)
            ext = ["-extfile", ext_file, "-extensions", "own"]
        else:
            ext = ["-extensions", "server" if server else "client"]
        _run("ca", "-batch", "-config", self.config, "-cert", self.cert, "-keyfile", self.key,
             "-in", csr, "-out", cert, "-notext", *ext, *dates)
        return Issued(cert, key)

    def revoke(self, issued):
        _run("ca", "-config", self.config, "-cert", self.cert, "-keyfile", self.key,
             "-revoke", issued.cert)

    def write_crl(self, path):
        """A CRL (PEM) of every certificate revoked so far, written to `path`
        by a rename, as an operator's tooling replaces one."""
        tmp = str(path) + ".tmp"
        _run("ca", "-gencrl", "-config", self.config, "-cert", self.cert, "-keyfile", self.key,
             "-crldays", "3", "-out", tmp)
        os.replace(tmp, str(path))
        return str(path)


def serial_of(cert_path):
    """The certificate's serial number as openssl prints it (hex)."""
    out = _run("x509", "-in", cert_path, "-noout", "-serial")
    return out.strip().split("=", 1)[1]
