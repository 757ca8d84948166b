"""A gRPC client for etcd's v3lock and v3election services.

python3-etcd3 has no stubs for them, so the messages are built from cairn's
own protos (proto/v3lockpb, proto/v3electionpb) compiled by protoc into a
descriptor set and loaded into a private descriptor pool: that keeps them
apart from the etcdserverpb messages etcd3 registers in the default pool.
The same client talks to cairn and to a real etcd (differential tests).
"""

import os
import subprocess
import tempfile

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PROTO = os.path.join(_ROOT, "proto")
_messages = None


def messages():
    """{full name: message class} for the lock and election protos."""
    global _messages
    if _messages is None:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "coord.pb")
            subprocess.run(["protoc", "-I", _PROTO, "--include_imports", "--descriptor_set_out=" + out,
                            os.path.join(_PROTO, "v3lockpb/v3lock.proto"),
                            os.path.join(_PROTO, "v3electionpb/v3election.proto")],
                           check=True, timeout=60)
            with open(out, "rb") as f:
                fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
        pool = descriptor_pool.DescriptorPool()
        for fd in fds.file:
            pool.Add(fd)
        factory = message_factory.MessageFactory(pool)
        found = {}
        for fd in fds.file:
            for m in fd.message_type:
                name = (fd.package + "." if fd.package else "") + m.name
                found[name] = factory.GetPrototype(pool.FindMessageTypeByName(name))
        _messages = found
    return _messages


def msg(_type, **fields):
    return messages()[_type](**fields)


class Coordination:
    """Lock and Election calls on one channel; each returns the response
    message or raises grpc.RpcError."""

    def __init__(self, channel):
        self.channel = channel
        m = messages()

        def unary(path, req, resp):
            return channel.unary_unary(path, request_serializer=m[req].SerializeToString,
                                       response_deserializer=m[resp].FromString)

        self._lock = unary("/v3lockpb.Lock/Lock", "v3lockpb.LockRequest", "v3lockpb.LockResponse")
        self._unlock = unary("/v3lockpb.Lock/Unlock", "v3lockpb.UnlockRequest", "v3lockpb.UnlockResponse")
        e = "v3electionpb."
        self._campaign = unary("/v3electionpb.Election/Campaign", e + "CampaignRequest", e + "CampaignResponse")
        self._proclaim = unary("/v3electionpb.Election/Proclaim", e + "ProclaimRequest", e + "ProclaimResponse")
        self._leader = unary("/v3electionpb.Election/Leader", e + "LeaderRequest", e + "LeaderResponse")
        self._resign = unary("/v3electionpb.Election/Resign", e + "ResignRequest", e + "ResignResponse")
        self._observe = channel.unary_stream("/v3electionpb.Election/Observe",
                                             request_serializer=m[e + "LeaderRequest"].SerializeToString,
                                             response_deserializer=m[e + "LeaderResponse"].FromString)

    def lock(self, name, lease=0, timeout=10):
        return self._lock(msg("v3lockpb.LockRequest", name=name, lease=lease), timeout=timeout)

    def lock_future(self, name, lease=0, timeout=30):
        return self._lock.future(msg("v3lockpb.LockRequest", name=name, lease=lease), timeout=timeout)

    def unlock(self, key, timeout=10):
        return self._unlock(msg("v3lockpb.UnlockRequest", key=key), timeout=timeout)

    def campaign(self, name, value, lease=0, timeout=10):
        return self._campaign(msg("v3electionpb.CampaignRequest", name=name, value=value, lease=lease),
                              timeout=timeout)

    def campaign_future(self, name, value, lease=0, timeout=30):
        return self._campaign.future(msg("v3electionpb.CampaignRequest", name=name, value=value, lease=lease),
                                     timeout=timeout)

    def proclaim(self, leader, value, timeout=10):
        req = msg("v3electionpb.ProclaimRequest", value=value)
        if leader is not None:
            req.leader.CopyFrom(leader)
        return self._proclaim(req, timeout=timeout)

    def resign(self, leader, timeout=10):
        req = msg("v3electionpb.ResignRequest")
        if leader is not None:
            req.leader.CopyFrom(leader)
        return self._resign(req, timeout=timeout)

    def leader(self, name, timeout=10):
        return self._leader(msg("v3electionpb.LeaderRequest", name=name), timeout=timeout)

    def observe(self, name, timeout=30):
        """The response iterator (cancel() it to stop)."""
        return self._observe(msg("v3electionpb.LeaderRequest", name=name), timeout=timeout)
