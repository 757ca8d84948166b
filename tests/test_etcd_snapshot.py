"""Data moved from a real etcd into cairn with etcd's own snapshot file:
`etcdctl snapshot save` against etcd, `cairnctl snapshot restore` of that
file, and a cairn member started on it serves every key at every revision
etcd kept, every lease with its keys, and the compaction as etcd did.
Broken files are refused and leave no data dir.
"""

import os
import shutil
import subprocess

import pytest
from etcd3.etcdrpc import rpc_pb2 as pb

import cluster
from test_cairnctl import cairnctl_binary

ALL = dict(key=b"\0", range_end=b"\0")


def _run(cmd, timeout=120, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=cluster.etcdctl_env())
    if check:
        assert p.returncode == 0, "%s failed: %s%s" % (cmd, p.stdout, p.stderr)
    return p


def _kvs(resp):
    return [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) for kv in resp.kvs]


def _etcd_with_history(etcd):
    """A history with everything a store keeps: versions, deletes, several
    changes in one revision (sub revisions), leases with keys, a compaction."""
    kv, lease = etcd.kv, etcd.lease
    for i in range(40):
        kv.Put(pb.PutRequest(key=b"/cfg/k%02d" % (i % 10), value=b"v%d" % i), timeout=10)
    kv.DeleteRange(pb.DeleteRangeRequest(key=b"/cfg/k09"), timeout=10)
    kv.Txn(pb.TxnRequest(success=[
        pb.RequestOp(request_put=pb.PutRequest(key=b"/txn/a", value=b"1")),
        pb.RequestOp(request_put=pb.PutRequest(key=b"/txn/b", value=b"2")),
        pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"/cfg/k08"))]), timeout=10)
    leases = []
    for ttl in (600, 900):
        lid = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=ttl), timeout=10).ID
        leases.append(lid)
        for j in range(3):
            kv.Put(pb.PutRequest(key=b"/lease/%d/%d" % (ttl, j), value=b"x", lease=lid), timeout=10)
    kv.Put(pb.PutRequest(key=b"bin\x00\xff", value=bytes(range(256)) * 100), timeout=10)
    kv.Compact(pb.CompactionRequest(revision=20, physical=True), timeout=10)
    for i in range(5):
        kv.Put(pb.PutRequest(key=b"/cfg/k00", value=b"after%d" % i), timeout=10)
    return leases


def _restore(snap, base, name="r1", extra=()):
    cairn = cluster.Server("cairn", base, name=name)
    shutil.rmtree(cairn.data_dir, ignore_errors=True)
    p = _run([cairnctl_binary(), "snapshot", "restore", snap, "--name", name,
              "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % cairn.peer_port,
              "--data-dir", cairn.data_dir] + list(extra), check=False)
    return cairn, p


def test_etcd_snapshot_restored_into_cairn(server_factory, tmp_path):
    etcd = server_factory(kind="etcd")
    leases = _etcd_with_history(etcd)
    snap = str(tmp_path / "etcd.db")
    _run([cluster.ETCDCTL_BIN, "--endpoints", etcd.host_port, "snapshot", "save", snap])
    status = _run([cluster.ETCDCTL_BIN, "snapshot", "status", snap, "-w", "json"]).stdout

    cairn, p = _restore(snap, tmp_path / "cairn")
    assert p.returncode == 0, p.stderr
    assert "restored snapshot" in p.stdout
    # cairnctl reads etcd's file as etcdctl does: the same revision.
    got = _run([cairnctl_binary(), "snapshot", "status", snap, "-w", "json"]).stdout
    import json
    assert json.loads(got)["revision"] == json.loads(status)["revision"]
    try:
        cairn.start()
        now = etcd.kv.Range(pb.RangeRequest(**ALL), timeout=10)
        mine = cairn.kv.Range(pb.RangeRequest(**ALL), timeout=10)
        assert mine.header.revision == now.header.revision
        assert _kvs(mine) == _kvs(now)
        # Every revision etcd kept reads the same; the compacted ones are
        # refused the same way.
        for rev in range(20, now.header.revision + 1):
            want = etcd.kv.Range(pb.RangeRequest(revision=rev, **ALL), timeout=10)
            assert _kvs(cairn.kv.Range(pb.RangeRequest(revision=rev, **ALL), timeout=10)) == _kvs(want), rev
        # HashKV is etcd's algorithm over the same records: equal at every
        # kept revision (and so equal to what etcd's corruption check expects).
        for rev in (21, 30, now.header.revision, 0):
            want = etcd.maint.HashKV(pb.HashKVRequest(revision=rev), timeout=10)
            got = cairn.maint.HashKV(pb.HashKVRequest(revision=rev), timeout=10)
            assert (got.hash, got.compact_revision) == (want.hash, want.compact_revision), rev
        for server in (etcd, cairn):
            with pytest.raises(Exception) as err:
                server.kv.Range(pb.RangeRequest(revision=19, **ALL), timeout=10)
            assert "required revision has been compacted" in str(err.value)
        # Leases, their TTLs and their keys; a revoke takes the keys along.
        listed = sorted(l.ID for l in cairn.lease.LeaseLeases(pb.LeaseLeasesRequest(), timeout=10).leases)
        assert listed == sorted(leases)
        for lid in leases:
            want = etcd.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lid, keys=True), timeout=10)
            got = cairn.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lid, keys=True), timeout=10)
            assert (got.grantedTTL, sorted(got.keys)) == (want.grantedTTL, sorted(want.keys))
            assert 0 < got.TTL <= got.grantedTTL
        cairn.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=leases[0]), timeout=10)
        assert cairn.kv.Range(pb.RangeRequest(key=b"/lease/600/", range_end=b"/lease/6000"),
                              timeout=10).count == 0
        # The restored member takes writes after etcd's last revision.
        put = cairn.kv.Put(pb.PutRequest(key=b"/new", value=b"1"), timeout=10)
        assert put.header.revision == now.header.revision + 2  # the revoke, then the put
    finally:
        cairn.cleanup()


