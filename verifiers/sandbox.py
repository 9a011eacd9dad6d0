"""The sandbox pool: verifiers run in warm, killable worker processes with rlimits and a deadline.

Each worker is a process forked from a *zygote* that has already imported the verifiers (a
restart costs milliseconds, not an interpreter start). Every worker has a supervisor thread in
the parent that takes items from a shared queue, sends them down the worker's socket
(length-prefixed frames: a pickle going in, JSON coming back, so that nothing a worker sends is
ever unpickled by the parent) and waits for each answer with ``poll(timeout)``. While an item
runs and no other worker is idle, the supervisor already sends the next few queued ones
(``_PIPELINE_DEPTH``), so the worker goes from one to the next without waiting for a round
trip through the supervisor. If
the running item is still busy after ``_STEAL_AFTER_S``, the items behind it go back to the
shared queue for the other workers (the worker is told to skip them), so a slow item never
holds up others. Each item's deadline counts from when the worker starts it. An item
that passes its deadline gets its worker SIGKILLed and replaced; a worker that dies mid-item
(segfault, OOM kill, ``os._exit``, an external ``kill -9``) is replaced the same way. Either way
only that one item fails, with ``reward 0, correct false, error "timeout after 3.0s"`` or
``"worker crashed (exit code -9)"`` and ``details.sandbox`` set; the item is not retried (a
deterministic crasher would otherwise take down worker after worker). The other items keep
flowing through the other workers, each bounded by its own deadline.

What a worker runs under (see `_restrict`): its own network namespace (no network, not even
loopback) where the kernel allows it, ``RLIMIT_AS`` (memory), ``RLIMIT_NPROC=0`` (no fork, no
exec: ``os.system`` fails) for a non-root user or a root one inside its new user namespace,
``RLIMIT_FSIZE=0`` (cannot write file contents), ``RLIMIT_NOFILE``, no core dumps and
``PR_SET_NO_NEW_PRIVS``. It does not isolate the file system for reading, nor signals to
processes of the same user; the verifiers never evaluate model text, and these limits are a
second line of defence, not the first.

Sync API: ``pool.verify(...)``, ``pool.map(requests)``; asyncio API: ``await pool.run(requests)``,
``await pool.run_one(request)``, ``pool.submit_async(...)``; all submit into the same queue, so many
items run concurrently. Asyncio callers get plain asyncio futures, resolved with one
``call_soon_threadsafe`` each, not ``concurrent.futures`` wrapped into asyncio ones.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import ctypes
import gc
import importlib
import json
import logging
import math
import os
import pickle
import platform
import queue
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from verifiers.schemas import VerifyRequest, VerifyResult

log = logging.getLogger(__name__)

# Hooks the service turns into Prometheus counters: ("timeout" | "crash" | "restart", verifier).
EventHook = Callable[[str, str], None]

_STOP = object()
_READY_TIMEOUT_S = 120.0  # a cold zygote imports sympy & co. on a loaded 2-core machine
_HELLO_TIMEOUT_S = 30.0
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_NO_NEW_PRIVS = 38
_memory_mb = 0  # a worker's RLIMIT_AS, for its out-of-memory message
_HEADER = struct.Struct("!I")
_PIPELINE_DEPTH = 4  # items sent to a worker ahead of its answers (the running one included)
_PIPELINE_MAX_BYTES = 64 * 1024  # larger items wait for an idle worker: a send must not block
_STEAL_AFTER_S = 0.05  # a running item this old hands the items queued behind it to others
# A result is a few hundred bytes; a larger frame from a worker means a broken (or subverted)
# worker, not a result to buffer.
_MAX_RESULT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class WorkerInfo:
    """A snapshot of one worker: its pid and the item it is running, if any."""

    slot: int
    pid: int | None
    alive: bool
    busy_verifier: str | None
    busy_for_s: float | None


@dataclass
class _Job:
    """One queued item and where its result goes: a concurrent future, or an asyncio one."""

    verifier: str
    response: Any
    reference: Any
    options: dict[str, Any]
    timeout_s: float
    future: concurrent.futures.Future[VerifyResult] | asyncio.Future[VerifyResult]
    loop: asyncio.AbstractEventLoop | None = None  # set for an asyncio future
    claimed: bool = False  # taken by a worker once (it may come back to the queue, unrun)

    def claim(self) -> bool:
        """Mark the item as taken by a worker; False if its caller cancelled it meanwhile."""
        if self.claimed:
            return True
        self.claimed = True
        if self.loop is None:
            assert isinstance(self.future, concurrent.futures.Future)
            return self.future.set_running_or_notify_cancel()
        return not self.future.cancelled()  # read from another thread: at worst one wasted run

    def deliver(self, result: VerifyResult) -> None:
        if self.loop is None:
            assert isinstance(self.future, concurrent.futures.Future)
            self.future.set_result(result)
            return
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future, result)
        except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
            pass


def _resolve(future: asyncio.Future[VerifyResult], result: VerifyResult) -> None:
    if not future.done():
        future.set_result(result)


class _Channel:
    """Length-prefixed frames over a stream socket, read with an optional deadline."""

    def __init__(self, sock: socket.socket, max_frame: int = 0xFFFFFFFF):
        self.sock = sock
        self.max_frame = max_frame
        self.buf = bytearray()
        self._poller: select.poll | None = None

    def send(self, payload: bytes) -> None:
        self.sock.sendall(_HEADER.pack(len(payload)) + payload)

    def _frame(self) -> bytes | None:
        if len(self.buf) < _HEADER.size:
            return None
        (n,) = _HEADER.unpack_from(self.buf)
        if n > self.max_frame:
            raise EOFError(f"frame of {n} bytes (limit {self.max_frame})")
        end = _HEADER.size + n
        if len(self.buf) < end:
            return None
        frame = bytes(self.buf[_HEADER.size : end])
        del self.buf[:end]
        return frame

    def recv(self, timeout_s: float | None) -> bytes | None:
        """The next frame; None if ``timeout_s`` passes first; EOFError when the peer is gone."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            frame = self._frame()
            if frame is not None:
                return frame
            if deadline is not None:
                if self._poller is None:
                    self._poller = select.poll()
                    self._poller.register(self.sock.fileno(), select.POLLIN)
                left = deadline - time.monotonic()
                if left <= 0 or not self._poller.poll(math.ceil(left * 1000)):
                    return None
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("peer closed the connection")
            self.buf += chunk

    def recv_ready(self, block: bool) -> list[bytes]:
        """Every complete frame available now; with ``block``, wait for at least one first."""
        frames = []
        if block:
            first = self.recv(None)
            assert first is not None
            frames.append(first)
        while True:
            try:
                chunk = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            if not chunk:
                raise EOFError("peer closed the connection")
            self.buf += chunk
        while (frame := self._frame()) is not None:
            frames.append(frame)
        return frames

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- worker side


