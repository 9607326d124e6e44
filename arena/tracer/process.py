"""``run``: run a real program with its mmap answers decided by an adversary, from the caller's side.

The caller forks a tracer process for the run (``tracing``), streams the
program's output (captured, or passed through with stderr teed so the fatal
line can be found), and reads the tracer's report from a pipe. Only the
tracer waits on the program's processes, so the caller's other children
(a test runner's, a thread's ``subprocess``) are never reaped by mistake.
"""
from __future__ import annotations

import errno
import gc
import json
import os
import selectors
import signal
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from . import _ptrace as P
from . import arguments
from .adversaries import Adversary
from .calls import Call, Record
from .errors import AdversaryError, NotExecutable, ProgramError, ProgramNotFound, PtraceRefused, TracerFailed
from .outcome import Outcome
from .output import Capture, FatalScanner
from .program import Program, find, sha256
from .record import MAX_CALLS
from .spec import resolve
from .tracing import Settings, StartFailed, Tracer

CAPTURE_LIMIT = 16 << 20
# After the tracer has reported, output still in flight gets this long to arrive.
_DRAIN = 1.0
# Past timeout + grace, the tracer itself gets this long before it is killed (and the program with it).
_BACKSTOP = 30.0
# The descriptors of the runs under way in this process. A tracer forked by one run closes the others' (run()
# from several threads): a copy of another run's pipe would hold back that run's end of output.
_OPEN: set[int] = set()
_OPEN_LOCK = threading.Lock()


def run(argv: Sequence[str | os.PathLike[str]], adversary: Adversary | str | None = None, *,
        env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
        timeout: float | None = None, capture: bool = False, grace: float = 2.0,
        max_processes: int = 128, max_calls: int = MAX_CALLS, capture_limit: int = CAPTURE_LIMIT,
        executable: str | os.PathLike[str] | None = None) -> Outcome:
    """Run ``argv`` to its end with every mmap-family call traced and the adjustable ones decided by ``adversary``.

    ``adversary``: an ``Adversary``, a spec (``"displace,by=12K"``,
    ``"module:attr"``; see ``arena.tracer.adversaries``) or None (observe).
    ``env``: the program's environment (default: this process's); ``cwd``:
    its working directory. ``timeout`` (seconds, None for none): then every
    traced process gets SIGTERM, ``grace`` seconds more, then SIGKILL; the
    outcome says ``timed_out``. More than ``max_processes`` processes at once
    kills the program (``stopped`` says so). ``capture``: stdout and stderr
    are returned (the first ``capture_limit`` bytes of each) instead of
    passed through; stderr is read either way, for the fatal line. The
    first ``max_calls`` calls are recorded, the rest counted. When the
    program's first process ends, any of its processes still running are
    killed (``Outcome.leftovers``). stdin is inherited. ``executable``: the
    file to run, when it is not ``argv[0]`` (which the program then still
    sees as its name).

    Raises ``TypeError``/``ValueError`` for a bad argument (empty argv, a
    timeout that is not a positive number, ...), ``AdversarySpecError`` for a
    bad spec, ``ProgramNotFound``, ``NotExecutable``, ``SetuidProgram``,
    ``WrongWidth`` (see ``arena.tracer.program``), ``PtraceRefused`` when the
    kernel forbids tracing, ``AdversaryError`` when the adversary raised or
    returned a bad decision (the program is killed; ``exc.outcome`` holds the
    run so far), ``TracerFailed`` if the tracer process itself failed.
    """
    args = arguments.argv(argv)
    adv = resolve(adversary)
    spec = adversary.strip() if isinstance(adversary, str) else adv.name
    environ = arguments.env(env)
    where = arguments.cwd(cwd)
    limit = arguments.seconds("timeout", timeout, allow_zero=False)
    grace_s = arguments.seconds("grace", grace, allow_zero=True)
    assert grace_s is not None
    if not isinstance(capture, bool):
        raise TypeError(f"capture must be True or False, got {capture!r}")
    procs = arguments.count("max_processes", max_processes, 1, 1 << 22)
    calls = arguments.count("max_calls", max_calls, 0, MAX_CALLS)
    cap = arguments.count("capture_limit", capture_limit, 0, 1 << 40)
    program = find(args[0] if executable is None else arguments.path("executable", executable), where, environ)

    # Opened now, hashed while the program runs: what ran, even if the program deletes or replaces its file.
    try:
        exe_fd = os.open(program.path, os.O_RDONLY)
    except OSError as exc:
        raise NotExecutable(f"{program.path}: cannot be read ({exc.strerror}): check its permissions") from None
    caller = os.getpid()
    mask = {int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])}
    sigint_ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    with _OPEN_LOCK:
        fds: list[int] = [exe_fd]
        try:
            result_r, result_w = os.pipe()
            fds += (result_r, result_w)
            err_r, err_w = os.pipe()
            fds += (err_r, err_w)
            out_r, out_w = os.pipe() if capture else (None, None)
            fds += [fd for fd in (out_r, out_w) if fd is not None]
            pid = os.fork()
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        if pid == 0:
            settings = Settings(program, args, environ, where, limit, grace_s, procs, calls, out_w, err_w, mask,
                                sigint_ignored)
            keep = {result_w, err_w, out_w}
            _tracer_main(settings, adv, caller, result_w, sorted((_OPEN | set(fds)) - keep))
        for end in (result_w, err_w, out_w):
            if end is not None:
                os.close(end)
        ours = [fd for fd in (exe_fd, result_r, err_r, out_r) if fd is not None]
        _OPEN.update(ours)
    reaped = False
    try:
        # While the program runs: hashing a large program takes milliseconds.
        digest = sha256(exe_fd)
        backstop = None if limit is None else time.monotonic() + limit + grace_s + _BACKSTOP
        report, out, err, scanner = _collect(pid, result_r, err_r, out_r, capture, cap, backstop)
        status = _reap(pid)
        reaped = True
    finally:
        if not reaped:
            # Interrupted (Ctrl-C) or failed: the tracer's death kills the program (EXITKILL).
            _kill_quietly(pid)
            _reap(pid)
        with _OPEN_LOCK:
            _OPEN.difference_update(ours)
            for fd in ours:
                os.close(fd)
    if report is None:
        raise TracerFailed(f"the tracer process ended ({_how(status)}) without reporting; the program was killed with it")
    if "start_failed" in report:
        kind, code = report["start_failed"]
        raise _start_error(kind, code, program, where)
    # A tracer that failed reports no run; one that stopped the run for an adversary's error reports it.
    outcome = _outcome(report, program, digest, args, spec, capture, out, err, scanner) if "calls" in report else None
    error = report.get("error")
    if error:
        cls = AdversaryError if error["type"] == AdversaryError.__name__ else TracerFailed
        raise cls(error["message"], outcome)
    assert outcome is not None
    return outcome


