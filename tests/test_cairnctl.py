"""cairnctl, the offline admin tool, with snapshots taken by the real etcdctl.

A running cairn gets keys with history, a lease and a compaction; the real
`etcdctl snapshot save` (3.4, Debian) fetches a snapshot; `cairnctl snapshot
status` verifies it; `cairnctl snapshot restore` makes a new data dir; a
second cairn started on it must serve every key with its revisions, the
history above the compaction, the lease and the same current revision and
HashKV.  A damaged file is refused with a clear message.

cairnctl is `$CAIRN_BUILD/cmd/cairnctl`; the suite is skipped against etcd.
"""

import json
import os
import subprocess

import pytest
from etcd3.etcdrpc import rpc_pb2 as pb

import cluster

pytestmark = pytest.mark.skipif(cluster.TARGET != "cairn",
                                reason="cairnctl handles cairn snapshots only")

ALL = dict(key=b"\0", range_end=b"\0")


def cairnctl_binary():
    build = os.environ.get("CAIRN_BUILD", "")
    path = os.path.join(os.path.abspath(build), "cmd", "cairnctl") if build else ""
    if not path or not os.path.exists(path):
        pytest.fail("cairnctl not found (CAIRN_BUILD=%r); build the cairnctl target" % build)
    return path


def cairnctl(*args, cwd=None):
    return subprocess.run([cairnctl_binary()] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def ok(*args, cwd=None):
    p = cairnctl(*args, cwd=cwd)
    assert p.returncode == 0, "cairnctl %s failed (%d):\nstdout: %s\nstderr: %s" % (
        " ".join(map(str, args)), p.returncode, p.stdout, p.stderr)
    return p.stdout


def kv_tuples(resp):
    return [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
            for kv in resp.kvs]


def hashkv(srv, rev=0):
    r = srv.maint.HashKV(pb.HashKVRequest(revision=rev), timeout=10)
    return r.hash, r.compact_revision


def fill(srv):
    """History with overwrites, deletes, binary keys, a txn, a lease and a
    compaction.  Returns (lease id, compacted revision)."""
    srv.etcdctl("put", "/cfg/a", "1", check=True)            # 2
    srv.etcdctl("put", "/cfg/b", "x", check=True)            # 3
    srv.etcdctl("put", "/cfg/a", "2", check=True)            # 4
    srv.etcdctl("del", "/cfg/b", check=True)                 # 5
    srv.etcdctl("put", "/cfg/c", "hello world", check=True)  # 6
    kv = srv.kv
    kv.Put(pb.PutRequest(key=b"\x00bin\xff", value=b"\x00\x01\xfe"), timeout=10)  # 7
    kv.Txn(pb.TxnRequest(success=[
        pb.RequestOp(request_put=pb.PutRequest(key=b"/t/1", value=b"one")),
        pb.RequestOp(request_put=pb.PutRequest(key=b"/t/2", value=b"two")),
    ]), timeout=10)                                            # 8
    lease = srv.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=600), timeout=10).ID
    kv.Put(pb.PutRequest(key=b"/leased", value=b"v", lease=lease), timeout=10)    # 9
    srv.etcdctl("compact", "4", check=True)
    srv.etcdctl("put", "/cfg/a", "3", check=True)            # 10
    big = b"z" * (300 << 10)
    kv.Put(pb.PutRequest(key=b"/big", value=big), timeout=10)  # 11
    return lease, 4


