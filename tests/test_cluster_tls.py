"""A 3-member cluster with peer TLS and client mutual TLS: the fault tests'
workload and checker (nemesis.py) over https client and peer URLs, and the
peers a member must refuse (a certificate of another CA, a CN outside
--peer-cert-allowed-cn). Runs against cairn, and against a real etcd with
CAIRN_TEST_TARGET=etcd.
"""

import collections
import os
import time

import pytest
from etcd3.etcdrpc import rpc_pb2

import cluster
import nemesis
from cluster_harness import Cluster
from tls_certs import CertAuthority

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
