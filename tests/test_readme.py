"""The README's "Try it with etcdctl" block, run as a newcomer would type it.

Every `$ ` line of the first ```console block is run with bash against a fresh
server (the endpoint 127.0.0.1:2379 rewritten to the test server's); the lines
after it, up to the next `$ `, are the output it must print.
"""

import os
import re
import subprocess

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")


def console_steps():
    text = open(README, encoding="utf-8").read()
    m = re.search(r"```console\n(.*?)```", text, re.S)
    assert m, "README has no ```console block"
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