def test_broken_etcd_snapshots_are_refused(server_factory, tmp_path):
    etcd = server_factory(kind="etcd")
    for i in range(200):
        etcd.kv.Put(pb.PutRequest(key=b"k%03d" % i, value=b"v" * 100), timeout=10)
    snap = str(tmp_path / "etcd.db")
    _run([cluster.ETCDCTL_BIN, "--endpoints", etcd.host_port, "snapshot", "save", snap])
    data = open(snap, "rb").read()

    def refused(name, content, want, extra=()):
        path = str(tmp_path / name)
        with open(path, "wb") as f:
            f.write(content)
        cairn, p = _restore(path, tmp_path / ("c-" + name), extra=extra)
        assert p.returncode != 0, name
        assert want in p.stderr, (name, p.stderr)
        assert not os.path.exists(cairn.data_dir), "%s left a data dir" % name

    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    refused("flipped", bytes(flipped), "expected sha256")
    refused("truncated", data[:len(data) // 2], "is truncated or corrupt")
    refused("truncated-nohash", data[:len(data) // 2], "truncated", extra=["--skip-hash-check"])
    # A bbolt file without etcd's hash (a member.db copied from a data dir)
    # restores only with --skip-hash-check, as with etcdctl.
    raw = data[:-32]
    refused("raw", raw, "snapshot missing hash but --skip-hash-check=false")
    path = str(tmp_path / "raw-ok")
    with open(path, "wb") as f:
        f.write(raw)
    cairn, p = _restore(path, tmp_path / "c-raw-ok", extra=["--skip-hash-check"])
    assert p.returncode == 0, p.stderr
    try:
        cairn.start()
        assert cairn.kv.Range(pb.RangeRequest(**ALL), timeout=10).count == 200
    finally:
        cairn.cleanup()


def _same_history(a, b, first_rev):
    """Every key at every revision from first_rev on, and the leases."""
    now = a.kv.Range(pb.RangeRequest(**ALL), timeout=10)
    assert b.kv.Range(pb.RangeRequest(**ALL), timeout=10).header.revision == now.header.revision
    for rev in range(first_rev, now.header.revision + 1):
        assert _kvs(a.kv.Range(pb.RangeRequest(revision=rev, **ALL), timeout=10)) == \
            _kvs(b.kv.Range(pb.RangeRequest(revision=rev, **ALL), timeout=10)), rev
    leases = sorted(l.ID for l in a.lease.LeaseLeases(pb.LeaseLeasesRequest(), timeout=10).leases)
    assert sorted(l.ID for l in b.lease.LeaseLeases(pb.LeaseLeasesRequest(), timeout=10).leases) == leases
    for lid in leases:
        ta = a.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lid, keys=True), timeout=10)
        tb = b.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lid, keys=True), timeout=10)
        assert (ta.grantedTTL, sorted(ta.keys)) == (tb.grantedTTL, sorted(tb.keys))
    return now.header.revision


