"""Client TLS on https:// client URLs, with real clients: etcdctl
(--cacert/--cert/--key), python-etcd3 with certificates, curl over https for
/health, /metrics, /version and the JSON gateway. Who is let in with mutual
TLS is checked against a real etcd with the same certificates. Certificates
are made by the tests (tls_certs.py, openssl), never committed.
"""

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import warnings

import grpc
import pytest
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

import cluster
from tls_certs import CertAuthority, ClientFiles, serial_of


class Pki:
    def __init__(self, root):
        self.ca = CertAuthority(root / "ca")
        self.server = self.ca.issue("server", server=True)
        self.alice = self.ca.issue("alice")
        self.expired = self.ca.issue("old", expired=True)
        self.other_ca = CertAuthority(root / "other", name="other-ca")
        self.mallory = self.other_ca.issue("mallory")

    def server_flags(self, *more):
        return ["--cert-file", self.server.cert, "--key-file", self.server.key] + list(more)


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "10"] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=30)


def etcdctl(server, *args, tls=(), timeout="3s"):
    """etcdctl against `server` with exactly the TLS flags in `tls` (a
    refused handshake fails after `timeout`)."""
    cmd = [cluster.ETCDCTL_BIN, "--endpoints", server.endpoint, "--dial-timeout", timeout,
           "--command-timeout", timeout] + list(tls) + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=cluster.etcdctl_env())