def _restrict(memory_mb: int, isolate_network: bool) -> dict[str, str]:
    """Drop what a verifier never needs; returns what was applied (reported at start)."""
    applied: dict[str, str] = {}
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    if isolate_network and libc is not None:
        # A new user namespace makes the unshare legal without privileges (and strips a root
        # worker of its capabilities outside it); the new network namespace has no interfaces up.
        if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
            applied["network"] = "isolated"
        else:
            applied["network"] = f"not isolated ({os.strerror(ctypes.get_errno())})"
    else:
        applied["network"] = "not isolated (disabled)"
    if libc is not None and libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
        applied["no_new_privs"] = "yes"
        applied["exec"] = _deny_exec(libc)
    limits = {
        "RLIMIT_AS": memory_mb * 1024 * 1024,
        "RLIMIT_NPROC": 0,  # no effect for root, hence the seccomp filter above
        "RLIMIT_FSIZE": 0,
        "RLIMIT_NOFILE": 256,
        "RLIMIT_CORE": 0,
    }
    for name, value in limits.items():
        res = getattr(resource, name, None)
        if res is None:
            continue
        try:
            resource.setrlimit(res, (value, value))
            applied[name] = str(value)
        except (ValueError, OSError) as e:
            applied[name] = f"not set ({e})"
    return applied


# (AUDIT_ARCH, execve, execveat) syscall numbers per machine.
_EXEC_SYSCALLS = {"x86_64": (0xC000003E, 59, 322), "aarch64": (0xC00000B7, 221, 281)}