def _restore_etcd(snap, base, name="e2"):
    """A real etcd from `snap` with etcdctl snapshot restore, started."""
    etcd = cluster.Server("etcd", base, name=name)
    _run([cluster.ETCDCTL_BIN, "snapshot", "restore", snap, "--name", name,
          "--initial-cluster", "%s=http://127.0.0.1:%d" % (name, etcd.peer_port),
          "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % etcd.peer_port,
          "--data-dir", etcd.data_dir])
    return etcd.start()


def test_etcd_to_cairn_to_etcd(server_factory, tmp_path):
    """etcd -> cairn -> etcd with the real tools: etcdctl saves from etcd,
    cairnctl restores, cairn takes more writes, etcdctl saves from cairn (an
    etcd-format file: `etcdctl snapshot status` reads it) and restores it
    for a real etcd, which serves every revision and lease."""
    etcd = server_factory(kind="etcd")
    _etcd_with_history(etcd)
    snap = str(tmp_path / "from-etcd.db")
    _run([cluster.ETCDCTL_BIN, "--endpoints", etcd.host_port, "snapshot", "save", snap])
    cairn, p = _restore(snap, tmp_path / "cairn")
    assert p.returncode == 0, p.stderr
    back = None
    try:
        cairn.start()
        _same_history(etcd, cairn, 20)
        # Life goes on in cairn.
        lid = cairn.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=1200), timeout=10).ID
        cairn.kv.Put(pb.PutRequest(key=b"/moved/leased", value=b"l", lease=lid), timeout=10)
        for i in range(10):
            cairn.kv.Put(pb.PutRequest(key=b"/moved/k%d" % (i % 3), value=b"c%d" % i), timeout=10)
        cairn.kv.DeleteRange(pb.DeleteRangeRequest(key=b"/moved/k2"), timeout=10)
        rev = cairn.kv.Put(pb.PutRequest(key=b"/moved/mark", value=b"m"), timeout=10).header.revision
        cairn.kv.Compact(pb.CompactionRequest(revision=rev - 5, physical=True), timeout=10)
        cairn.kv.Put(pb.PutRequest(key=b"/moved/last", value=b"z"), timeout=10)

        snap2 = str(tmp_path / "from-cairn.db")
        _run([cluster.ETCDCTL_BIN, "--endpoints", cairn.host_port, "snapshot", "save", snap2])
        import json
        status = json.loads(_run([cluster.ETCDCTL_BIN, "snapshot", "status", snap2, "-w", "json"]).stdout)
        assert status["revision"] == rev + 1

        back = _restore_etcd(snap2, tmp_path / "etcd-again")
        _same_history(cairn, back, rev - 5)
        for r in (rev - 4, rev, 0):
            assert cairn.maint.HashKV(pb.HashKVRequest(revision=r), timeout=10).hash == \
                back.maint.HashKV(pb.HashKVRequest(revision=r), timeout=10).hash, r
        with pytest.raises(Exception) as err:
            back.kv.Range(pb.RangeRequest(revision=rev - 6, **ALL), timeout=10)
        assert "required revision has been compacted" in str(err.value)
        # The etcd restored from cairn's file takes writes after it.
        assert back.kv.Put(pb.PutRequest(key=b"/x", value=b"1"), timeout=10).header.revision == rev + 2
    finally:
        cairn.cleanup()
        if back is not None:
            back.cleanup()


def test_cairnctl_snapshot_save_of_a_stopped_member(server_factory, tmp_path):
    """`cairnctl snapshot save --data-dir` writes the same etcd-format file
    from a stopped member that `etcdctl snapshot save` gets from a running
    one; a running member's dir is refused (its database is locked)."""
    import json
    cairn = server_factory()
    for i in range(50):
        cairn.kv.Put(pb.PutRequest(key=b"k%02d" % (i % 7), value=b"v%d" % i), timeout=10)
    online = str(tmp_path / "online.db")
    _run([cluster.ETCDCTL_BIN, "--endpoints", cairn.host_port, "snapshot", "save", online])
    offline = str(tmp_path / "offline.db")
    p = _run([cairnctl_binary(), "snapshot", "save", offline, "--data-dir", cairn.data_dir], check=False)
    assert p.returncode == 1 and "is the member still running?" in p.stderr, p.stderr
    assert not os.path.exists(offline) and not os.path.exists(offline + ".part")
    cairn.stop()
    p = _run([cairnctl_binary(), "snapshot", "save", offline, "--data-dir", cairn.data_dir])
    assert p.stdout.strip() == "Snapshot saved at %s" % offline
    st = [json.loads(_run([cluster.ETCDCTL_BIN, "snapshot", "status", f, "-w", "json"]).stdout)
          for f in (online, offline)]
    assert st[0]["revision"] == st[1]["revision"] == 51
    assert st[0]["totalKey"] == st[1]["totalKey"]


