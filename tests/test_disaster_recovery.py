"""Disaster recovery, docs/operations.md "Restore a cluster from a snapshot":
a 3-member cluster takes writes, `etcdctl snapshot save` backs it up, two
members' data dirs are destroyed (the cluster has lost its quorum), and every
member is restored from that one file with `snapshot restore --name
--initial-cluster --initial-cluster-token --initial-advertise-peer-urls
--data-dir` (cairnctl for cairn, etcdctl for etcd), then started.  The new
cluster serves every write from before the snapshot, at its revisions, with
its lease; nothing after it; a fresh cluster id; member ids computed from the
flags as etcd computes them.  Run on cairn and on a real etcd, the same
steps give the same answers."""

import hashlib
import os
import shutil
import subprocess
import time

import pytest
from etcd3.etcdrpc import rpc_pb2 as pb

import cluster
from test_cairnctl import cairnctl_binary

# Every test runs its steps on a real etcd cluster and on cairn and compares.
pytestmark = pytest.mark.skipif(cluster.TARGET != "cairn", reason="compares cairn with etcd")

ALL = dict(key=b"\0", range_end=b"\0")
TOKEN = "restored-cluster"


def _run(cmd, timeout=120):
    p = subprocess.run([str(a) for a in cmd], env=cluster.etcdctl_env(), capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, "%s failed (%d):\n%s\n%s" % (" ".join(map(str, cmd)), p.returncode,
                                                          p.stdout, p.stderr)
    return p.stdout + p.stderr


def _member_id(peer_url, token):
    """etcd's computeMemberId for one peer URL and the cluster token."""
    return int.from_bytes(hashlib.sha1((peer_url + token).encode()).digest()[:8], "big")


def _kvs(resp):
    return [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease != 0)
            for kv in resp.kvs]


def _retry(fn, timeout=30):
    """fn() until it does not raise (a restored cluster elects its leader
    first); bounded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _disaster(kind, base_dir):
    c = cluster.ReplicatedCluster(kind, base_dir, size=3)
    c.start()
    try:
        m1, m2, m3 = c.members
        old_cluster = m1.maint.Status(pb.StatusRequest(), timeout=10).header.cluster_id
        lease = m1.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=3600), timeout=10).ID
        for i in range(30):
            c.members[i % 3].kv.Put(pb.PutRequest(key=b"/cfg/k%02d" % i, value=b"v%d" % i), timeout=10)
        for i in range(0, 30, 3):  # history: overwritten keys
            m2.kv.Put(pb.PutRequest(key=b"/cfg/k%02d" % i, value=b"w%d" % i), timeout=10)
        m3.kv.DeleteRange(pb.DeleteRangeRequest(key=b"/cfg/k29"), timeout=10)
        m1.kv.Put(pb.PutRequest(key=b"/cfg/leased", value=b"x", lease=lease), timeout=10)
        before = m1.kv.Range(pb.RangeRequest(**ALL), timeout=10)
        early = m1.kv.Range(pb.RangeRequest(key=b"/cfg/k00", revision=5), timeout=10)

        # The nightly backup, from one member.
        snap = os.path.join(str(base_dir), "backup.db")
        _run([cluster.ETCDCTL_BIN, "--endpoints", m2.host_port, "snapshot", "save", snap])
        m1.kv.Put(pb.PutRequest(key=b"/cfg/after-backup", value=b"lost"), timeout=10)

        # Two disks are lost, then the survivor is stopped too.
        for m in (m2, m3):
            m.kill9()
            shutil.rmtree(m.data_dir)
        m1.kill9()

        # Every member restored from the same file into a new data dir.
        initial = m1.initial_cluster
        tool = cairnctl_binary() if kind == "cairn" else cluster.ETCDCTL_BIN
        for m in c.members:
            shutil.rmtree(m.data_dir, ignore_errors=True)
            _run([tool, "snapshot", "restore", snap, "--name", m.name, "--initial-cluster", initial,
                  "--initial-cluster-token", TOKEN,
                  "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % m.peer_port,
                  "--data-dir", m.data_dir])
            m.cluster_token = TOKEN
        c.start()

        out = {}
        after = _retry(lambda: m3.kv.Range(pb.RangeRequest(**ALL), timeout=5))
        out["every key"] = _kvs(after) == _kvs(before)
        out["revision"] = after.header.revision == before.header.revision
        out["history"] = _kvs(m2.kv.Range(pb.RangeRequest(key=b"/cfg/k00", revision=5),
                                          timeout=10)) == _kvs(early)
        out["after the backup"] = len(m1.kv.Range(pb.RangeRequest(key=b"/cfg/after-backup"),
                                                  timeout=10).kvs)
        ttl = m2.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lease, keys=True), timeout=10)
        out["lease"] = (ttl.TTL > 3000, list(ttl.keys))
        st = [m.maint.Status(pb.StatusRequest(), timeout=10) for m in c.members]
        out["new cluster id"] = len({s.header.cluster_id for s in st}) == 1 and \
            st[0].header.cluster_id != old_cluster
        listed = m1.cluster.MemberList(pb.MemberListRequest(), timeout=10).members
        out["members"] = sorted((m.name, [u.rsplit(":", 1)[0] for u in m.peerURLs],
                                 m.ID == _member_id(m.peerURLs[0], TOKEN)) for m in listed)
        # The restored cluster takes writes, and its members agree.
        put = _retry(lambda: m3.kv.Put(pb.PutRequest(key=b"/cfg/new", value=b"1"), timeout=5))
        hashes = []
        for m in c.members:
            _retry(lambda: m.kv.Range(pb.RangeRequest(key=b"/cfg/new"), timeout=5))
            hashes.append(m.maint.HashKV(pb.HashKVRequest(revision=put.header.revision),
                                         timeout=10).hash)
        out["write after restore"] = put.header.revision == before.header.revision + 1
        out["members agree"] = len(set(hashes)) == 1
        return out
    finally:
        c.cleanup()


def test_cluster_restored_from_a_snapshot(tmp_path):
    want = _disaster("etcd", tmp_path / "etcd")
    assert want["every key"] and want["new cluster id"] and want["members agree"], want
    assert _disaster("cairn", tmp_path / "cairn") == want
