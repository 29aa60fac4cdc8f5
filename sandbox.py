"""
The code sandbox: runs an untrusted Python program (a model's completion), then assert-tests against it, in
a fresh process that cannot take its caller down. run_tests(code, tests) says how many of the tests pass;
sandbox_mode() says which of the two modes below this machine allows.

    python -m pytest tests/test_sandbox.py -q     # loops, memory, fork bombs, files, network, leftover processes

What it guarantees. Each program runs in a fresh Python process that gets:
  - a wall-clock limit: the whole process group is SIGKILLed at the deadline;
  - RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_FSIZE (file size), RLIMIT_NPROC (processes);
  - stdin from /dev/null, stdout and stderr to /dev/null: the runner reports passes on a saved copy of stdout,
    read back up to 1 MB, each line carrying a random nonce: a flood of output goes nowhere and fakes no pass;
  - a minimal environment (no secrets inherited).
Namespaces mode (as root with util-linux `unshare`/`setpriv`; checked once per process, see sandbox_mode()):
it also gets new network, PID and mount namespaces: no network at all (not even 127.0.0.1), every process it
starts dies with it, fresh private tmpfs over /tmp, /var/tmp, /dev/shm and /run/lock (its working directory
is that /tmp, and all of it vanishes afterwards), and it runs as user `nobody` without capabilities except
read-only CAP_DAC_READ_SEARCH (so it can read the Python install even when that lives under /root), so it
cannot write any file outside those tmpfs or raise its limits.
Rlimits mode (not root, or no unshare): it runs in a temporary directory, removed afterwards, as the current
user (as root: as `nobody`, where that user can run this interpreter). It can then use the network and write
wherever that user can; a child that leaves the process group is found by its working directory and killed,
unless it moved out of that directory.
In both modes it does NOT protect against: reading files (secrets included), kernel exploits, CPU/memory
contention until the deadline, or a program written to attack the harness (it shares its process with the
test loop, so it could forge the result through the runner's globals, and an object whose __eq__ always
returns True passes `assert f(x) == y`; replacing builtins such as exec does not help it: the runner bound
them first). Use it for rewarding model-written code during training, not for running hostile code.
"""
import functools
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile


def run_tests(code: str, tests: tuple[str, ...] | list[str], timeout: float = 5.0, memory_mb: int = 1024) -> int:
    """How many of tests (Python snippets, usually asserts) run without error after the program code, in the
    sandbox this file's header describes. Tests run in order in the program's globals; at the deadline
    (timeout seconds of wall clock, also the CPU limit) the process is killed and tests not yet passed count
    as failed. memory_mb caps the address space. Never raises for any code."""
    nonce = secrets.token_hex(16)  # a pass line must carry it, so printing "0 1 2" from the program scores nothing
    job = dict(code=code, tests=list(tests), nonce=nonce, cpu=math.ceil(timeout), mem=memory_mb << 20,
               fsize=16 << 20, nproc=32)
    with tempfile.TemporaryFile() as job_file, tempfile.TemporaryFile() as report, \
            tempfile.TemporaryDirectory(prefix="r1sandbox-") as work:
        job_file.write(json.dumps(job).encode())  # ensure_ascii: lone surrogates survive as \ud800 escapes
        job_file.seek(0)
        prefix = _namespace_prefix()
        as_user = {} if prefix else _rlimits_user()    # rlimits mode as root: run as nobody where that works
        if as_user:
            os.chown(work, as_user["user"], as_user["group"])
        proc = subprocess.Popen([*prefix, sys.executable, "-I", "-c", _RUNNER], stdin=job_file,
                                stdout=report, stderr=subprocess.DEVNULL, cwd=work,
                                env=_sandbox_env() if prefix else _SANDBOX_ENV, start_new_session=True, **as_user)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:  # also after a normal exit: takes down anything the program left running in its group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):  # the group is already gone
                pass
            proc.wait()
            if not prefix:   # without a PID namespace, a child that left the group lives on: find it by its cwd
                _kill_processes_in(work)
        report.seek(0)
        lines = report.read(1 << 20).decode("ascii", errors="replace").split("\n")
    passed = {line[len(nonce) + 1:] for line in lines if line.startswith(nonce + " ")}
    return len(passed & {str(i) for i in range(len(tests))})


def sandbox_mode() -> str:
    """"namespaces" (no network, private /tmp, runs as nobody) or "rlimits" (limits only); see this file's
    header. The first call probes; falling back to rlimits prints one warning saying why, and with the
    environment variable R1_SANDBOX=namespaces raises RuntimeError instead."""
    return "namespaces" if _namespace_prefix() else "rlimits"

# -----------------------------------------------------------------------------
# How: the runner program, the namespaces, the user it runs as, and finding leftover processes

