"""arena.tracer.run on real programs: what it records, how it ends them, and what it refuses."""
from __future__ import annotations

import errno
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from arena import sysmem, tracer

# Fixtures and helpers for the test programs: tests/tracees.py.
pytest_plugins = ["tracees"]
WIDTHS = [64, 32] if sysmem.NATIVE_BITS == 64 else [32]

# Real programs under the tracer: no memory backend (conftest checks), one run of make test.
pytestmark = [pytest.mark.usefixtures("no_leftover_processes"), pytest.mark.backend_independent]

MAP = re.compile(r"map (\d+) (\d+) (0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+|failed \d+)")


def landed(outcome: tracer.Outcome) -> list[tuple[int, int, int, int, str]]:
    """The mapper's own report of each mapping: (pid, tid, hint, size, address or 'failed ERRNO')."""
    assert outcome.stdout is not None
    return [(int(p), int(t), int(h, 16), int(s, 16), a) for p, t, h, s, a in MAP.findall(outcome.stdout.decode())]


def record_of(outcome: tracer.Outcome, tid: int, hint: int) -> tracer.Record:
    found = [r for r in outcome.calls if r.call.tid == tid and r.call.hint == hint and r.call.adjustable]
    assert len(found) == 1, (tid, hex(hint), [r.describe() for r in outcome.calls])
    return found[0]


@pytest.mark.parametrize("bits", WIDTHS)
def test_every_thread_and_process_is_traced(build, bits):
    o = tracer.run([str(build("mapper", bits)), "-t", "3", "-n", "2", "-f", "-e"], capture=True, timeout=60)
    assert (o.exit_status, o.signal, o.failed) == (0, None, False), o.describe()
    maps = landed(o)
    # 4 threads, a forked child and an exec'd child, 2 mappings each.
    assert len(maps) == 12
    assert len({p for p, *_ in maps}) == 3 and o.processes == 3
    assert len({t for _, t, *_ in maps}) == 6
    for pid, tid, hint, size, address in maps:
        r = record_of(o, tid, hint)
        assert (r.call.pid, r.call.size, r.call.bits, r.decision, r.answer) == (pid, size, bits, "keep", int(address, 16))
        assert r.call.syscall == ("mmap" if bits == 64 else "mmap2")
    assert [r.call.index for r in o.calls] == list(range(len(o.calls)))
    assert o.rewritten == 0 and o.leftovers == 0 and o.fatal is None


@pytest.mark.parametrize("bits", WIDTHS)
def test_a_moved_hint_is_where_the_kernel_really_maps(build, bits):
    o = tracer.run([str(build("mapper", bits)), "-t", "1", "-f", "-e"], "displace,by=12K", capture=True, timeout=60)
    assert o.exit_status == 0, o.describe()
    maps = landed(o)
    assert len(maps) == 8
    for _, tid, hint, _, address in maps:
        # The program wrote to the mapping where it landed, 12 KiB off its own 2 MiB alignment.
        assert int(address, 16) == hint + 12 * 1024
        r = record_of(o, tid, hint)
        assert (r.decision, r.moved_to, r.answer) == ("move", hint + 12 * 1024, hint + 12 * 1024)
    assert o.rewritten == sum(r.call.adjustable and r.call.hint != 0 for r in o.calls) >= 8


@pytest.mark.skipif(sysmem.NATIVE_BITS == 32, reason="a 32-bit Python traces only 32-bit programs")
def test_a_64_bit_program_starting_a_32_bit_one(build):
    o = tracer.run(["sh", "-c", f"{build('mapper', 32)} -n 1"], "displace,by=8K,min=1M", capture=True, timeout=60)
    assert o.exit_status == 0 and o.processes == 2
    assert {r.call.bits for r in o.calls} == {64, 32}
    (moved,) = [r for r in o.calls if r.rewritten]
    assert (moved.call.syscall, moved.call.bits, moved.answer) == ("mmap2", 32, moved.call.hint + 8192)
    assert landed(o)[0][4] == hex(moved.answer)