def test_status_of_a_snapshot_compacted_at_its_revision(server_factory, tmp_path):
    """A store compacted at its current revision still reports its status
    (HashKV refuses the compacted revision itself, as etcd's)."""
    import json
    cairn = server_factory()
    rev = 0
    for i in range(5):
        rev = cairn.kv.Put(pb.PutRequest(key=b"k%d" % i, value=b"v"), timeout=10).header.revision
    cairn.kv.Compact(pb.CompactionRequest(revision=rev, physical=True), timeout=10)
    snap = str(tmp_path / "s.db")
    _run([cluster.ETCDCTL_BIN, "--endpoints", cairn.host_port, "snapshot", "save", snap])
    st = json.loads(_run([cairnctl_binary(), "snapshot", "status", snap, "-w", "json"]).stdout)
    assert (st["revision"], st["totalKey"]) == (rev, 5)
    assert st["hash"] == cairn.maint.HashKV(pb.HashKVRequest(revision=0), timeout=10).hash


def _ctl(server, *args, user=None):
    cmd = [cluster.ETCDCTL_BIN, "--endpoints", server.host_port, "--dial-timeout", "5s",
           "--command-timeout", "20s"] + (["--user", user] if user else []) + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=cluster.etcdctl_env())
    return p.returncode, p.stdout.strip(), p.stderr.strip()


def test_users_roles_and_auth_move_both_ways(server_factory, tmp_path):
    """etcd with auth on -> cairn -> etcd: users (their bcrypt passwords),
    roles, permissions and the auth switch come along in the snapshots."""
    root = "root:rootpw"
    etcd = server_factory(kind="etcd")
    for args, user in ((["user", "add", root], None), (["auth", "enable"], None),
                       (["role", "add", "reader"], root),
                       (["role", "grant-permission", "reader", "read", "/app/", "--prefix"], root),
                       (["user", "add", "alice:alicepw"], root), (["user", "grant-role", "alice", "reader"], root),
                       (["put", "/app/x", "1"], root), (["put", "/secret", "s"], root)):
        assert _ctl(etcd, *args, user=user)[0] == 0, args
    snap = str(tmp_path / "from-etcd.db")
    assert _ctl(etcd, "snapshot", "save", snap, user=root)[0] == 0
    cairn, p = _restore(snap, tmp_path / "cairn")
    assert p.returncode == 0, p.stderr
    assert "not restored" not in p.stderr
    back = None
    try:
        cairn.start()
        # The same answers as etcd: auth on, alice's password and permissions.
        assert _ctl(cairn, "get", "/app/x")[2].endswith("etcdserver: user name is empty")
        assert _ctl(cairn, "get", "/app/x", "--print-value-only", user="alice:alicepw")[1] == "1"
        assert "permission denied" in _ctl(cairn, "get", "/secret", user="alice:alicepw")[2]
        assert "authentication failed" in _ctl(cairn, "get", "/app/x", user="alice:wrong")[2]
        assert _ctl(cairn, "role", "get", "reader", user=root)[1] == \
            _ctl(etcd, "role", "get", "reader", user=root)[1]
        # A change in cairn, then back to etcd.
        for args in (["user", "add", "bob:bobpw"], ["user", "grant-role", "bob", "reader"],
                     ["role", "grant-permission", "reader", "read", "/secret"]):
            assert _ctl(cairn, *args, user=root)[0] == 0, args
        snap2 = str(tmp_path / "from-cairn.db")
        assert _ctl(cairn, "snapshot", "save", snap2, user=root)[0] == 0
        back = _restore_etcd(snap2, tmp_path / "etcd-again")
        assert _ctl(back, "get", "/secret", "--print-value-only", user="bob:bobpw")[1] == "s"
        assert _ctl(back, "get", "/app/x", "--print-value-only", user="alice:alicepw")[1] == "1"
        assert _ctl(back, "user", "list", user=root)[1].split() == ["alice", "bob", "root"]
        assert _ctl(back, "get", "/app/x")[2].endswith("etcdserver: user name is empty")
    finally:
        cairn.cleanup()
        if back is not None:
            back.cleanup()