def _tracer_main(settings: Settings, adversary: Adversary, caller: int, result_w: int, others: list[int]) -> None:
    """The tracer process: trace, report on ``result_w``, exit. Never returns."""
    report: dict[str, Any]
    try:
        # The caller's objects are left to the caller: a collection here would touch (and so copy) its whole heap.
        gc.freeze()
        for fd in others:
            os.close(fd)
        P.prctl(P.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != caller:
            os._exit(1)  # the caller is already gone
        P.prctl(P.PR_SET_CHILD_SUBREAPER, 1)
        # Ctrl-C reaches the program (and the caller, which then kills this process): not this loop.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # The timeout's timer must reach this loop, whatever the calling thread blocked.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        report = Tracer(settings, adversary).run()
    except StartFailed as exc:
        report = {"start_failed": [exc.kind, exc.errno]}
    except BaseException as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        report = {"error": {"type": TracerFailed.__name__,
                            "message": f"the tracer failed ({type(exc).__name__}: {exc}, at {os.path.basename(where.filename)}:"
                                       f"{where.lineno}); the program was killed: please report this"}}
    try:
        data = json.dumps(report).encode()
        while data:
            data = data[os.write(result_w, data):]
    finally:
        os._exit(0)


def _collect(pid: int, result_r: int, err_r: int, out_r: int | None, capture: bool, limit: int,
             backstop: float | None) -> tuple[dict[str, Any] | None, Capture | None, Capture | None, FatalScanner]:
    """Read the report and the program's output until the tracer has ended and the output with it.

    The tracer's end is watched through a pidfd, not only through the end of
    its pipe: a process forked meanwhile by another thread of the caller holds
    copies of the pipes, and their end would wait for it.
    """
    scanner = FatalScanner()
    out = Capture(limit) if capture else None
    err = Capture(limit) if capture else None
    report = bytearray()
    sel = selectors.DefaultSelector()
    for fd in (result_r, err_r, out_r):
        if fd is not None:
            sel.register(fd, selectors.EVENT_READ)
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except OSError:
        pidfd = None  # before Linux 5.3: the end of the report's pipe says the tracer is done
    if pidfd is not None:
        sel.register(pidfd, selectors.EVENT_READ)
    drain_until: float | None = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if drain_until is not None and now >= drain_until:
                break
            if backstop is not None and now >= backstop:
                _kill_quietly(pid)
                backstop = None
            wait = [t - now for t in (drain_until, backstop) if t is not None]
            for key, _ in sel.select(max(min(wait), 0) if wait else None):
                fd = key.fd
                if fd not in sel.get_map():
                    continue  # the report's pipe, read to its end when the tracer's end came in the same batch
                if fd == pidfd:
                    # The tracer has ended: the rest of its report is in the pipe (it wrote all before exiting).
                    sel.unregister(pidfd)
                    if result_r in sel.get_map():
                        sel.unregister(result_r)
                        report += _rest(result_r)
                    drain_until = time.monotonic() + _DRAIN
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    sel.unregister(fd)
                    if fd == result_r and pidfd is None:
                        drain_until = time.monotonic() + _DRAIN
                elif fd == result_r:
                    report += chunk
                elif fd == err_r:
                    scanner.feed(chunk)
                    if err is not None:
                        err.feed(chunk)
                    else:
                        _tee(chunk)
                elif out is not None:
                    out.feed(chunk)
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
    return (json.loads(report) if report else None), out, err, scanner


def _rest(fd: int) -> bytes:
    """What is left in the pipe ``fd`` now, without waiting for its writers (which may never close it)."""
    os.set_blocking(fd, False)
    parts = []
    try:
        while chunk := os.read(fd, 1 << 16):
            parts.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(parts)


def _tee(chunk: bytes) -> None:
    try:
        while chunk:
            chunk = chunk[os.write(2, chunk):]
    except OSError:
        pass  # our own stderr is closed or broken: the program's output is still scanned


def _reap(pid: int) -> int:
    """The tracer's wait status; 0 if it was reaped by someone else (SIGCHLD ignored, a child watcher calling
    waitpid(-1)): its report, read already, is what counts."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 0


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"status {os.WEXITSTATUS(status)}"


def _outcome(report: dict[str, Any], program: Program, digest: str, argv: list[str], spec: str, capture: bool,
             out: Capture | None, err: Capture | None, scanner: FatalScanner) -> Outcome:
    records = [Record(Call(*row[:13]), row[13], row[14], row[15]) for row in report["calls"]]
    return Outcome(
        argv=argv, executable=program.path, sha256=digest, bits=program.bits, adversary=spec,
        exit_status=report["exit_status"], signal=report["signal"], timed_out=report["timed_out"],
        stopped=report["stopped"], wall_time=report["wall_time"], processes=report["processes"],
        leftovers=report["leftovers"], calls=records, calls_dropped=report["calls_dropped"],
        fatal=scanner.line(), notes=report["notes"],
        stdout=out.value() if out else None, stderr=err.value() if err else None,
        output_dropped=sum(c.dropped for c in (out, err) if c is not None),
    )


def _traced_by() -> int:
    """The pid tracing this process (strace -f, gdb), 0 if none: its children cannot be traced by us."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _start_error(kind: str, code: int, program: Program, cwd: str | None) -> Exception:
    reason = os.strerror(code) if code else "unknown reason"
    if kind == "ptrace" and code == errno.EPERM and (tracer := _traced_by()):
        return PtraceRefused(
            f"this process is itself being traced (by pid {tracer}: strace, gdb or another tracer), and a traced "
            "process's child cannot be traced again: run it without that tracer")
    if kind == "ptrace" and code == errno.EPERM:
        return PtraceRefused(
            "the kernel refused to let the tracer trace its own child (ptrace: Operation not permitted): "
            "allow it with `sysctl kernel.yama.ptrace_scope=1` (or 0), or in Docker run with --cap-add SYS_PTRACE")
    if kind == "chdir":
        return ProgramError(f"cannot enter {cwd} ({reason}): give an existing directory as cwd")
    if kind == "exec":
        if code == errno.ENOENT:
            need = " (a 32-bit program needs the i386 C library: apt-get install libc6-i386)" if program.bits == 32 else ""
            return ProgramNotFound(f"{program.path} could not be started (No such file or directory): "
                                   f"its ELF interpreter or #! interpreter is missing{need}")
        if code in (errno.EACCES, errno.ENOEXEC, errno.ETXTBSY):
            return NotExecutable(f"{program.path} could not be started ({reason}): check its permissions, "
                                 "its format and that its file system allows exec")
        if code == errno.E2BIG:
            return ProgramError("the arguments and environment are too long for the kernel: shorten them")
    if kind == "seccomp":
        return TracerFailed(f"the kernel refused the tracer's seccomp filter ({reason}): the tracer needs seccomp "
                            "filters (CONFIG_SECCOMP_FILTER), which a container's profile may forbid")
    return TracerFailed(f"the program could not be started: {kind} failed ({reason})")