# R1_KEEP: the interpreter's directory when it lives under one of the directories replaced by a private
# tmpfs (a virtual environment under /tmp): bound aside on a tmpfs at /mnt first, then back in place.
_NAMESPACES = ("unshare", "--net", "--pid", "--mount", "--fork", "--kill-child", "--", "sh", "-c",
               'if [ -n "$R1_KEEP" ]; then mount -t tmpfs tmpfs /mnt && mkdir /mnt/keep && '
               'mount --bind "$R1_KEEP" /mnt/keep || exit 96; fi; '
               'for d in /tmp /var/tmp /dev/shm /run/lock; do [ -d "$d" ] && { mount -t tmpfs -o size=64m,mode=1777 '
               'tmpfs "$d" || exit 97; }; done; '
               'if [ -n "$R1_KEEP" ]; then mkdir -p "$R1_KEEP" && mount --bind /mnt/keep "$R1_KEEP" || exit 96; fi; '
               'cd /tmp && exec setpriv --reuid=65534 --regid=65534 '
               '--clear-groups --no-new-privs --inh-caps=-all,+dac_read_search --ambient-caps=+dac_read_search '
               '--bounding-set=-all,+dac_read_search -- "$@"', "sh")
# The program run inside the sandbox (its first line is also how tests find leftover processes). It
# catches BaseException on purpose: any exception, SystemExit included, means "this test failed".
_RUNNER = r"""# r1 sandbox runner: limits, then the solution, then each test; reports passes on the saved stdout
import json, os, resource, sys
job = json.load(sys.stdin)
for name, v in (("CPU", job["cpu"]), ("AS", job["mem"]), ("FSIZE", job["fsize"]), ("NPROC", job["nproc"]), ("CORE", 0)):
    resource.setrlimit(getattr(resource, "RLIMIT_" + name), (v, v))
report = os.dup(1)
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
# bound before the solution runs, which may replace builtins.exec and the like (a stub exec would pass every test)
run, build, write, leave, tests, nonce = exec, compile, os.write, os._exit, list(enumerate(job["tests"])), job["nonce"]
scope = {"__name__": "solution"}
try:
    run(build(job["code"], "solution.py", "exec"), scope)
except BaseException:
    leave(0)
for i, test in tests:
    try:
        run(build(test, "test_%d.py" % i, "exec"), scope)
    except BaseException:
        continue
    write(report, ("%s %d\n" % (nonce, i)).encode())
leave(0)
"""


# no secrets inherited
_SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", "HOME": "/tmp"}
_PRIVATE_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/lock/")     # replaced by a private tmpfs in namespaces


def _sandbox_env() -> dict:
    """_SANDBOX_ENV, plus R1_KEEP (see _NAMESPACES) when the interpreter lives under a private directory."""
    home = sys.prefix if sys.executable.startswith(sys.prefix + "/") else os.path.dirname(sys.executable)
    return {**_SANDBOX_ENV, "R1_KEEP": home} if home.startswith(_PRIVATE_DIRS) else dict(_SANDBOX_ENV)


@functools.cache  # probed once per process: whether this machine lets us build the namespaces
def _namespace_prefix() -> tuple[str, ...]:
    why = _namespaces_unavailable()
    if why is None:
        return _NAMESPACES
    if os.environ.get("R1_SANDBOX") == "namespaces":
        raise RuntimeError(f"R1_SANDBOX=namespaces, but the code sandbox cannot build its namespaces: {why}")
    print(f"warning: code sandbox in rlimits-only mode ({why}): programs it runs can use the network, write "
          "wherever this user can, and leave processes behind (sandbox.py's header; R1_SANDBOX=namespaces "
          "refuses to run without namespaces)", file=sys.stderr)
    return ()


def _namespaces_unavailable() -> str | None:
    """Why the namespace sandbox cannot run here, or None when a probe program ran inside it."""
    if os.name != "posix" or os.geteuid() != 0:
        return "not running as root"
    if not (shutil.which("unshare") and shutil.which("setpriv")):
        return "util-linux unshare and setpriv not found"
    try:
        done = subprocess.run([*_NAMESPACES, sys.executable, "-I", "-c", "print('ok')"], capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=30, env=_sandbox_env())
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"the probe failed ({type(e).__name__})"
    if done.stdout != b"ok\n":
        hidden = " (it lives in a directory the sandbox replaces)" if "R1_KEEP" in _sandbox_env() else ""
        return (f"the probe of {sys.executable}{hidden} exited {done.returncode}: "
                f"{done.stderr.decode(errors='replace').strip()[-200:]}")
    return None


def _kill_processes_in(directory: str):
    """SIGKILLs every process whose working directory is inside `directory` (Linux /proc; a no-op elsewhere):
    what an rlimits-mode program started with setsid(), out of the reach of its process group."""
    root = os.path.realpath(directory)
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            if cwd == root or cwd.startswith(root + "/"):
                os.kill(int(pid), signal.SIGKILL)
        except OSError:                     # gone meanwhile, or not ours to inspect
            continue


NOBODY = 65534


@functools.cache  # probed once per process
def _rlimits_user() -> dict:
    """Popen's user/group arguments for rlimits-only mode: as root, the program runs as nobody, so that it
    cannot signal its caller or write where root can, provided nobody can run this interpreter (one
    warning otherwise); {} when not root."""
    if os.name != "posix" or os.geteuid() != 0:
        return {}
    as_nobody = dict(user=NOBODY, group=NOBODY, extra_groups=[])
    try:
        done = subprocess.run([sys.executable, "-I", "-c", "print('ok')"], capture_output=True, cwd="/",
                              stdin=subprocess.DEVNULL, timeout=30, env=_SANDBOX_ENV, **as_nobody)
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is not None and done.stdout == b"ok\n":
        return as_nobody
    print(f"warning: code sandbox runs programs as root: user nobody cannot run {sys.executable}",
          file=sys.stderr)
    return {}
