"""Fixtures for the cairn end-to-end suite.

    CAIRN_BUILD=/abs/build python3 -m pytest -x -q tests        # against cairn
    CAIRN_TEST_TARGET=etcd python3 -m pytest -x -q tests        # validate vs etcd

Fixtures:
  cairn          a fresh server of the target kind (cairn, or etcd when
                 CAIRN_TEST_TARGET=etcd), default flags
  etcd           a fresh real etcd (reference for differential tests)
  server_factory make(kind=None, extra_args=(), start=True, client_tls=None)
                 -> Server, for servers with extra flags (quota,
                 max-request-bytes, TLS, ...)
"""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster  # noqa: E402


def pytest_report_header(config):
    line = "cairn e2e: target=%s" % cluster.TARGET
    if cluster.TARGET == "cairn":
        line += " binary=%s" % cluster.cairn_binary()
    return line


@pytest.fixture
def server_factory(tmp_path):
    servers = []
    counter = [0]

    def make(kind=None, extra_args=(), start=True, name="n1", client_tls=None):
        kind = kind or cluster.TARGET
        counter[0] += 1
        s = cluster.Server(kind, tmp_path / ("%s%d" % (kind, counter[0])),
                           name=name, extra_args=extra_args, client_tls=client_tls)
        servers.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in servers:
        s.cleanup()
    for p in list(cluster._CHILDREN):
        cluster.stop_child(p)


@pytest.fixture
def cairn(server_factory):
    """The server under test (etcd when CAIRN_TEST_TARGET=etcd)."""
    return server_factory()


@pytest.fixture
def etcd(server_factory):
    """A real etcd, the reference implementation."""
    return server_factory(kind="etcd")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # On failure, attach the tail of every server log the test started.
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "_cairn_rep_" + rep.when, rep)
    if rep.when == "call" and rep.failed:
        fx = getattr(item, "funcargs", {})
        seen = set()
        for v in fx.values():
            if isinstance(v, cluster.Server) and id(v) not in seen:
                seen.add(id(v))
                rep.sections.append(("log of %r" % v, v.log_tail(3000)))


@pytest.fixture(autouse=True)
def _remove_tmp_path_of_passed_tests(request):
    """Data directories of passed tests are deleted as soon as the test ends
    (a cluster test writes hundreds of MB; pytest would keep three whole runs
    of them).  A failed test keeps its directory for the post-mortem.  Being
    autouse, this fixture is torn down after the servers are stopped."""
    yield
    if "tmp_path" not in request.fixturenames:
        return
    reps = [getattr(request.node, "_cairn_rep_" + w, None) for w in ("setup", "call")]
    if all(r is not None and r.passed for r in reps):
        path = request.node.funcargs.get("tmp_path")
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    cluster.cleanup_all()