def handshake(port, ca, cert=None, key=None, max_version=None, ciphers=None):
    """One TLS handshake with Python's ssl: (version, cipher, peer serial)."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    if max_version:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            der = s.getpeercert(binary_form=True)
            pem = ssl.DER_cert_to_PEM_cert(der)
            p = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem,
                               capture_output=True, text=True, timeout=10, check=True)
            return s.version(), s.cipher()[0], p.stdout.strip().split("=", 1)[1]


# ------------------------------------------------------------- who gets in

@pytest.mark.parametrize("kind", ["cairn", "etcd"])
def test_mutual_tls_admits_only_certificates_of_the_trusted_ca(server_factory, pki, kind):
    """--trusted-ca-file alone requires client certificates (etcd's rule).
    The same matrix runs against the real etcd: the expectations are etcd's."""
    s = server_factory(kind=kind, extra_args=pki.server_flags("--trusted-ca-file", pki.ca.cert),
                       client_tls=ClientFiles(pki.ca.cert, pki.alice.cert, pki.alice.key))
    clients = {
        "no certificate": [],
        "alice (trusted CA)": ["--cert", pki.alice.cert, "--key", pki.alice.key],
        "mallory (another CA)": ["--cert", pki.mallory.cert, "--key", pki.mallory.key],
        "expired": ["--cert", pki.expired.cert, "--key", pki.expired.key],
    }
    got = {}
    for who, flags in clients.items():
        p = etcdctl(s, "put", "/k", who, tls=["--cacert", pki.ca.cert] + flags)
        grpc_ok = p.returncode == 0 and p.stdout.strip() == "OK"
        cert_flags = ["--cert", flags[1], "--key", flags[3]] if flags else []
        h = curl("--cacert", pki.ca.cert, *cert_flags, "https://%s/health" % s.host_port)
        http_ok = h.returncode == 0 and '"health":"true"' in h.stdout
        got[who] = (grpc_ok, http_ok)
    assert got == {
        "no certificate": (False, False),
        "alice (trusted CA)": (True, True),
        "mallory (another CA)": (False, False),
        "expired": (False, False),
    }
    # And a client that does not trust the server's CA refuses the server.
    p = etcdctl(s, "get", "/k", tls=["--cacert", pki.other_ca.cert, "--cert", pki.alice.cert,
                                     "--key", pki.alice.key])
    assert p.returncode != 0
    assert s.kv.Range(rpc_pb2.RangeRequest(key=b"/k")).kvs[0].value == b"alice (trusted CA)"


def test_client_cert_auth_flag_requires_a_certificate_too(server_factory, pki):
    s = server_factory(extra_args=pki.server_flags("--client-cert-auth", "--trusted-ca-file", pki.ca.cert),
                       client_tls=ClientFiles(pki.ca.cert, pki.alice.cert, pki.alice.key))
    assert etcdctl(s, "get", "/x", tls=["--cacert", pki.ca.cert]).returncode != 0
    assert etcdctl(s, "put", "/x", "1", tls=s.tls_args()).stdout.strip() == "OK"


@pytest.mark.parametrize("kind", ["cairn", "etcd"])
def test_revoked_client_certificate_is_refused(server_factory, pki, tmp_path, kind):
    """--client-crl-file: read on every connection, so a certificate revoked
    after start-up is refused from its next connection on (etcd's checkCRL).
    The same steps against the real etcd."""
    bob = pki.ca.issue("bob")
    crl = pki.ca.write_crl(tmp_path / "clients.crl")  # nothing revoked yet
    s = server_factory(kind=kind, extra_args=pki.server_flags("--trusted-ca-file", pki.ca.cert,
                                                              "--client-crl-file", crl),
                       client_tls=ClientFiles(pki.ca.cert, pki.alice.cert, pki.alice.key))
    as_bob = ["--cacert", pki.ca.cert, "--cert", bob.cert, "--key", bob.key]
    assert etcdctl(s, "put", "/crl", "bob", tls=as_bob).stdout.strip() == "OK"
    pki.ca.revoke(bob)
    pki.ca.write_crl(crl)
    assert etcdctl(s, "put", "/crl", "bob again", tls=as_bob).returncode != 0
    h = curl("--cacert", pki.ca.cert, "--cert", bob.cert, "--key", bob.key, "https://%s/health" % s.host_port)
    assert h.returncode != 0
    # Others are not affected.
    assert etcdctl(s, "put", "/crl", "alice", tls=s.tls_args()).stdout.strip() == "OK"
    assert s.kv.Range(rpc_pb2.RangeRequest(key=b"/crl")).kvs[0].value == b"alice"
    if kind == "cairn":
        assert "transport: certificate serial %s revoked" % serial_of(bob.cert).lower() in s.log_tail(200000)


@pytest.mark.parametrize("kind", ["cairn", "etcd"])
def test_client_cert_allowed_hostname(server_factory, pki, kind):
    """--client-cert-allowed-hostname: a client certificate must name that
    host in its SANs (its CN does not count)."""
    svc = pki.ca.issue("svc", san="DNS:svc.cairn.test")
    cn_only = pki.ca.issue("svc.cairn.test", san="DNS:elsewhere.test")
    s = server_factory(kind=kind, extra_args=pki.server_flags("--trusted-ca-file", pki.ca.cert,
                                                              "--client-cert-allowed-hostname",
                                                              "svc.cairn.test"),
                       client_tls=ClientFiles(pki.ca.cert, svc.cert, svc.key))
    ok = etcdctl(s, "put", "/h", "1", tls=["--cacert", pki.ca.cert, "--cert", svc.cert, "--key", svc.key])
    assert ok.stdout.strip() == "OK", ok.stderr
    for who in (cn_only, pki.alice):
        p = etcdctl(s, "put", "/h", "2", tls=["--cacert", pki.ca.cert, "--cert", who.cert, "--key", who.key])
        assert p.returncode != 0


# ----------------------------------------------------------- every client

def test_https_client_url_serves_grpc_http_and_the_gateway(server_factory, pki, tmp_path):
    metrics_port = cluster.free_port()
    s = server_factory(extra_args=pki.server_flags(
        "--listen-metrics-urls", "https://127.0.0.1:%d" % metrics_port),
        client_tls=ClientFiles(pki.ca.cert))

    # etcdctl: put, get, txn, a watch that sees a later put.
    assert s.etcdctl("put", "/cfg/a", "1").stdout.strip() == "OK"
    assert s.etcdctl("get", "/cfg/a", "--print-value-only").stdout.strip() == "1"
    watch = s.etcdctl_popen("watch", "/cfg/a")
    try:
        deadline = time.monotonic() + 10
        time.sleep(0.5)
        assert s.etcdctl("put", "/cfg/a", "2").returncode == 0
        lines = []
        while time.monotonic() < deadline and len(lines) < 3:
            line = watch.stdout.readline()
            if line:
                lines.append(line.decode().strip())
        assert lines == ["PUT", "/cfg/a", "2"]
    finally:
        watch.kill()
        watch.communicate(timeout=10)
    status = s.etcdctl("endpoint", "status", "-w", "json")
    assert status.returncode == 0 and json.loads(status.stdout)[0]["Endpoint"] == s.endpoint

    # python-etcd3 with the CA.
    c = s.client()
    try:
        c.put("/cfg/b", "from python")
        assert c.get("/cfg/b")[0] == b"from python"
    finally:
        c.close()

    # curl: the HTTP endpoints and the JSON gateway on the same TLS port.
    base = "https://%s" % s.host_port
    assert curl("--cacert", pki.ca.cert, base + "/health").stdout == '{"health":"true","reason":""}'
    version = curl("--cacert", pki.ca.cert, base + "/version")
    assert json.loads(version.stdout)["etcdserver"].startswith("3.5")
    assert "etcd_server_has_leader 1" in curl("--cacert", pki.ca.cert, base + "/metrics").stdout
    put = curl("--cacert", pki.ca.cert, base + "/v3/kv/put", "-d",
               json.dumps({"key": base64.b64encode(b"/cfg/c").decode(),
                           "value": base64.b64encode(b"via gateway").decode()}))
    assert '"revision"' in put.stdout, put
    got = json.loads(curl("--cacert", pki.ca.cert, base + "/v3/kv/range", "-d",
                          json.dumps({"key": base64.b64encode(b"/cfg/c").decode()})).stdout)
    assert base64.b64decode(got["kvs"][0]["value"]) == b"via gateway"
    # HTTP/1.1 and HTTP/2 both negotiate (ALPN): curl's default offers both.
    assert curl("--http1.1", "--cacert", pki.ca.cert, base + "/health").returncode == 0
    # The https metrics URL.
    m = curl("--cacert", pki.ca.cert, "https://127.0.0.1:%d/metrics" % metrics_port)
    assert "etcd_server_has_leader 1" in m.stdout

    # Plaintext on the TLS port: Go's answer for HTTP, nothing for gRPC.
    plain = subprocess.run(["curl", "-s", "--max-time", "10", "http://%s/health" % s.host_port],
                           capture_output=True, text=True, timeout=30)
    assert plain.stdout == "Client sent an HTTP request to an HTTPS server.\n"
    with grpc.insecure_channel(s.host_port) as ch:
        with pytest.raises(grpc.RpcError) as e:
            rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"/cfg/a"), timeout=3)
        assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert s.alive()
    assert "TLS handshake failed" not in s.log_tail(100000)