def test_the_old_i386_mmap_is_read_never_changed(build):
    o = tracer.run([str(build("old_mmap", 32))], "displace,by=4K", capture=True, timeout=60)
    assert o.stdout == b"old_mmap 0x30000000\n" and o.exit_status == 0
    (old,) = [r for r in o.calls if r.call.syscall == "old_mmap"]
    assert (old.call.hint, old.call.size, old.call.prot, old.call.flags, old.call.fd) == (0x30000000, 8192, 3, 0x22, -1)
    assert (old.decision, old.answer, old.call.adjustable) == ("keep", 0x30000000, False)


def test_observed_calls_are_never_changed(build):
    o = tracer.run([str(build("mapper")), "-f"], "displace,by=4K", capture=True, timeout=60)
    assert o.exit_status == 0
    for r in o.calls:
        if not r.call.adjustable:
            assert (r.decision, r.moved_to) == ("keep", None), r.describe()
    mmap = "mmap" if sysmem.NATIVE_BITS == 64 else "mmap2"
    assert {mmap, "munmap"} <= {r.call.syscall for r in o.calls}
    fixed = [r for r in o.calls if r.call.syscall == mmap and r.call.flags & 0x10]
    assert fixed and all(r.answer == r.call.hint for r in fixed)  # ld.so's MAP_FIXED segments, as asked


@pytest.mark.parametrize("bits", WIDTHS)
def test_a_failed_call_fails_with_enomem_in_the_program(build, bits):
    # The mapper's 3 MiB mappings are the only ones that large: the second of them fails.
    o = tracer.run([str(build("mapper", bits)), "-n", "3", "-s", "0x300000"], "enomem,at=2,min=3M", capture=True,
                   timeout=60)
    maps = landed(o)
    assert [a for *_, a in maps].count(f"failed {errno.ENOMEM}") == 1
    assert maps[1][4] == f"failed {errno.ENOMEM}"
    assert o.exit_status == 3 and o.failed
    (r,) = [r for r in o.calls if r.rewritten]
    assert (r.decision, r.answer, r.call.size) == ("fail", -errno.ENOMEM, 3 << 20)


def test_output_passes_through_and_stderr_is_still_read(build, capfd):
    o = tracer.run([str(build("linear_arena")), "go1.8", "3"], "gap", timeout=60)
    out, err = capfd.readouterr()
    assert "growth 1:" in out and "fatal error: heapBitsForSpan: base out of range" in err
    assert o.stdout is None and o.stderr is None
    assert o.fatal == "fatal error: heapBitsForSpan: base out of range"
    assert (o.exit_status, o.failed) == (2, True)


def test_capture_is_bounded(tmp_path):
    o = tracer.run(["sh", "-c", "head -c 100000 /dev/zero; head -c 5000 /dev/zero >&2"], capture=True,
                   capture_limit=1000, timeout=60)
    assert o.exit_status == 0
    assert o.stdout == b"\0" * 1000 and o.stderr == b"\0" * 1000
    assert o.output_dropped == 99000 + 4000


def test_env_cwd_and_a_script(tmp_path):
    script = tmp_path / "hello"
    script.write_text("#!/bin/sh\necho \"$GREETING from $(pwd)\"\n")
    script.chmod(0o755)
    o = tracer.run(["./hello"], env={"GREETING": "hi", "PATH": os.defpath}, cwd=tmp_path, capture=True, timeout=60)
    assert o.stdout == f"hi from {tmp_path}\n".encode()
    assert o.executable == str(script) and o.processes >= 1
    assert o.bits == 64 if sysmem.NATIVE_BITS == 64 else 32


def test_how_a_program_ended():
    assert tracer.run(["true"]).exit_status == 0
    seven = tracer.run(["sh", "-c", "exit 7"])
    assert (seven.exit_status, seven.signal, seven.failed) == (7, None, True)
    segv = tracer.run(["sh", "-c", "kill -SEGV $$"])
    assert (segv.exit_status, segv.signal, segv.failed) == (None, signal.SIGSEGV, True)
    assert segv.describe().startswith("killed by SIGSEGV")


def test_a_traced_program_cannot_be_left_stopped():
    # Without PTRACE_SEIZE a job-control stop cannot be held without losing the process to the tracer: it is resumed.
    o = tracer.run(["sh", "-c", "kill -STOP $$; echo after"], capture=True, timeout=60)
    assert o.stdout == b"after\n" and o.exit_status == 0


