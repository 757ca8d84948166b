"""A 3-member cluster with peer TLS and client mutual TLS: the fault tests'
workload and checker (nemesis.py) over https client and peer URLs, and the
peers a member must refuse (a certificate of another CA, a CN outside
--peer-cert-allowed-cn). Runs against cairn, and against a real etcd with
CAIRN_TEST_TARGET=etcd.
"""

import collections
import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest
from etcd3.etcdrpc import rpc_pb2

import cluster
import nemesis
from cluster_harness import Cluster
from tls_certs import CertAuthority, serial_of

TARGET = cluster.TARGET
DURATION = float(os.environ.get("CAIRN_FAULT_DURATION", "15"))

Pki = collections.namedtuple("Pki", "ca server client")


def make_pki(root, ca_name="cluster-ca", member_cn="member"):
    ca = CertAuthority(root, name=ca_name)
    return Pki(ca, ca.issue(member_cn, server=True), ca.issue("workload"))


@pytest.mark.parametrize("name,seed", [("kill_leader", 2101), ("blackhole", 2404)])
def test_tls_cluster_under_faults(tmp_path, name, seed):
    seed = int(os.environ.get("CAIRN_FAULT_SEED", seed))
    r = nemesis.run_seed(TARGET, seed, [name], tmp_path, duration=DURATION,
                         tls=make_pki(tmp_path / "pki"))
    assert not r.errors, "%s\nreplay: CAIRN_FAULT_SEED=%d /usr/bin/python3 -m pytest -q " \
        "tests/test_cluster_tls.py -k %s" % (r.report(), seed, name)


def wait_for_log(member, text, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in member.log_tail(200000):
            return True
        time.sleep(0.2)
    return False


def start_refused(tmp_path, good, pki_for_member3, extra_for_all=()):
    """Members 1 and 2 use `good`; member 3 gets the peer certificate of
    `pki_for_member3`. Members 1 and 2 elect a leader; member 3 never
    becomes part of it."""
    c = Cluster(TARGET, tmp_path / "c", size=3, tls=good, extra_args=list(extra_for_all))
    bad = c.members[2]
    # Member 3's own server/peer certificate (it still trusts the good CA for
    # its clients, so the harness can ask it for its status).
    bad_flags = ["--peer-cert-file", pki_for_member3.server.cert,
                 "--peer-key-file", pki_for_member3.server.key]
    orig = bad.command

    def command():
        return orig() + bad_flags
    bad.command = command
    try:
        for m in c.members:
            m.spawn()
        c.wait_leader(timeout=30)
        assert c.members[0].kv.Put(rpc_pb2.PutRequest(key=b"/tls", value=b"ok"), timeout=10)
        time.sleep(2)  # several election timeouts: time enough to join, were it let in
        try:
            joined = bad.status(timeout=2).leader != 0
        except Exception:
            joined = False  # no answer at all: certainly not serving with a leader
        assert not joined, "a member with a refused certificate joined the cluster"
        return c
    except BaseException:
        c.stop()
        raise


def test_a_member_with_a_certificate_of_another_ca_is_refused(tmp_path):
    other = make_pki(tmp_path / "other", ca_name="other-ca")
    c = start_refused(tmp_path, make_pki(tmp_path / "pki"), other)
    c.stop()


def test_peer_cert_allowed_cn_refuses_other_names(tmp_path):
    good = make_pki(tmp_path / "pki")
    # The same CA, but a certificate for another name.
    intruder = good.ca.issue("intruder", server=True)
    c = start_refused(tmp_path, good, Pki(good.ca, intruder, good.client),
                      extra_for_all=["--peer-cert-allowed-cn", "member"])
    try:
        if TARGET == "cairn":
            text = 'certificate CN \\"intruder\\" is not in --peer-cert-allowed-cn'  # as JSON logs it
            assert wait_for_log(c.members[0], text) or wait_for_log(c.members[1], text)
    finally:
        c.stop()


def test_peer_crl_file_refuses_a_revoked_member(tmp_path):
    if TARGET == "etcd":
        pytest.skip("etcd checks --peer-crl-file only when accepting: its members still dial the "
                    "revoked one and send it the log (cairn checks both ways)")
    good = make_pki(tmp_path / "pki")
    # Member 3's certificate is of the right CA and name, but revoked.
    revoked = good.ca.issue("member", server=True, file_name="revoked")
    good.ca.revoke(revoked)
    crl = good.ca.write_crl(tmp_path / "peers.crl")
    c = start_refused(tmp_path, good, Pki(good.ca, revoked, good.client),
                      extra_for_all=["--peer-crl-file", crl])
    try:
        if TARGET == "cairn":
            text = "certificate serial %s revoked" % serial_of(revoked.cert).lower()
            assert wait_for_log(c.members[0], text) or wait_for_log(c.members[1], text)
    finally:
        c.stop()


def test_peer_cert_allowed_hostname_refuses_other_names(tmp_path):
    good = make_pki(tmp_path / "pki")
    named = good.ca.issue("m", san="DNS:peers.cairn.test,IP:127.0.0.1", file_name="named")
    other = good.ca.issue("m", san="DNS:elsewhere.test,IP:127.0.0.1", file_name="other")
    c = start_refused(tmp_path, Pki(good.ca, named, good.client), Pki(good.ca, other, good.client),
                      extra_for_all=["--peer-cert-allowed-hostname", "peers.cairn.test"])
    c.stop()


def peer_serial(port, pki):
    """The serial of the certificate a member's peer port presents."""
    ctx = ssl.create_default_context(cafile=pki.ca.cert)
    ctx.load_cert_chain(pki.client.cert, pki.client.key)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            pem = ssl.DER_cert_to_PEM_cert(s.getpeercert(binary_form=True))
    p = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem, capture_output=True,
                       text=True, timeout=10, check=True)
    return p.stdout.strip().split("=", 1)[1]


def test_rotated_peer_certificate_is_used_without_a_restart(tmp_path):
    """The members' peer certificate files replaced on disk: new peer
    handshakes present the new certificate within seconds, and the cluster
    goes on (a member restarted after the rotation rejoins with it)."""
    good = make_pki(tmp_path / "pki")
    c = Cluster(TARGET, tmp_path / "c", size=3, tls=good)
    try:
        c.start()
        c.wait_leader(timeout=30)
        port = c.members[0].peer_port
        old = peer_serial(port, good)
        assert old == serial_of(good.server.cert)
        new = good.ca.issue("member", server=True, file_name="rotated")
        for src, dst in ((new.key, good.server.key), (new.cert, good.server.cert)):
            shutil.copy(src, dst + ".tmp")
            os.replace(dst + ".tmp", dst)
        deadline = time.monotonic() + 30
        got = old
        while got == old and time.monotonic() < deadline:
            time.sleep(0.5)
            got = peer_serial(port, good)
        assert got == serial_of(new.cert), "the old peer certificate is still served"
        c.restart(c.members[2])
        c.wait_leader(timeout=30)
        assert c.members[0].kv.Put(rpc_pb2.PutRequest(key=b"/rotated", value=b"1"), timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = c.members[2].kv.Range(rpc_pb2.RangeRequest(key=b"/rotated", serializable=True), timeout=5)
            if r.kvs:
                break
            time.sleep(0.2)
        assert r.kvs and r.kvs[0].value == b"1"
    finally:
        c.stop()
