"""gRPC health checking (grpc.health.v1.Health), what Kubernetes gRPC probes
and grpc_health_probe ask: the server under test answers as a real etcd does
(Check, Watch, unknown services and methods), and a stop tells open Watch
streams NOT_SERVING and ends them.

The messages are tiny, so they are written by hand here (the Python
packages of Debian do not ship the health protos): HealthCheckRequest is
field 1 (service, a string), HealthCheckResponse field 1 (status, an enum:
1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN)."""

import signal
import time

import grpc

SERVING, NOT_SERVING, SERVICE_UNKNOWN = b"\x08\x01", b"\x08\x02", b"\x08\x03"


def request(service=b""):
    return b"\x0a" + bytes([len(service)]) + service if service else b""


def _raw(server, kind, method):
    ch = server.channel()
    make = ch.unary_unary if kind == "unary" else ch.unary_stream
    return make("/grpc.health.v1.Health/" + method, request_serializer=lambda x: x,
                response_deserializer=lambda x: x)


def _answers(server):
    out = {}

    def call(name, fn):
        try:
            out[name] = fn()
        except grpc.RpcError as e:
            out[name] = (e.code(), e.details())

    check = _raw(server, "unary", "Check")
    call("check", lambda: check(request(), timeout=10))
    call("check unknown service", lambda: check(request(b"etcdserverpb.KV"), timeout=10))
    call("unknown method", lambda: _raw(server, "unary", "Nope")(request(), timeout=10))
    for name, svc in (("watch", b""), ("watch unknown service", b"foo")):
        stream = _raw(server, "stream", "Watch")(request(svc), timeout=30)
        call(name, lambda: next(stream))
        stream.cancel()
    return out


def test_health_answers_as_etcd(cairn, etcd):
    want = _answers(etcd)
    assert want["check"] == SERVING and want["watch"] == SERVING, want
    assert _answers(cairn) == want


def test_stop_tells_health_watchers(cairn):
    streams = [_raw(cairn, "stream", "Watch")(request(), timeout=30) for _ in range(3)]
    assert [next(s) for s in streams] == [SERVING] * 3
    cairn._signal(signal.SIGTERM)
    for s in streams:
        rest = []
        try:
            rest = list(s)
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), e
        assert rest in ([], [NOT_SERVING]), rest
        if cairn.kind == "cairn":
            assert rest == [NOT_SERVING]
    deadline = time.monotonic() + 20
    while cairn.proc.poll() is None:
        assert time.monotonic() < deadline, "the server did not stop"
        time.sleep(0.05)
    assert cairn.proc.returncode in (0, -signal.SIGTERM)  # (etcd dies by the signal it got)
