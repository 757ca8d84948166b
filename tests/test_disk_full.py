"""A full disk: writes are refused with NOSPACE before the file system runs
out, the alarm is raised, reads and deletes go on, nothing is corrupted and
every acknowledged write survives a kill -9 and restart.

Needs a small file system: mounts a tmpfs (root only); skipped otherwise.
"""

import os
import subprocess

import grpc
import pytest

import cluster
from etcd3.etcdrpc import rpc_pb2 as pb

SIZE_MB = 400  # the reserve is 128 MiB here: a quarter, at least 128 MiB


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % SIZE_MB, "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % p.stderr.strip())
    yield mnt
    for p in list(cluster._CHILDREN):
        cluster.stop_child(p)
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_raises_nospace(small_fs):
    if cluster.TARGET != "cairn":
        pytest.skip("etcd has no disk reserve; it fails its own way on a full disk")
    s = cluster.Server("cairn", small_fs / "member",
                       extra_args=["--quota-backend-bytes", str(8 << 30)])
    try:
        s.start()
        value = os.urandom(100 * 1024)
        acked = []
        err = None
        for i in range(2000):
            key = b"/fill/%05d" % i
            try:
                s.kv.Put(pb.PutRequest(key=key, value=value), timeout=30)
                acked.append(key)
            except grpc.RpcError as e:
                err = e
                break
        assert err is not None, "the disk never filled"
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.details() == "etcdserver: mvcc: database space exceeded"
        assert len(acked) > 10

        alarms = s.maint.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET), timeout=30)
        assert [a.alarm for a in alarms.alarms] == [pb.NOSPACE]
        # Reads and deletes still work.
        r = s.kv.Range(pb.RangeRequest(key=b"/fill/", range_end=b"/fill0", count_only=True),
                       timeout=30)
        assert r.count == len(acked)
        d = s.kv.DeleteRange(pb.DeleteRangeRequest(key=acked[-1]), timeout=30)
        assert d.deleted == 1
        acked.pop()

        s.kill9()
        s.start()
        r = s.kv.Range(pb.RangeRequest(key=b"/fill/", range_end=b"/fill0", keys_only=True),
                       timeout=30)
        assert [kv.key for kv in r.kvs] == acked
    finally:
        s.cleanup()