def save_snapshot(srv, path):
    p = srv.etcdctl("snapshot", "save", path, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "Snapshot saved at %s" % path
    return path


def test_version():
    out = ok("version")
    lines = out.splitlines()
    assert lines[0].startswith("cairnctl version: ")
    assert lines[1] == "API version: 3.5"
    assert ok("--version").startswith("cairnctl version: ")


def test_snapshot_save_status_restore_serves_everything(cairn, server_factory, tmp_path):
    lease, compacted = fill(cairn)
    rev = cairn.revision()
    assert rev == 11
    before = cairn.kv.Range(pb.RangeRequest(**ALL), timeout=10)
    before_at_6 = cairn.kv.Range(pb.RangeRequest(revision=6, **ALL), timeout=10)
    history = [cairn.kv.Range(pb.RangeRequest(key=b"/cfg/a", revision=r), timeout=10)
               for r in range(compacted, rev + 1)]
    hash_before, compact_before = hashkv(cairn)
    assert compact_before == compacted
    snap = save_snapshot(cairn, str(tmp_path / "snap.db"))
    size = os.path.getsize(snap)
    assert size % 512 == 32

    # status: verified, and the numbers of the live server.
    st = json.loads(ok("snapshot", "status", snap, "-w", "json"))
    assert st == {"hash": hash_before, "revision": rev, "totalKey": len(before.kvs),
                  "totalSize": size}
    simple = ok("snapshot", "status", snap).strip()
    assert simple.split(", ")[:3] == ["%x" % hash_before, str(rev), str(len(before.kvs))]
    table = ok("-w", "table", "snapshot", "status", snap).splitlines()
    assert "HASH" in table[1] and "REVISION" in table[1] and "TOTAL KEYS" in table[1]
    assert table[3].split("|")[2].strip() == str(rev)

    # restore into a new dir, then serve it.
    restored = server_factory(start=False)
    out = ok("snapshot", "restore", snap, "--data-dir", restored.data_dir)
    assert "restoring snapshot" in out
    assert "restored snapshot" in out and "revision=%d" % rev in out
    assert os.path.isdir(os.path.join(restored.data_dir, "cairn.db"))
    restored.start()

    assert restored.revision() == rev
    after = restored.kv.Range(pb.RangeRequest(**ALL), timeout=10)
    assert kv_tuples(after) == kv_tuples(before)
    assert after.count == before.count
    # History above the compaction, every revision of /cfg/a.
    for r, want in zip(range(compacted, rev + 1), history):
        got = restored.kv.Range(pb.RangeRequest(key=b"/cfg/a", revision=r), timeout=10)
        assert kv_tuples(got) == kv_tuples(want), "revision %d" % r
    assert kv_tuples(restored.kv.Range(pb.RangeRequest(revision=6, **ALL), timeout=10)) == \
        kv_tuples(before_at_6)
    # Below the compaction: compacted, as on the source.
    p = restored.etcdctl("get", "/cfg/a", "--rev", "3")
    assert p.returncode != 0 and "required revision has been compacted" in p.stderr
    assert hashkv(restored) == (hash_before, compacted)
    # The lease came along.
    ttl = restored.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lease, keys=True),
                                         timeout=10)
    assert ttl.grantedTTL == 600 and ttl.TTL > 0
    assert list(ttl.keys) == [b"/leased"]
    # And the restored member goes on from the restored revision.
    r = restored.kv.Put(pb.PutRequest(key=b"/new", value=b"1"), timeout=10)
    assert r.header.revision == rev + 1
    # The source is untouched by all this.
    assert cairn.revision() == rev


def test_restore_refuses_a_corrupted_snapshot(cairn, tmp_path):
    fill(cairn)
    snap = save_snapshot(cairn, str(tmp_path / "snap.db"))
    data = bytearray(open(snap, "rb").read())

    flipped = tmp_path / "flipped.db"
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x40
    flipped.write_bytes(bytes(bad))
    target = tmp_path / "restored"
    p = cairnctl("snapshot", "restore", flipped, "--data-dir", target)
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stderr.startswith("Error: ")
    assert "checksum mismatch" in p.stderr
    assert not target.exists(), "a refused restore must leave nothing behind"
    p = cairnctl("snapshot", "status", flipped)
    assert p.returncode == 1 and "checksum mismatch" in p.stderr

    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(bytes(data[:-100]))
    p = cairnctl("snapshot", "restore", truncated, "--data-dir", target)
    assert p.returncode == 1
    assert "is truncated or corrupt" in p.stderr, p.stderr
    assert not target.exists()

    p = cairnctl("snapshot", "restore", tmp_path / "missing.db", "--data-dir", target)
    assert p.returncode == 1 and "no such file" in p.stderr
    assert not target.exists()


