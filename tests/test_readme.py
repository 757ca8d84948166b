"""The README's "Try it with etcdctl" block, run as a newcomer would type it.

Every `$ ` line of the first ```console block is run with bash against a fresh
server (the endpoint 127.0.0.1:2379 rewritten to the test server's); the lines
after it, up to the next `$ `, are the output it must print.
"""

import os
import re
import subprocess

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")


def console_steps(tag="", path=README):
    """The (command, expected output lines) of the ```console [tag] block of
    `path` (the README by default)."""
    text = open(path, encoding="utf-8").read()
    m = re.search(r"```console%s\n(.*?)```" % re.escape(tag and " " + tag), text, re.S)
    assert m, "%s has no ```console%s block" % (os.path.basename(path), tag and " " + tag)
    lines = m.group(1).splitlines()
    steps, i = [], 0
    while i < len(lines):
        line = lines[i]
        assert line.startswith("$ "), "unexpected line in README console block: %r" % line
        cmd = [line[2:]]
        i += 1
        heredoc = re.search(r"<<'(\w+)'", line)
        if heredoc:
            while lines[i] != heredoc.group(1):
                cmd.append(lines[i])
                i += 1
            cmd.append(lines[i])
            i += 1
        out = []
        while i < len(lines) and not lines[i].startswith("$ "):
            out.append(lines[i])
            i += 1
        steps.append(("\n".join(cmd), out))
    return steps


def test_readme_console_block(cairn):
    env = dict(os.environ)
    state = ""  # exports carry over from one step to the next, as in a shell
    for cmd, expected in console_steps():
        cmd = cmd.replace("127.0.0.1:2379", cairn.host_port)
        if cmd.startswith("export "):
            state += cmd + "\n"
            continue
        p = subprocess.run(["bash", "-c", state + cmd], env=env, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, "README step failed: %s\nstderr: %s" % (cmd, p.stderr)
        got = p.stdout.splitlines()
        assert got == expected, "README step %r printed %r, README says %r" % (cmd, got, expected)


def test_readme_cluster_block(tmp_path):
    """The README's three-member cluster block, against scripts/cluster.sh
    (the script `make cluster` runs) on free ports; ports in the commands and
    the output are rewritten to those, member ids to <id>."""
    import cluster
    import signal
    import time
    if cluster.TARGET != "cairn":
        import pytest
        pytest.skip("runs cairn's own cluster script")
    default_client, default_peer = [2379, 22379, 32379], [12380, 22380, 32380]
    client = [cluster.free_port() for _ in range(3)]
    peer = [cluster.free_port() for _ in range(3)]
    script = os.path.join(os.path.dirname(README), "scripts", "cluster.sh")
    env = dict(os.environ, CLUSTER_DIR=str(tmp_path / "c"),
               CLUSTER_CLIENT_PORTS=" ".join(map(str, client)),
               CLUSTER_PEER_PORTS=" ".join(map(str, peer)),
               CAIRN=cluster.cairn_binary())
    proc = subprocess.Popen(["bash", script], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def rewrite(text):
        for old, new in zip(default_client + default_peer, client + peer):
            text = re.sub(r":%d\b" % old, ":%d" % new, text)
        # etcdctl prints ids in hex without leading zeros
        return re.sub(r"\b[0-9a-f]{8,16}\b", "<id>", text)

    try:
        deadline = time.monotonic() + 30
        while True:
            ready = subprocess.run(
                [cluster.ETCDCTL_BIN, "--endpoints", ",".join("127.0.0.1:%d" % p for p in client),
                 "--command-timeout", "2s", "endpoint", "health"],
                env=cluster.etcdctl_env(), capture_output=True, text=True, timeout=30)
            if ready.returncode == 0:
                break
            assert time.monotonic() < deadline, "cluster not healthy: %s" % ready.stderr
            time.sleep(0.2)
        state = ""
        for cmd, expected in console_steps("cluster"):
            cmd = rewrite(cmd)
            # the member to kill is found by its data dir under the test's folder
            cmd = cmd.replace("'cairn --name infra1 '", "'%s/infra1 '" % env["CLUSTER_DIR"])
            if cmd.startswith("export "):
                state += cmd + "\n"
                continue
            p = subprocess.run(["bash", "-c", state + cmd], env=cluster.etcdctl_env(),
                               capture_output=True, text=True, timeout=60)
            if cmd.startswith("pkill") or cmd.startswith("sleep"):
                time.sleep(0.5)
                continue
            assert p.returncode == 0, "README step failed: %s\nstderr: %s" % (cmd, p.stderr)
            # member list is ordered by id, and ids follow the ports
            assert sorted(rewrite(p.stdout).splitlines()) == \
                sorted(rewrite(line) for line in expected), \
                "README step %r printed %r" % (cmd, p.stdout)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