def test_a_program_that_exits_at_once(build):
    o = tracer.run(["true"])
    assert o.exit_status == 0 and not o.failed and o.calls and o.wall_time < 5
    assert o.calls[0].call.pid == o.calls[-1].call.pid


def test_timeout_terminates_then_kills(build):
    start = time.monotonic()
    o = tracer.run([str(build("ignore_term"))], timeout=0.5, grace=0.3, capture=True)
    assert time.monotonic() - start < 10
    assert o.stdout == b"ignoring SIGTERM\n"
    assert o.timed_out and o.signal == signal.SIGKILL and o.failed
    assert o.stopped == "timed out after 0.5 s"
    polite = tracer.run(["sleep", "30"], timeout=0.3)
    assert polite.timed_out and polite.signal == signal.SIGTERM


def test_a_fork_bomb_is_stopped(build):
    o = tracer.run([str(build("forker")), "40"], max_processes=8, capture=True, timeout=60)
    assert o.stopped and "more than 8 processes" in o.stopped and "max_processes" in o.stopped
    assert o.signal == signal.SIGKILL and o.failed
    assert o.processes == 9


def test_processes_left_running_are_killed(build):
    o = tracer.run([str(build("forker")), "3", "leave"], capture=True, timeout=60)
    assert o.exit_status == 0 and o.stdout == b"forked 3\n"
    assert o.leftovers == 3 and o.processes == 4


def test_a_program_that_uses_ptrace_itself(build):
    # Its child is already traced by the tracer, so its own PTRACE_TRACEME is refused (documented).
    o = tracer.run([str(build("self_tracer"))], capture=True, timeout=60)
    assert o.stdout == b"traceme: Operation not permitted\n"
    assert o.exit_status == 1


def test_setuid_programs(build, tmp_path):
    from tracees import setuid_copy

    other = setuid_copy(build("mapper"), tmp_path)
    with pytest.raises(tracer.SetuidProgram, match="set-user-ID .*chmod u-s"):
        tracer.run([str(other)])
    other.chmod(0o2755)
    with pytest.raises(tracer.SetuidProgram, match="set-group-ID"):
        tracer.run([str(other)])
    # Set-user-ID root run by root: the bit changes nothing, so it runs.
    os.chown(other, 0, 0)
    other.chmod(0o4755)
    assert tracer.run([str(other)], capture=True, timeout=60).exit_status == 0


@pytest.mark.parametrize("argv, error, words", [
    ([], ValueError, "argv is empty"),
    ("ls", TypeError, "argv must be a list"),
    ([b"ls"], TypeError, r"argv\[0\] must be a str"),
    ([7], TypeError, r"argv\[0\] must be a str"),
    (["ls", "a\0b"], ValueError, "NUL"),
    ([""], tracer.ProgramNotFound, "empty"),
    (["no-such-program-here"], tracer.ProgramNotFound, "on PATH.*give its path"),
    (["./no-such-file"], tracer.ProgramNotFound, "no such file"),
    (["/"], tracer.NotExecutable, "is a directory"),
    (["/dev/null"], tracer.NotExecutable, "not a regular file"),
])
def test_bad_argv(argv, error, words):
    with pytest.raises(error, match=words):
        tracer.run(argv)