def _deny_exec(libc: ctypes.CDLL) -> str:
    """A seccomp filter that fails execve/execveat with EPERM: no shell, no program, even as root."""
    arch = _EXEC_SYSCALLS.get(platform.machine())
    if arch is None:
        return f"allowed (no seccomp filter for {platform.machine()})"
    audit_arch, nr_execve, nr_execveat = arch
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    prog = [  # (code, jt, jf, k); seccomp_data: nr at offset 0, arch at offset 4
        (ld_abs, 0, 0, 4),
        (jeq, 0, 5, audit_arch),  # another ABI (e.g. i386 via int 0x80): deny
        (ld_abs, 0, 0, 0),
        (jge, 3, 0, 0x40000000),  # the x32 ABI: deny
        (jeq, 2, 0, nr_execve),
        (jeq, 1, 0, nr_execveat),
        (ret, 0, 0, allow),
        (ret, 0, 0, deny),
    ]

    class SockFilter(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_ushort),
            ("jt", ctypes.c_ubyte),
            ("jf", ctypes.c_ubyte),
            ("k", ctypes.c_uint),
        ]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    filters = (SockFilter * len(prog))(*[SockFilter(*ins) for ins in prog])
    fprog = SockFprog(len(prog), filters)
    # prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
        return f"allowed (seccomp: {os.strerror(ctypes.get_errno())})"
    return "denied"


