"""
Tests for sandbox.py, through code_reward (reward.py): what a program can and cannot do in the sandbox
(loops, memory, fork bombs, files, network, signals), and that it leaves no process or directory behind.

    python -m pytest tests/test_sandbox.py -q
"""
import os
import random
import socket
import sys
import time
import uuid

import pytest

import sandbox

from reward import code_reward
from sandbox import sandbox_mode
from test_grader import ADVERSARIAL, fuzz_strings

# -----------------------------------------------------------------------------
# The code sandbox

needs_namespaces = pytest.mark.skipif(sandbox_mode() != "namespaces",
                                      reason="network/file isolation needs root and util-linux unshare/setpriv")
ADD_ONE = "```python\ndef f(x):\n    return x + 1\n```"


def answer(code: str) -> str:
    return f"<think>t</think><answer>{code}</answer>"


def sandbox_processes(marker: str) -> list[str]:
    """Live (non-zombie) processes whose command line contains marker."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if marker in cmd and state != "Z":
            found.append(f"{pid} {cmd[:80]}")
    return found


def gone(marker: str, wait: float = 2.0) -> bool:
    deadline = time.monotonic() + wait   # the kernel reaps a killed namespace asynchronously
    while sandbox_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not sandbox_processes(marker)


@pytest.mark.parametrize("completion, tests, expected", [
    (answer(ADD_ONE), ["assert f(1) == 2", "assert f(2) == 3"], 1.0),
    (answer(ADD_ONE), ["assert f(1) == 2", "assert f(2) == 4"], 0.5),
    (answer("def f(x):\n    return x + 1"), ["assert f(1) == 2"], 1.0),      # no fence inside the answer
    ("Sure:\n" + ADD_ONE, ["assert f(1) == 2"], 1.0),                        # a fence without answer tags
    ("def f(x): return x + 1", ["assert f(1) == 2"], 0.0),                   # no answer, no fence
    (answer(""), ["assert True"], 0.0),
    (answer(ADD_ONE), [], 0.0),
    (answer("import sys\nsys.exit(0)"), ["assert True"], 0.0),
    (answer("import os\nos._exit(0)"), ["assert True"], 0.0),
    (answer("def f(x):\n    return x + 1\nraise ValueError"), ["assert f(1) == 2"], 0.0),
    (answer("print('0 1 2')\nimport os\nos.write(1, b'0\\n1\\n')"), ["assert False", "assert False"], 0.0),
    (answer("x = 1\n\x00"), ["assert True"], 0.0), (answer("x = '\ud800'"), ["assert True"], 0.0),
    (answer("import os"), ["assert os.read(0, 10) == b''", "input()"], 0.5),   # stdin is empty: input() fails
    (answer("import builtins\nbuiltins.exec = lambda *a, **k: None\nbuiltins.compile = lambda *a, **k: None"),
     ["assert False", "assert False"], 0.0),                                    # the harness bound its own exec
])
def test_code_reward(completion, tests, expected):
    assert code_reward(completion, tests, timeout=5.0) == expected


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="dropping to nobody needs root")
def test_rlimits_mode_program_cannot_signal_its_caller(monkeypatch):
    """Without namespaces, as root, the program runs as nobody: it cannot signal the process that runs it.
    (SIGUSR1 with a handler, so that a failure shows up here instead of killing the test run.)"""
    import signal
    if not sandbox._rlimits_user():
        pytest.skip(f"user nobody cannot run {sys.executable} (sandbox.py then warns and runs programs as root)")
    monkeypatch.setattr(sandbox, "_namespace_prefix", lambda: ())
    got = []
    old = signal.signal(signal.SIGUSR1, lambda *a: got.append(a))
    try:
        program = "import os, signal\nos.kill(os.getppid(), signal.SIGUSR1)"
        assert code_reward(answer(program), ["assert True"], timeout=5.0) == 0.0     # kill raised PermissionError
        assert code_reward(answer("x = 1"), ["open('inside.txt', 'w').write('x')", "assert x == 1"]) == 1.0
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert not got and sandbox._rlimits_user()["user"] == sandbox.NOBODY


def test_sandbox_never_degrades_silently(monkeypatch, capsys):
    """A fallback to rlimits-only mode says why, once; R1_SANDBOX=namespaces refuses it instead."""
    monkeypatch.setattr(sandbox, "_namespaces_unavailable", lambda: "not running as root")
    sandbox._namespace_prefix.cache_clear()
    try:
        assert sandbox.sandbox_mode() == "rlimits" and sandbox.sandbox_mode() == "rlimits"
        assert capsys.readouterr().err.count("rlimits-only mode (not running as root)") == 1
        sandbox._namespace_prefix.cache_clear()
        monkeypatch.setenv("R1_SANDBOX", "namespaces")
        with pytest.raises(RuntimeError, match="R1_SANDBOX=namespaces.*not running as root"):
            sandbox.sandbox_mode()
    finally:
        sandbox._namespace_prefix.cache_clear()


def test_code_infinite_loop_is_killed_in_time():
    start = time.monotonic()
    score = code_reward(answer("def f():\n    while True:\n        pass"), ["assert True", "f()", "assert True"],
                        timeout=1.0)
    assert score == pytest.approx(1 / 3)                                      # tests before the hang still count
    assert time.monotonic() - start < 3.0


def test_code_huge_allocation_fails_fast():
    start = time.monotonic()
    assert code_reward(answer("x = bytearray(10 * 1024 ** 3)"), ["assert len(x) > 0"], timeout=5.0) == 0.0
    assert time.monotonic() - start < 3.0


@pytest.mark.parametrize("detached", [False, pytest.param(True, marks=needs_namespaces)])
def test_code_leaves_no_process_behind(detached):
    # a child in the program's process group dies with the group; one that leaves it dies with the PID namespace
    marker = f"sleep {random.randint(10_000, 99_999)}.5"
    code = f"import subprocess\nsubprocess.Popen({marker.split()!r}, start_new_session={detached})"
    assert code_reward(answer(code), ["assert True"], timeout=3.0) == 1.0
    assert gone(marker)


def test_rlimits_mode_leaves_no_process_or_directory_behind(monkeypatch):
    """Without namespaces a child that calls setsid() escapes the process group; it is found by its
    working directory, inside the program's temporary directory, and killed; the directory is removed."""
    import glob
    import tempfile
    monkeypatch.setattr(sandbox, "_namespace_prefix", lambda: ())
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "r1sandbox-*")))
    marker = f"sleep {random.randint(10_000, 99_999)}.5"
    code = f"import subprocess\nsubprocess.Popen({marker.split()!r}, start_new_session=True)"
    assert code_reward(answer(code), ["assert True"], timeout=3.0) == 1.0
    assert gone(marker)
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "r1sandbox-*"))) <= before