# ------------------------------------------------------- versions, ciphers

def test_tls_versions_and_cipher_suites(server_factory, pki):
    s = server_factory(extra_args=pki.server_flags(), client_tls=ClientFiles(pki.ca.cert))
    version, _, _ = handshake(s.client_port, pki.ca.cert)
    assert version == "TLSv1.3"
    assert handshake(s.client_port, pki.ca.cert, max_version=ssl.TLSVersion.TLSv1_2)[0] == "TLSv1.2"
    with pytest.raises(ssl.SSLError):  # below etcd's TLS 1.2 minimum
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(pki.ca.cert)
        with warnings.catch_warnings():  # deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1
        with socket.create_connection(("127.0.0.1", s.client_port), timeout=10) as raw:
            old.wrap_socket(raw, server_hostname="127.0.0.1")
    s.stop()

    s2 = server_factory(extra_args=pki.server_flags(
        "--tls-max-version", "TLS1.2", "--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
        client_tls=ClientFiles(pki.ca.cert))
    version, cipher, _ = handshake(s2.client_port, pki.ca.cert)
    assert (version, cipher) == ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")
    with pytest.raises(ssl.SSLError):
        handshake(s2.client_port, pki.ca.cert, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    assert s2.etcdctl("put", "/v", "1").stdout.strip() == "OK"  # Go's client agrees on it
    s2.stop()

    s3 = server_factory(extra_args=pki.server_flags("--tls-min-version", "TLS1.3"),
                        client_tls=ClientFiles(pki.ca.cert))
    with pytest.raises(ssl.SSLError):
        handshake(s3.client_port, pki.ca.cert, max_version=ssl.TLSVersion.TLSv1_2)
    assert handshake(s3.client_port, pki.ca.cert)[0] == "TLSv1.3"


# ------------------------------------------------------------- rotation

def test_rotated_certificate_is_served_without_a_restart(server_factory, pki, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    cert, key = str(live / "server.crt"), str(live / "server.key")
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    s = server_factory(extra_args=["--cert-file", cert, "--key-file", key, "--log-level", "info"],
                       client_tls=ClientFiles(pki.ca.cert))
    first = serial_of(pki.server.cert)
    assert handshake(s.client_port, pki.ca.cert)[2] == first
    c = s.client()  # a connection made before the rotation
    try:
        c.put("/r", "before")
        rotated = pki.ca.issue("server", server=True, file_name="server2")
        # Written one file after the other, as a rotation tool would: a
        # handshake in between keeps the old pair rather than failing.
        shutil.copy(rotated.cert, cert)
        assert handshake(s.client_port, pki.ca.cert)[2] == first
        shutil.copy(rotated.key, key)
        assert handshake(s.client_port, pki.ca.cert)[2] == serial_of(rotated.cert)
        assert s.etcdctl("get", "/r", "--print-value-only").stdout.strip() == "before"
        c.put("/r", "after")  # the old connection still works
        assert c.get("/r")[0] == b"after"
    finally:
        c.close()
    log = s.log_tail(100000)
    assert "still serving the previous one" in log
    assert "loaded the changed certificate" in log


# ---------------------------------------------------------------- auto TLS

def test_auto_tls_generates_a_certificate_once(server_factory):
    s = server_factory(extra_args=["--auto-tls"], start=False)
    s.client_tls = ClientFiles(ca=None)  # set below, once the certificate exists
    s.launch()
    fixture = os.path.join(s.data_dir, "fixtures", "client")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not os.path.exists(os.path.join(fixture, "cert.pem")):
        time.sleep(0.05)
    cert = os.path.join(fixture, "cert.pem")
    s.client_tls = ClientFiles(ca=cert)  # self-signed: it is its own CA
    s.wait_ready()
    text = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-subject", "-ext", "subjectAltName"],
                          capture_output=True, text=True, timeout=10, check=True).stdout
    assert "O = etcd" in text and "IP Address:127.0.0.1" in text
    assert oct(os.stat(os.path.join(fixture, "key.pem")).st_mode & 0o777) == "0o600"
    p = etcdctl(s, "put", "/auto", "1", tls=["--insecure-transport=false", "--insecure-skip-tls-verify"])
    assert p.stdout.strip() == "OK", p.stderr
    assert curl("-k", "https://%s/health" % s.host_port).returncode == 0
    serial = serial_of(cert)
    s.restart()
    assert serial_of(cert) == serial  # kept across restarts, as etcd keeps it


# ---------------------------------------------------------- start-up errors

def start_error(server_factory, args, kind="cairn"):
    s = server_factory(kind=kind, extra_args=args, start=False)
    url = "https://127.0.0.1:%d" % s.client_port
    cmd = s.command()
    cmd = [url if a == s.endpoint else a for a in cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=s.base_dir)
    assert p.returncode != 0
    return url, p.stdout + p.stderr


def test_start_up_errors_are_etcds(server_factory, pki):
    url, out = start_error(server_factory, [])
    msg = "TLS key/cert (--cert-file, --key-file) must be provided for client url %s with HTTPS scheme"
    assert msg % url in out
    url, out = start_error(server_factory, [], kind="etcd")
    assert msg % url in out  # the real etcd says the same
    cases = [
        (["--tls-min-version", "TLS1.1"], 'unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)'),
        (["--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"],
         "min version (TLS1.3) is greater than max version (TLS1.2)"),
        (["--tls-min-version", "TLS1.3", "--cipher-suites", "TLS_RSA_WITH_AES_128_GCM_SHA256"],
         "cipher suites cannot be configured when only TLS1.3 is enabled"),
        (["--cipher-suites", "TLS_NOPE"], 'unexpected TLS cipher suite "TLS_NOPE"'),
        (["--key-file", pki.server.key], "KeyFile and CertFile must both be present"),
        (["--cert-file", pki.server.cert, "--key-file", pki.alice.key], "private key does not match public key"),
        (["--cert-file", "/nonexistent.crt", "--key-file", pki.server.key], "/nonexistent.crt"),
    ]
    for args, want in cases:
        _, out = start_error(server_factory, args)
        assert want in out, (args, out)