def json_safe(obj: Any, depth: int = 0) -> Any:
    """Details as plain JSON: non-finite floats become None, unknown objects their str()."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if depth > 20:
        return str(obj)[:200]
    if isinstance(obj, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v, depth + 1) for v in obj]
    return str(obj)[:200]


def _run_item(verifier: str, response: Any, reference: Any, options: Any) -> dict[str, Any]:
    from verifiers import registry

    try:
        result = registry.verify(verifier, response, reference, options)
    except registry.UnknownVerifierError as e:
        result = VerifyResult.failure(verifier, str(e))
    except MemoryError:
        result = VerifyResult.failure(
            verifier, f"out of memory (limit {_memory_mb} MB)", sandbox="memory"
        )
    except BaseException as e:  # noqa: BLE001 - SystemExit/MemoryError inside a verifier: report it
        result = VerifyResult.failure(verifier, f"{type(e).__name__}: {e}"[:500])
    if result.error is not None and result.error.startswith("MemoryError"):
        # registry.verify reports a verifier's MemoryError as-is; say which limit it hit
        result = VerifyResult.failure(
            verifier, f"out of memory (limit {_memory_mb} MB)", sandbox="memory"
        )
    out = result.model_dump()
    out["details"] = json_safe(out["details"])
    return out


def _encode_result(out: dict[str, Any], verifier: str) -> bytes:
    """A result as ASCII JSON (lone surrogates travel as escapes); a failure if it cannot be."""
    try:
        return json.dumps(out, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    except Exception as e:  # noqa: BLE001 - json_safe makes this unreachable in practice
        failure = VerifyResult.failure(verifier, f"result not serialisable: {e}"[:500])
        return json.dumps(failure.model_dump(), ensure_ascii=True).encode("ascii")


def _worker_loop(sock: socket.socket, memory_mb: int, isolate_network: bool) -> None:
    """A forked worker: restrict itself, say hello, then answer items until EOF or ``None``."""
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # a stray print() must not hit RLIMIT_FSIZE on a redirected stdout
    global _memory_mb
    _memory_mb = memory_mb
    applied = _restrict(memory_mb, isolate_network)
    chan = _Channel(sock)
    chan.send(json.dumps({"pid": os.getpid(), "applied": applied}).encode())
    pending: collections.deque[tuple[Any, ...]] = collections.deque()
    skip_upto = -1
    while True:
        # Read what the parent sent (items, skips); wait only when there is nothing to run.
        # Reading before each item is what lets a "skip" overtake the items it names.
        try:
            frames = chan.recv_ready(block=not pending)
        except (EOFError, OSError):  # parent gone
            return
        for frame in frames:
            msg = pickle.loads(frame)  # from the parent: trusted
            if msg is None:
                return
            if msg[0] == "skip":
                skip_upto = max(skip_upto, msg[1])
            else:
                pending.append(msg)
        if not pending:
            continue
        _, seq, verifier, *args = pending.popleft()
        if seq <= skip_upto:  # handed to another worker meanwhile
            reply = b'{"seq":%d,"skipped":true}' % seq
        else:
            try:
                out = _run_item(verifier, *args)
            except BaseException as e:  # noqa: BLE001
                out = VerifyResult.failure(
                    str(verifier), f"{type(e).__name__}: {e}"[:500]
                ).model_dump()
            reply = b'{"seq":%d,"result":%s}' % (seq, _encode_result(out, str(verifier)))
        try:
            chan.send(reply)
        except OSError:
            return


def _zygote_main(cfg: dict[str, Any]) -> None:
    """The zygote: import the verifiers once, then fork a warm worker per request.

    Control messages are JSON over a SOCK_SEQPACKET pair; a fork request carries the worker's
    end of a fresh socket pair as an SCM_RIGHTS file descriptor. The zygote exits when the
    parent's end closes. It never starts threads, so forking it is safe.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    ctl = socket.socket(fileno=cfg["ctl_fd"])
    try:
        from verifiers import registry

        for mod in cfg["extra_modules"]:
            importlib.import_module(mod)
        registry.names()  # import the built-ins now, not in each worker
        # langdetect's profiles (~60 MB, ~0.4 s) load lazily; load them here so that every
        # forked worker shares one copy instead of paying for it on its first language check
        importlib.import_module("verifiers.ifeval.preload")
        # likewise sympy's lazily imported simplify machinery (~0.5 s on the first call)
        from verifiers.math_answer import warm_up

        warm_up()
    except BaseException as e:  # noqa: BLE001 - tell the parent why no worker can serve
        ctl.send(json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
        return
    # Move everything imported so far out of the collector's reach: a worker's full
    # collection would otherwise walk sympy & co. (~150 ms on a loaded core) in the middle of
    # an item, and the forked workers keep sharing those pages instead of touching them.
    gc.collect()
    gc.freeze()
    ctl.send(b'{"ready": true}')
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(ctl, 65536, 1)
        except OSError:
            return
        if not data:
            return
        cmd = json.loads(data)
        if cmd["op"] == "fork":
            pid = os.fork()
            if pid == 0:  # the worker
                code = 0
                try:
                    ctl.close()
                    _worker_loop(
                        socket.socket(fileno=fds[0]), cfg["memory_mb"], cfg["isolate_network"]
                    )
                except BaseException:  # noqa: BLE001
                    code = 1
                os._exit(code)
            for fd in fds:
                os.close(fd)
            reply: dict[str, Any] = {"pid": pid}
        elif cmd["op"] == "reap":
            reply = {"code": _reap(cmd["pid"])}
        else:
            reply = {"error": f"unknown op {cmd['op']!r}"}
        ctl.send(json.dumps(reply).encode())


def _reap(pid: int) -> int | None:
    """Wait (briefly) for a worker that is dying; its exit code, -N for signal N."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
        time.sleep(0.002)


# --------------------------------------------------------------------------- parent side


class _Zygote:
    """The parent's handle on the zygote process (started lazily, restarted if it dies)."""

    def __init__(self, memory_mb: int, isolate_network: bool, extra_modules: tuple[str, ...]):
        self.cfg = {
            "memory_mb": memory_mb,
            "isolate_network": isolate_network,
            "extra_modules": list(extra_modules),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctl: socket.socket | None = None
        self._pending: tuple[subprocess.Popen[bytes], socket.socket] | None = None
        self.lock = threading.Lock()

    def launch(self) -> None:
        """Start the zygote process without waiting for it (it imports the verifiers meanwhile)."""
        with self.lock:
            if self.ctl is None and self._pending is None:
                self._pending = self._spawn_process()

    def _spawn_process(self) -> tuple[subprocess.Popen[bytes], socket.socket]:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cfg = dict(self.cfg, ctl_fd=child.fileno())
        boot = (
            "import json, sys; cfg = json.loads(sys.argv[1]); sys.path[:0] = cfg['sys_path']; "
            "from verifiers.sandbox import _zygote_main; _zygote_main(cfg)"
        )
        cfg["sys_path"] = [p for p in sys.path if p]  # test-only verifier modules live on it
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"  # no BLAS thread pools: workers are forked and one item is one core
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", boot, json.dumps(cfg)],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        return proc, parent

    def _start(self) -> None:
        proc, parent = self._pending or self._spawn_process()
        self._pending = None
        parent.settimeout(_READY_TIMEOUT_S)
        try:
            hello = json.loads(parent.recv(65536) or b'{"error": "zygote exited"}')
        except (OSError, ValueError) as e:
            hello = {"error": f"{type(e).__name__}: {e}"}
        if "error" in hello:
            proc.kill()
            proc.wait()
            parent.close()
            raise RuntimeError(f"sandbox zygote failed to start: {hello['error']}")
        parent.settimeout(30.0)
        self.proc, self.ctl = proc, parent

    def _ask(self, msg: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        with self.lock:
            for attempt in (0, 1):
                if self.ctl is None:
                    self._start()
                assert self.ctl is not None
                try:
                    socket.send_fds(self.ctl, [json.dumps(msg).encode()], list(fds))
                    data = self.ctl.recv(65536)
                    if not data:
                        raise EOFError("zygote exited")
                    return json.loads(data)
                except (OSError, EOFError, ValueError) as e:
                    log.warning("sandbox zygote lost (%s); restarting it", e)
                    self._stop()
                    if (
                        attempt or msg["op"] == "reap"
                    ):  # a new zygote cannot reap the old one's child
                        raise RuntimeError(f"sandbox zygote unavailable: {e}") from e
        raise AssertionError("unreachable")

    def ensure_started(self) -> None:
        with self.lock:
            if self.ctl is None:
                self._start()

    def fork_worker(self) -> tuple[int, _Channel]:
        """A new warm worker: its pid and a channel to it."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            reply = self._ask({"op": "fork"}, [theirs.fileno()])
        finally:
            theirs.close()
        if "pid" not in reply:
            mine.close()
            raise RuntimeError(reply.get("error", "fork failed"))
        return reply["pid"], _Channel(mine, max_frame=_MAX_RESULT_BYTES)

    def reap(self, pid: int) -> int | None:
        """Collect a dead (or killed) worker; its exit code."""
        try:
            return self._ask({"op": "reap", "pid": pid}).get("code")
        except RuntimeError:
            return None

    def _stop(self) -> None:
        if self._pending is not None:  # launched, never awaited
            self.proc, self.ctl = self._pending
            self._pending = None
        if self.ctl is not None:
            self.ctl.close()  # the zygote exits on EOF
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.ctl, self.proc = None, None

    def close(self) -> None:
        with self.lock:
            self._stop()


@dataclass
class _Sent:
    """An item sent to a worker and not answered yet."""

    seq: int
    job: _Job
    ghost: bool = False  # handed back to the queue: whatever the worker answers is dropped


class _Slot:
    """One worker process and the supervisor thread that feeds it and enforces deadlines."""

    def __init__(self, pool: SandboxPool, index: int):
        self.pool = pool
        self.index = index
        self.pid: int | None = None
        self.chan: _Channel | None = None
        self.busy: tuple[str, float] | None = None
        self.ready = threading.Event()
        self.start_error: str | None = None
        self.inflight: collections.deque[_Sent] = collections.deque()
        self.started = 0.0  # when the worker began the head of `inflight`
        self.held: _Job | None = None  # too large to pipeline: sent when the worker is idle
        self.seq = 0
        self.stopping = False
        self.steal_after_s = min(_STEAL_AFTER_S, pool.timeout_s / 4)
        self.thread = threading.Thread(target=self._loop, name=f"sandbox-slot-{index}", daemon=True)

    # -- process management
    def _spawn(self) -> str | None:
        """Fork a worker from the zygote and wait for its hello; an error message on failure."""
        try:
            pid, chan = self.pool._zygote.fork_worker()
        except RuntimeError as e:
            return str(e)
        try:
            frame = chan.recv(_HELLO_TIMEOUT_S)
            if frame is None:
                raise TimeoutError(f"no hello after {_HELLO_TIMEOUT_S:.0f}s")
            applied = json.loads(frame)["applied"]
            isolation = {str(k): str(v) for k, v in applied.items()}
        except (
            EOFError,
            OSError,
            TimeoutError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
        ) as e:
            chan.close()
            _kill(pid)
            code = self.pool._zygote.reap(pid)
            return f"worker failed to start: {e or type(e).__name__} (exit code {code})"
        self.pid, self.chan = pid, chan
        self.pool.isolation = isolation
        return None

    def _discard(self) -> int | None:
        """Forget the current worker (killing it if it still runs); returns its exit code."""
        pid, chan = self.pid, self.chan
        self.pid, self.chan = None, None
        if chan is not None:
            chan.close()
        if pid is None:
            return None
        _kill(pid)
        return self.pool._zygote.reap(pid)

    def _restart(self, verifier: str) -> None:
        self._discard()
        err = self._spawn()
        self.pool._emit("restart", verifier)
        if err:
            log.error("sandbox worker %d could not restart: %s", self.index, err)

    # -- the supervisor loop
    def _loop(self) -> None:
        self.start_error = self._spawn()
        self.ready.set()
        while True:
            if not self.inflight:
                if self.held is not None:
                    job, self.held = self.held, None
                else:
                    if self.stopping:
                        break
                    job = self.pool._take()
                    if job is _STOP:
                        break
                    if not job.claim():
                        continue
                self._guarded(self._dispatch, job)
                if not self.inflight:
                    continue
            self._guarded(self._top_up)
            self._guarded(self._wait_for_answer)
        self._shutdown()

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        """Run one step; on a bug, fail what this worker holds and replace it."""
        try:
            step(*args)
        except Exception as e:  # noqa: BLE001 - never leave a future unresolved
            log.exception("sandbox slot %d failed", self.index)
            lost = [s.job for s in self.inflight if not s.ghost]
            lost += [a for a in args if isinstance(a, _Job) and all(a is not j for j in lost)]
            if self.held is not None:
                lost.append(self.held)
            self.inflight.clear()
            self.held = None
            self.busy = None
            for job in lost:
                job.deliver(
                    VerifyResult.failure(job.verifier, f"sandbox error: {e}", sandbox="error")
                )
            if not self.pool._closed:
                self._restart("")

    def _dispatch(self, job: _Job) -> None:
        """Send one item to the worker (spawning one if needed), or answer it with an error."""
        if self.chan is None:
            err = self._spawn()
            if err:
                job.deliver(
                    VerifyResult.failure(
                        job.verifier, f"sandbox unavailable: {err}", sandbox="unavailable"
                    )
                )
                return
        seq = self.seq = self.seq + 1
        try:
            msg = ("item", seq, job.verifier, job.response, job.reference, job.options)
            payload = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: BLE001 - e.g. an unpicklable reference (Python API)
            job.deliver(VerifyResult.failure(job.verifier, f"request not serialisable: {e}"))
            return
        idle = not self.inflight
        if not idle and len(payload) > _PIPELINE_MAX_BYTES:
            self.held = job
            return
        assert self.chan is not None
        try:
            self.chan.send(payload)
        except OSError:
            if not idle:  # the worker is dying; the pending answer read will see it
                self.pool._queue.put(job)
                return
            # the worker died while idle: the item has not run, send it to a new one
            self._restart(job.verifier)
            if self.chan is None:
                job.deliver(
                    VerifyResult.failure(job.verifier, "sandbox unavailable", sandbox="unavailable")
                )
                return
            self.chan.send(payload)
        self.inflight.append(_Sent(seq, job))
        if idle:
            self._head_started()

    def _head_started(self) -> None:
        self.started = time.monotonic()
        self.busy = (self.inflight[0].job.verifier, self.started) if self.inflight else None

    def _top_up(self) -> None:
        """Pipeline more queued items while the running one is young and nothing was stolen."""
        while (
            len(self.inflight) < _PIPELINE_DEPTH
            and self.pool._idle == 0  # an idle worker should take the queued items instead
            and self.held is None
            and not self.stopping
            and self.chan is not None
            and not any(s.ghost for s in self.inflight)
            and time.monotonic() - self.started < self.steal_after_s
        ):
            try:
                job = self.pool._queue.get_nowait()
            except queue.Empty:
                return
            if job is _STOP:
                self.stopping = True
                return
            if job.claim():
                self._dispatch(job)

    def _wait_for_answer(self) -> None:
        """Wait for the head item's answer, its deadline, or the moment to steal back."""
        if not self.inflight or self.chan is None:
            return
        head = self.inflight[0]
        deadline = self.started + head.job.timeout_s
        stealable = any(not s.ghost for s in list(self.inflight)[1:])
        wake = min(deadline, self.started + self.steal_after_s) if stealable else deadline
        try:
            frame = self.chan.recv(max(0.0, wake - time.monotonic()))
        except (EOFError, OSError):
            self._lost_worker("crash")
            return
        if frame is None:
            if time.monotonic() >= deadline:
                self._lost_worker("timeout")
            else:
                self._steal()
            return
        self._answer(head, frame)

    def _answer(self, head: _Sent, frame: bytes) -> None:
        try:  # the worker is sandboxed, so its answer is parsed as data and validated
            msg = json.loads(frame)
            if msg["seq"] != head.seq:
                raise ValueError(f"answer for item {msg['seq']}, expected {head.seq}")
            result = None if msg.get("skipped") else VerifyResult.model_validate(msg["result"])
        except (ValueError, TypeError, KeyError, RecursionError) as e:
            self._lost_worker("crash", f"worker sent an invalid result ({type(e).__name__})")
            return
        self.inflight.popleft()
        self._head_started()
        if head.ghost:
            return
        if result is None:  # skipped though never stolen: cannot happen; run it elsewhere
            self.pool._queue.put(head.job)
            return
        head.job.deliver(result)

    def _steal(self) -> None:
        """Hand the items queued behind a slow one back to the shared queue."""
        stolen = [s for s in list(self.inflight)[1:] if not s.ghost]
        for sent in stolen:
            sent.ghost = True
            self.pool._queue.put(sent.job)
        assert self.chan is not None
        try:
            self.chan.send(pickle.dumps(("skip", stolen[-1].seq)))
        except OSError:
            pass  # the worker is gone: the next read says so

    def _lost_worker(self, why: str, message: str | None = None) -> None:
        """The head item timed out or its worker died: kill, answer, requeue the rest, replace."""
        head = self.inflight.popleft()
        code = self._discard()
        rest = [s.job for s in self.inflight if not s.ghost]
        self.inflight.clear()
        self.busy = None
        verifier = head.job.verifier
        if not head.ghost:  # a ghost's own copy runs (and is reported) elsewhere
            if why == "timeout":
                self.pool._emit("timeout", verifier)
                error = f"timeout after {_seconds(head.job.timeout_s)}s"
            else:
                self.pool._emit("crash", verifier)
                exit_status = f"exit code {code}" if code is not None else "exit status unknown"
                error = message or f"worker crashed ({exit_status})"
            head.job.deliver(VerifyResult.failure(verifier, error, sandbox=why))
        for job in rest:  # never started: not the crash's fault
            self.pool._queue.put(job)
        if not self.pool._closed:
            self._restart(verifier)

    def _shutdown(self) -> None:
        if self.chan is not None:
            try:
                self.chan.send(pickle.dumps(None))
            except OSError:
                pass
        self._discard()

    def info(self) -> WorkerInfo:
        pid, busy = self.pid, self.busy
        return WorkerInfo(
            slot=self.index,
            pid=pid,
            alive=pid is not None and _running(pid),
            busy_verifier=busy[0] if busy else None,
            busy_for_s=round(time.monotonic() - busy[1], 3) if busy else None,
        )


def _seconds(t: float) -> str:
    """3 -> '3.0', 0.25 -> '0.25': the form the timeout errors use."""
    return f"{t:.1f}" if t == round(t, 1) else f"{t:g}"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _running(pid: int) -> bool:
    """Is ``pid`` a live process (not a zombie)? Linux reads /proc; elsewhere, signal 0."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


class SandboxPool:
    """A pool of warm verifier worker processes; every item bounded by a timeout and rlimits."""

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = 3.0,
        memory_mb: int = 2048,
        extra_modules: Sequence[str] = (),
        isolate_network: bool = True,
        on_event: EventHook | None = None,
    ):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        self.workers = workers
        self.timeout_s = float(timeout_s)
        self.memory_mb = memory_mb
        self.extra_modules = tuple(extra_modules)
        self.isolate_network = isolate_network
        self.isolation: dict[str, str] = {}
        self._on_event = on_event
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = 0  # supervisors waiting for an item
        self._idle_lock = threading.Lock()
        self._zygote = _Zygote(memory_mb, isolate_network, self.extra_modules)
        self._slots = [_Slot(self, i) for i in range(workers)]
        self._started = False
        self._closed = False
        self._stats_lock = threading.Lock()
        self.stats = {"timeouts": 0, "crashes": 0, "restarts": 0}

    def launch(self) -> SandboxPool:
        """Begin starting the worker machinery in the background; `start` then waits for it."""
        if not self._closed:
            self._zygote.launch()
        return self

    def start(self) -> SandboxPool:
        """Start every worker and wait until each has imported the verifiers."""
        if self._started:
            return self
        self._started = True
        try:
            self._zygote.ensure_started()
        except RuntimeError:
            self._closed = True
            raise
        for slot in self._slots:
            slot.thread.start()
        for slot in self._slots:
            slot.ready.wait()
        errors = [s.start_error for s in self._slots if s.start_error]
        if errors:
            self.close()
            raise RuntimeError(f"sandbox workers failed to start: {errors[0]}")
        return self

    def _take(self) -> Any:
        """The next queued item (blocking), counted as an idle supervisor while it waits."""
        with self._idle_lock:
            self._idle += 1
        try:
            return self._queue.get()
        finally:
            with self._idle_lock:
                self._idle -= 1

    def _emit(self, kind: str, verifier: str) -> None:
        key = {"timeout": "timeouts", "crash": "crashes", "restart": "restarts"}[kind]
        with self._stats_lock:
            self.stats[key] += 1
        if self._on_event is not None:
            try:
                self._on_event(kind, verifier)
            except Exception:  # noqa: BLE001 - a metrics hook must not break the pool
                log.exception("sandbox event hook failed")

    # -- submission
    def submit(
        self,
        verifier: str,
        response: Any,
        reference: Any = None,
        options: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> concurrent.futures.Future[VerifyResult]:
        """Queue one item; the future resolves to its `VerifyResult` (never raises)."""
        fut: concurrent.futures.Future[VerifyResult] = concurrent.futures.Future()
        self._enqueue(verifier, response, reference, options, timeout_s, fut, None)
        return fut

    def submit_async(
        self,
        verifier: str,
        response: Any,
        reference: Any = None,
        options: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> asyncio.Future[VerifyResult]:
        """Asyncio: queue one item from the running loop; the future resolves to its result."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[VerifyResult] = loop.create_future()
        self._enqueue(verifier, response, reference, options, timeout_s, fut, loop)
        return fut

    def _enqueue(
        self,
        verifier: str,
        response: Any,
        reference: Any,
        options: dict[str, Any] | None,
        timeout_s: float | None,
        fut: concurrent.futures.Future[VerifyResult] | asyncio.Future[VerifyResult],
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        if self._closed:
            raise RuntimeError("sandbox pool is closed")
        if not self._started:
            self.start()
        t = self.timeout_s if timeout_s is None else min(float(timeout_s), self.timeout_s)
        self._queue.put(_Job(verifier, response, reference, dict(options or {}), t, fut, loop))

    def verify(
        self,
        verifier: str,
        response: Any,
        reference: Any = None,
        options: dict[str, Any] | None = None,
    ) -> VerifyResult:
        """Run one item in the sandbox and wait for it."""
        return self.submit(verifier, response, reference, options).result()

    def map(self, requests: Sequence[VerifyRequest]) -> list[VerifyResult]:
        """Run many items concurrently; results in request order."""
        futs = [self.submit(r.verifier, r.response, r.reference, r.options) for r in requests]
        return [f.result() for f in futs]

    async def run_one(self, request: VerifyRequest) -> VerifyResult:
        """Asyncio: run one item without blocking the event loop."""
        r = request
        return await self.submit_async(r.verifier, r.response, r.reference, r.options)

    async def run(self, requests: Sequence[VerifyRequest]) -> list[VerifyResult]:
        """Asyncio: run many items concurrently; results in request order."""
        futs = [self.submit_async(r.verifier, r.response, r.reference, r.options) for r in requests]
        return list(await asyncio.gather(*futs))

    # -- introspection and shutdown
    def worker_info(self) -> list[WorkerInfo]:
        """Pids and current items of the workers (tests and the debug route kill them by pid)."""
        return [s.info() for s in self._slots]

    def alive(self) -> int:
        return sum(1 for s in self._slots if s.info().alive)

    def close(self) -> None:
        """Fail queued items, stop the supervisors and end every worker."""
        if self._closed:
            return
        self._closed = True
        self._fail_queued()
        for _ in self._slots:
            self._queue.put(_STOP)
        for slot in self._slots:
            if slot.thread.is_alive():
                slot.thread.join(self.timeout_s + 5)
            slot._discard()
        self._fail_queued()  # items a stopping supervisor handed back
        self._zygote.close()

    def _fail_queued(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP and job.claim():
                job.deliver(
                    VerifyResult.failure(job.verifier, "sandbox pool closed", sandbox="closed")
                )

    def __enter__(self) -> SandboxPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