def test_code_reward_fuzz():
    # each call starts a process (~0.1 s), so a dozen inputs stand in for the thousands used above
    for s in ADVERSARIAL[:6] + fuzz_strings(6, seed=1) + ["\x00", "\ud800", "```" * 1000,
                                                          "<answer>```\n\n```</answer>"]:
        for completion in (s, answer(s), answer(f"```python\n{s}\n```")):
            start = time.monotonic()
            score = code_reward(completion, ["assert True", "assert 1 == 2"], timeout=2.0)
            assert score in (0.0, 0.5) and time.monotonic() - start < 4.0, (completion[:40], score)


@needs_namespaces
def test_code_fork_bomb_is_contained():
    start = time.monotonic()
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    assert code_reward(answer(bomb), ["assert True"], timeout=1.0) == 0.0
    assert time.monotonic() - start < 4.0
    assert gone("r1 sandbox runner", wait=3.0)


@needs_namespaces
def test_code_cannot_write_outside_its_directory(tmp_path):
    escape = f"/tmp/r1-escape-{uuid.uuid4().hex}"
    targets = [str(tmp_path / "escaped.txt"), "../escaped.txt", escape, "/var/tmp/" + os.path.basename(escape)]
    tests = [f"open({t!r}, 'w').write('x')" for t in targets] + ["open('inside.txt', 'w').write('x')"]
    score = code_reward(answer("pass"), tests, timeout=5.0)
    # the private /tmp and /var/tmp accept the writes, then vanish; the real paths refuse them
    assert score == pytest.approx(3 / 5)
    assert not any(os.path.exists(p) for p in [targets[0], escape, targets[3], "/escaped.txt"])


@needs_namespaces
def test_code_cannot_write_to_world_writable_system_dirs():
    """/run/lock (/var/lock) is world-writable on the host; in the sandbox it is a private tmpfs too."""
    name = f"r1-escape-{uuid.uuid4().hex}"
    score = code_reward(answer("pass"), [f"open('/run/lock/{name}', 'w').write('x')"], timeout=5.0)
    assert score == 1.0 and not os.path.exists(f"/run/lock/{name}")      # written, then gone with the sandbox


@needs_namespaces
def test_namespaces_work_from_a_virtual_environment_under_tmp(tmp_path):
    """The private /tmp hides an interpreter that lives under /tmp; the sandbox binds its directory back."""
    import subprocess
    venv = tmp_path / "venv"                                   # tmp_path is under /tmp
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    program = ("import reward; print(reward.sandbox_mode(), "
               "reward.code_reward('<answer>x = 1</answer>', ['assert x == 1', 'assert x == 2']))")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", program], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": repo}, timeout=120)
    assert done.stdout.split() == ["namespaces", "0.5"], done.stderr


@needs_namespaces
def test_code_has_no_network():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')"
        assert code_reward(answer(code), ["assert True"], timeout=5.0) == 0.0
        with pytest.raises(BlockingIOError):
            server.accept()