def test_status_says_where_a_snapshot_is_truncated(cairn, tmp_path):
    fill(cairn)
    snap = save_snapshot(cairn, str(tmp_path / "snap.db"))
    data = open(snap, "rb").read()
    size = len(data)
    cut = tmp_path / "cut.db"

    # Only the checksum trailer lost: the meta pages say how long it should be.
    cut.write_bytes(data[:-10])
    p = cairnctl("snapshot", "status", cut)
    assert p.returncode == 1
    assert p.stderr.startswith("Error: %s is truncated or corrupt: " % cut), p.stderr
    assert "should have %d bytes, it has %d" % (size, size - 10) in p.stderr, p.stderr

    # Cut inside the first (meta) page: how long the file is.
    cut.write_bytes(data[:14])
    p = cairnctl("snapshot", "status", cut)
    assert p.returncode == 1
    assert "is truncated or corrupt: " in p.stderr and "it has 14 bytes" in p.stderr, p.stderr
    # Cut in the middle: the size it has is named either way.
    cut.write_bytes(data[:size // 2])
    p = cairnctl("snapshot", "status", cut)
    assert p.returncode == 1
    assert "is truncated or corrupt: " in p.stderr and str(size // 2) in p.stderr, p.stderr

    # A flipped byte in the middle: corrupt, found by the checksum.
    bad = bytearray(data)
    bad[size // 2] ^= 0x40
    cut.write_bytes(bytes(bad))
    p = cairnctl("snapshot", "status", cut)
    assert p.returncode == 1
    assert "is corrupt: snapshot checksum mismatch" in p.stderr, p.stderr

    # Something else entirely is still "not a cairn snapshot".
    cut.write_bytes(b"hello world\n" * 100)
    p = cairnctl("snapshot", "status", cut)
    assert p.returncode == 1 and "is not a cairn snapshot" in p.stderr, p.stderr


def test_restore_never_writes_over_data(cairn, tmp_path):
    cairn.etcdctl("put", "k", "v", check=True)
    snap = save_snapshot(cairn, str(tmp_path / "snap.db"))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    p = cairnctl("snapshot", "restore", snap, "--data-dir", busy)
    assert p.returncode == 1
    assert "exists and is not empty" in p.stderr
    assert sorted(os.listdir(busy)) == ["keep.txt"]
    # The live member's own data dir is refused too.
    p = cairnctl("snapshot", "restore", snap, "--data-dir", cairn.data_dir)
    assert p.returncode == 1 and "exists and is not empty" in p.stderr
    # An existing empty dir is fine; the default dir is <name>.cairn.
    empty = tmp_path / "empty"
    empty.mkdir()
    ok("snapshot", "restore", snap, "--data-dir", empty)
    assert os.listdir(empty) == ["cairn.db"]
    ok("snapshot", "restore", snap, "--name", "m2", cwd=tmp_path)
    assert (tmp_path / "m2.cairn" / "cairn.db").is_dir()
    p = cairnctl("snapshot", "restore", snap, "--name", "m2", cwd=tmp_path)
    assert p.returncode == 1 and "m2.cairn" in p.stderr


def test_usage_errors_exit_like_etcdctl():
    for args in ([], ["snapshot"], ["snapshot", "status"], ["snapshot", "restore"],
                 ["snapshot", "status", "f", "-w", "yaml"]):
        p = cairnctl(*args)
        assert p.returncode == 128, (args, p.stdout, p.stderr)
        assert p.stderr.strip(), args


@pytest.mark.parametrize("flags", [
    ["--name", "zz", "--initial-cluster", "a=http://127.0.0.1:1"],
    ["--name", "a", "--initial-cluster", "a=http://127.0.0.1:1"],
    ["--name", "a", "--initial-cluster", "a=http://127.0.0.1:1,b=http://127.0.0.1:1",
     "--initial-advertise-peer-urls", "http://127.0.0.1:1"],
])
def test_restore_checks_the_new_cluster_as_etcdctl(cairn, tmp_path, flags):
    """A bad --initial-cluster is refused with etcdctl's message, before
    anything is written."""
    cairn.etcdctl("put", "k", "v", check=True)
    snap = save_snapshot(cairn, str(tmp_path / "snap.db"))
    want = subprocess.run([cluster.ETCDCTL_BIN, "snapshot", "restore", snap, "--data-dir",
                           str(tmp_path / "etcd")] + flags, env=cluster.etcdctl_env(),
                          capture_output=True, text=True, timeout=60)
    target = tmp_path / "cairn"
    p = cairnctl("snapshot", "restore", snap, "--data-dir", target, *flags)
    assert p.returncode == want.returncode == 1, p.stdout + p.stderr
    # (etcd adds how it resolved the URLs)
    assert want.stderr.startswith(p.stderr.strip()), (want.stderr, p.stderr)
    assert not target.exists() and not (tmp_path / "etcd").exists()