def test_files_that_are_not_programs(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(tracer.NotExecutable, match="not executable: chmod \\+x"):
        tracer.run([str(text)])
    text.chmod(0o755)
    with pytest.raises(tracer.NotExecutable, match="neither an ELF program nor a script"):
        tracer.run([str(text)])
    arm = tmp_path / "arm"
    arm.write_bytes(b"\x7fELF\x01\x01\x01" + bytes(9) + b"\x02\x00\x28\x00" + bytes(40))
    arm.chmod(0o755)
    with pytest.raises(tracer.NotExecutable, match="another machine"):
        tracer.run([str(arm)])
    x32 = tmp_path / "x32"
    x32.write_bytes(b"\x7fELF\x01\x01\x01" + bytes(9) + b"\x02\x00\x3e\x00" + bytes(40))
    x32.chmod(0o755)
    with pytest.raises(tracer.WrongWidth, match="x32"):
        tracer.run([str(x32)])
    script = tmp_path / "script"
    script.write_text("#!/no/such/shell\n")
    script.chmod(0o755)
    with pytest.raises(tracer.NotExecutable, match="interpreter /no/such/shell"):
        tracer.run([str(script)])


@pytest.mark.parametrize("kwargs, error, words", [
    ({"timeout": 0}, ValueError, "positive number of seconds"),
    ({"timeout": -1}, ValueError, "positive number of seconds"),
    ({"timeout": math.nan}, ValueError, "positive number of seconds"),
    ({"timeout": math.inf}, ValueError, "positive number of seconds"),
    ({"timeout": "1"}, TypeError, "number of seconds"),
    ({"timeout": True}, TypeError, "number of seconds"),
    ({"grace": -1}, ValueError, "non-negative"),
    ({"max_processes": 0}, ValueError, "max_processes"),
    ({"max_calls": 1.5}, TypeError, "max_calls"),
    ({"capture": 1}, TypeError, "capture"),
    ({"env": ["A=1"]}, TypeError, "env must be a mapping"),
    ({"env": {"A=B": "1"}}, ValueError, "not a usable variable"),
    ({"cwd": "/no/such/dir"}, ValueError, "not a directory"),
    ({"adversary": "sideways"}, tracer.AdversarySpecError, "not an adversary"),
])
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        tracer.run(["true"], **kwargs)


REFUSE_PTRACE = textwrap.dedent("""
    import errno, sys
    from arena import tracer
    from arena.tracer import _seccomp as S
    # ptrace (x86-64: 101, i386: 26) answers EPERM, as under a container's seccomp profile.
    nr = 101 if sys.maxsize > 2**32 else 26
    S.install(S.assemble([S.load(S.NR), S.jeq(nr, "no"), S.ret(S.RET_ALLOW), "no", S.ret(S.RET_ERRNO | errno.EPERM)]))
    try:
        tracer.run(["true"])
    except tracer.PtraceRefused as exc:
        print("refused:", exc)
    """)


def test_ptrace_refused_is_explained():
    r = subprocess.run([sys.executable, "-c", REFUSE_PTRACE], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("refused: ")
    assert "kernel.yama.ptrace_scope" in r.stdout and "--cap-add SYS_PTRACE" in r.stdout
    assert len(r.stdout.strip().splitlines()) == 1


CALLER = textwrap.dedent("""
    import sys
    from arena import tracer
    try:
        tracer.run([sys.argv[1]], timeout=60)
    except tracer.TracerFailed as exc:
        print("tracer failed:", exc, flush=True)
    """)


def _descendants(pid):
    from tracees import descendants  # imported after pytest registered it (pytest_plugins), so it is rewritten
    return descendants(pid)


def _leftovers(before):
    from tracees import leftovers
    return leftovers(before)


def _find(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("not found in time")


def _subreaper():
    """Make this process a child subreaper (what init is for a real system), so that orphans come back here."""
    from arena.tracer import _ptrace
    _ptrace.prctl(_ptrace.PR_SET_CHILD_SUBREAPER, 1)


def _reap_orphans(pids, timeout=5.0):
    """Wait until ``pids`` are gone, reaping those that came back to this process; say which remain."""
    deadline = time.monotonic() + timeout
    remaining = set(pids)
    while remaining and time.monotonic() < deadline:
        for pid in list(remaining):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid if not os.path.exists(f"/proc/{pid}") else 0
            if done:
                remaining.discard(pid)
        time.sleep(0.02)
    return remaining


@pytest.mark.parametrize("victim", ["tracer", "caller"])
def test_killing_the_tracer_or_its_caller_kills_the_program(build, victim):
    from arena.tracer import _ptrace
    program = build("ignore_term")
    _subreaper()
    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(program)], stdout=subprocess.PIPE, text=True)
    try:
        # The program is running once it has exec'd (until then it is a copy of the tracer, its parent).
        tracee = _find(lambda: [p for p in _descendants(caller.pid) if _comm(p) == program.name[:15]])[0]
        tracer_pid = _ppid(tracee)
        os.kill(tracer_pid if victim == "tracer" else caller.pid, signal.SIGKILL)
        caller.wait(timeout=30)
        out = caller.stdout.read()
        caller.stdout.close()
        if victim == "tracer":
            assert "tracer failed: the tracer process ended (killed by signal 9) without reporting" in out
        assert not _reap_orphans({tracer_pid, tracee}), "the program outlived its tracer"
    finally:
        caller.kill()
        caller.wait()
        _ptrace.prctl(_ptrace.PR_SET_CHILD_SUBREAPER, 0)


def _ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


# Python keeps SIGINT ignored if it started so (the suite run by a command started with &, whose
# children inherit that): the caller takes Ctrl-C as from a terminal, whatever started the suite.
INTERRUPTED = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from arena import tracer
    try:
        tracer.run([sys.argv[1]])
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    """)


def test_ctrl_c_in_the_caller_kills_the_program(build):
    _subreaper()
    from arena.tracer import _ptrace
    program = build("ignore_term")
    caller = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(program)], stdout=subprocess.PIPE, text=True)
    try:
        tracee = _find(lambda: [p for p in _descendants(caller.pid) if _comm(p) == program.name[:15]])[0]
        os.kill(caller.pid, signal.SIGINT)
        assert caller.wait(timeout=30) == 0
        assert caller.stdout.read().endswith("interrupted\n")
        caller.stdout.close()
        assert not _reap_orphans({tracee})
    finally:
        caller.kill()
        caller.wait()
        _ptrace.prctl(_ptrace.PR_SET_CHILD_SUBREAPER, 0)


def test_other_children_of_the_caller_keep_their_exit_status(build):
    # The caller's own child, ending while a traced run is under way, is reaped by its owner, not by the tracer.
    results = []
    worker = threading.Thread(target=lambda: results.append(subprocess.run(["sh", "-c", "sleep 0.3; exit 5"]).returncode))
    worker.start()
    o = tracer.run([str(build("mapper")), "-t", "2"], capture=True, timeout=60)
    worker.join()
    assert results == [5] and o.exit_status == 0


def test_run_from_a_thread(build):
    out = []
    t = threading.Thread(target=lambda: out.append(tracer.run(["sh", "-c", "echo hi"], capture=True, timeout=60)))
    t.start()
    t.join()
    assert out[0].stdout == b"hi\n"


def test_adversary_errors_stop_the_run(build):
    class Broken(tracer.Adversary):
        def decide(self, call, space):
            raise RuntimeError("broken on purpose")

    with pytest.raises(tracer.AdversaryError, match="raised RuntimeError: broken on purpose at call #") as info:
        tracer.run([str(build("mapper")), "-t", "2"], Broken(), capture=True, timeout=60)
    assert info.value.outcome.signal == signal.SIGKILL

    class Junk(tracer.Adversary):
        def decide(self, call, space):
            return "move it"

    with pytest.raises(tracer.AdversaryError, match="not a Decision"):
        tracer.run([str(build("mapper"))], Junk(), capture=True, timeout=60)

    class Unaligned(tracer.Adversary):
        def decide(self, call, space):
            return tracer.Decision("move", 0x1234)

    with pytest.raises(tracer.AdversaryError, match="not a page-aligned address"):
        tracer.run([str(build("mapper"))], Unaligned(), capture=True, timeout=60)


def test_the_leftover_check_can_fail(build):
    # The fixture's check is real: a stopped child of this process is seen.
    before = set(os.listdir("/proc"))
    child = subprocess.Popen([str(build("ignore_term"))], stdout=subprocess.DEVNULL)
    try:
        _find(lambda: _comm(child.pid) == build("ignore_term").name[:15])
        assert any(str(child.pid) in line for line in _leftovers({int(p) for p in before if p.isdigit()}))
    finally:
        child.kill()
        child.wait()


def test_a_failing_tracer_kills_and_reaps_the_program(build, monkeypatch):
    from arena.tracer import tracing

    def broken(self, tid, th):
        raise KeyError("a bug in the tracer")

    monkeypatch.setattr(tracing.Tracer, "_exit_stop", broken)
    with pytest.raises(tracer.TracerFailed, match=r"the tracer failed \(KeyError: 'a bug in the tracer', at test_tracer.py"):
        tracer.run([str(build("mapper")), "-t", "2", "-f"], capture=True, timeout=60)


SIGCHLD_IGNORED = textwrap.dedent("""
    import signal, sys
    from arena import tracer
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    o = tracer.run(["/bin/sh", "-c", "exit 3"], capture=True, timeout=60)
    print(o.exit_status, len(o.calls) > 0)
    """)


def test_a_caller_that_ignores_sigchld():
    # The kernel reaps its (untraced) tracer for it, so run() cannot wait for it: the report still counts. The
    # program's processes are traced, and a traced process is never reaped that way: the tracer sees each end.
    r = subprocess.run([sys.executable, "-c", SIGCHLD_IGNORED], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "3 True\n", "")


def tiny_x86_64_program(path):
    """A static x86-64 ELF of 129 bytes that exits with status 0 at once (it makes no other call)."""
    import struct
    code = bytes.fromhex("31ff" "b83c000000" "0f05")  # xor edi, edi; mov eax, 60 (exit); syscall
    size = 64 + 56 + len(code)
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 2, 0x3E, 1, 0x400000 + 120, 64, 0, 0,
                         64, 56, 1, 0, 0, 0)
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, size, size, 0x1000)
    path.write_bytes(header + segment + code)
    path.chmod(0o755)
    return path


def test_64_bit_programs_and_a_32_bit_tracer(tmp_path):
    tiny = str(tiny_x86_64_program(tmp_path / "tiny64"))
    if sysmem.NATIVE_BITS == 64:
        o = tracer.run([tiny], timeout=60)
        assert (o.exit_status, o.calls, o.bits) == (0, [], 64)
        return
    with pytest.raises(tracer.WrongWidth, match="64-bit program and this Python is 32-bit"):
        tracer.run([tiny])
    # Started by a 32-bit program, it is caught at its exec: everything is killed, and the outcome says why.
    o = tracer.run(["/bin/sh", "-c", f"{tiny}; exit 0"], capture=True, timeout=60)
    assert o.failed and o.stopped and "started a 64-bit program" in o.stopped and tiny in o.stopped


def test_runs_leave_no_open_files(build):
    class Broken(tracer.Adversary):
        def decide(self, call, space):
            raise RuntimeError("broken")

    def fds():
        return sorted(os.listdir("/proc/self/fd"))

    before = fds()
    for capture in (False, True):
        tracer.run(["/bin/true"], capture=capture, timeout=60)
        with pytest.raises(tracer.AdversaryError):
            tracer.run(["/bin/true"], Broken(), capture=capture, timeout=60)
        tracer.run([str(build("ignore_term"))], capture=capture, timeout=0.2, grace=0.1)
    assert fds() == before


def test_runs_from_several_threads_at_once(build):
    results = {}

    def one(k):
        results[k] = tracer.run(["/bin/sh", "-c", f"sleep 0.3; echo {k}"], capture=True, timeout=60)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each run ends when its program does: no run waits for another's tracer to let go of its pipes.
    assert time.monotonic() - start < 5
    assert {k: o.stdout for k, o in results.items()} == {k: f"{k}\n".encode() for k in range(4)}


def test_without_pidfd(monkeypatch):
    def unavailable(pid, flags=0):
        raise OSError(errno.ENOSYS, "pidfd_open")

    monkeypatch.setattr(os, "pidfd_open", unavailable)
    o = tracer.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 4"], capture=True, timeout=60)
    assert (o.exit_status, o.stdout, o.stderr) == (4, b"out\n", b"err\n")


SIGNALS_KEPT = textwrap.dedent("""
    import signal, sys
    from arena import tracer
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGALRM})
    o = tracer.run(["/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"], capture=True, timeout=60)
    print(o.stdout.decode(), end="")
    slow = tracer.run(["/bin/sleep", "10"], timeout=0.3)
    print("timed out", slow.timed_out)
    """)


def test_the_program_starts_with_the_callers_signals():
    # As under subprocess: the caller's mask and ignored SIGINT are the program's; the timeout still works.
    r = subprocess.run([sys.executable, "-c", SIGNALS_KEPT], capture_output=True, text=True, timeout=60)
    lines = dict(line.split(":\t") for line in r.stdout.splitlines() if ":\t" in line)
    blocked, ignored = int(lines["SigBlk"], 16), int(lines["SigIgn"], 16)
    assert blocked & (1 << (signal.SIGUSR1 - 1)) and blocked & (1 << (signal.SIGALRM - 1))
    assert ignored & (1 << (signal.SIGINT - 1)) and not ignored & (1 << (signal.SIGPIPE - 1))
    assert r.stdout.endswith("timed out True\n"), r.stderr
