"""docs/security.md, run as a user would: the certificate commands, a server
started with the TLS flags the page shows, then the auth walk-through, each
step's output compared with the page."""

import os
import re
import shlex
import subprocess

import cluster
from test_readme import console_steps
from tls_certs import ClientFiles

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "security.md")
# Flags the harness sets itself (name, data dir, its own ports).
HARNESS_FLAGS = {"--name", "--data-dir", "--listen-client-urls", "--advertise-client-urls"}


def run_block(tag, cwd, host_port=None):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("ETCDCTL_"):
            del env[k]
    state = ""
    for cmd, expected in console_steps(tag, DOC):
        if host_port:
            cmd = cmd.replace("127.0.0.1:2379", host_port)
        if cmd.startswith("export "):
            state += cmd + "\n"
            continue
        p = subprocess.run(["bash", "-c", state + cmd], env=env, cwd=cwd, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, "step failed: %s\nstdout: %s\nstderr: %s" % (cmd, p.stdout, p.stderr)
        assert p.stdout.splitlines() == expected, "step %r printed %r, the page says %r" % (
            cmd, p.stdout.splitlines(), expected)


def server_flags(cwd):
    text = open(DOC, encoding="utf-8").read()
    block = re.search(r"```sh security-server\n(.*?)```", text, re.S).group(1)
    words = shlex.split(block.replace("\\\n", " "))
    assert words[0] == "cairn"
    flags, i = [], 1
    while i < len(words):
        name = words[i]
        takes_value = i + 1 < len(words) and not words[i + 1].startswith("--")
        value = words[i + 1] if takes_value else None
        i += 2 if takes_value else 1
        if name in HARNESS_FLAGS:
            continue
        flags.append(name)
        if value is not None:
            flags.append(os.path.join(cwd, value) if os.path.exists(os.path.join(cwd, value)) else value)
    return flags


def test_security_page(server_factory, tmp_path):
    cwd = str(tmp_path / "work")
    os.makedirs(cwd)
    run_block("security-certs", cwd)
    flags = server_flags(cwd)
    assert "--client-cert-auth" in flags and "--trusted-ca-file" in flags
    s = server_factory(extra_args=flags, client_tls=ClientFiles(
        os.path.join(cwd, "ca.crt"), os.path.join(cwd, "client.crt"), os.path.join(cwd, "client.key")))
    run_block("security-auth", cwd, host_port=s.host_port)
    assert s.alive()
