"""Start the ranks of one node through MindSpore's ``msrun`` and watch them until they finish.

``msrun`` does the real work (scheduler, rank ids, per-rank log files ``worker_<rank>.log``); this
module adds what a user of a training job needs on top: rank 0's log streamed to the console, and
a dead rank reported by number with its last error instead of a bare "check the logs".

The scheduler is watched as the ranks are: msrun only looks at it once every worker has ended, so
a scheduler that dies at start (master port in use, an address that is not this node's) used to
leave the workers waiting for the whole ``--cluster-timeout``. Its exit status is read from
``/proc`` while msrun has not yet reaped it, and a failed scheduler ends the job at once with the
first error of ``scheduler.log``. mf-launch's own end is passed on: SIGTERM and SIGINT stop the job,
and msrun is started with ``PR_SET_PDEATHSIG`` = SIGINT, on which msrun kills its workers and
scheduler itself, so a SIGKILLed mf-launch orphans nothing.

msrun reports a failed worker only by pid (``Worker process <pid> exit with exception. Error
code: <n>``), so the pid -> rank map is read from the workers' own environment (``RANK_ID``, which
msrun exports when it assigns rank ids, i.e. whenever ``--node_rank`` is given).
"""
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, Optional, TextIO

import psutil

from mfcore.launch.spec import ERROR_LINE, WORKER_FAILED, LaunchSpec, LogTail, LogWatch, RankFailure

SCHEDULER_LOST = re.compile(r"worker (\d+) is the first one timed out")
NATIVE_ERROR = re.compile(r"^\[(ERROR|CRITICAL)\] .*?\] (?:\w+\] )?(.*)$")
PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.2
# After msrun has seen a failed worker it kills the others and waits for its scheduler; we wait
# this long for that before killing everything ourselves, so a job never hangs on a dead rank.
FAILURE_GRACE_SECONDS = 5.0


class NodeJob:
    """msrun for this node, plus the console stream and the failure watch."""

    def __init__(self, spec: LaunchSpec, out: TextIO = sys.stdout, err: TextIO = sys.stderr):
        self.spec, self.out, self.err = spec, out, err
        self.proc: Optional[subprocess.Popen] = None
        self.pid_rank: Dict[int, int] = {}
        self.scheduler_pid: Optional[int] = None
        self.msrun_log = os.path.join(spec.log_dir, f"msrun_node{spec.node_rank}.log")
        self.scheduler_log = os.path.join(spec.log_dir, "scheduler.log")
        self.worker_failed = LogWatch(self.msrun_log, WORKER_FAILED)
        self.rank_lost = LogWatch(self.scheduler_log, SCHEDULER_LOST)
        self.tail = LogTail(spec.worker_log(0), out) if 0 in spec.local_ranks else None

    def start(self) -> None:
        os.makedirs(self.spec.log_dir, exist_ok=True)
        # Node 0 runs the scheduler, whose log msrun truncates anyway: removed first so that a
        # restart never reads an earlier attempt's "timed out" line before msrun has started.
        if self.spec.node_rank == 0 and os.path.exists(self.scheduler_log):
            os.remove(self.scheduler_log)
        # The same for this node's worker logs (msrun rewrites them): rank 0's is streamed to the
        # console, which would otherwise show an earlier job's log, as when resuming in the same dir.
        for rank in self.spec.local_ranks:
            if os.path.exists(self.spec.worker_log(rank)):
                os.remove(self.spec.worker_log(rank))
        print(f"mf-launch: node {self.spec.node_rank}/{self.spec.nnodes} starting ranks "
              f"{self.spec.local_ranks[0]}..{self.spec.local_ranks[-1]} of {self.spec.world_size}; "
              f"logs in {self.spec.log_dir}", file=self.err, flush=True)
        with open(self.msrun_log, "wb") as log:
            # Own session: on failure we can end msrun and its scheduler as one process group.
            self.proc = subprocess.Popen(self.spec.msrun_argv(), stdout=log, stderr=subprocess.STDOUT,
                                         env=self.spec.process_env(), start_new_session=True,
                                         preexec_fn=_interrupt_when_parent_dies)

    def wait(self) -> int:
        """Stream, watch, and return the exit status (0 only if every local rank succeeded)."""
        failed_at = None
        while True:
            self._map_workers()
            if self.tail:
                self.tail.pump()
            code = self.proc.poll()
            if code is not None:
                break
            # A rank of another node that stopped responding ends this node's ranks too: msrun
            # would only notice when the cluster stops them, which can take a minute.
            if self.scheduler_failed() is not None:  # nothing can go on without it: no grace
                self.kill()
                break
            if failed_at is None and (self.worker_failed.search() or self._rank_lost_elsewhere()):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > FAILURE_GRACE_SECONDS:
                self.kill()
                break
            time.sleep(POLL_SECONDS)
        code = self.proc.wait()
        if self.tail:
            self.tail.flush_rest()
        failure = self.failure()
        if failure is None and code == 0:
            return 0
        if failure is None:
            failure = RankFailure(None, code, f"msrun exited with status {code}: "
                                  f"{last_error(self.msrun_log, code)}", self.msrun_log)
        print(f"error: {failure.describe()}", file=self.err, flush=True)
        return 1

    def run(self) -> int:
        self.start()
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM stops the job as Ctrl+C does
        try:
            return self.wait()
        except KeyboardInterrupt:
            self.kill()
            print("mf-launch: interrupted, job stopped", file=self.err, flush=True)
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)

    def kill(self) -> None:
        """End the workers (each in its own session under msrun) and msrun's process group."""
        for pid in list(self.pid_rank):
            _kill_group(pid)
        if self.proc and self.proc.poll() is None:
            _kill_group(self.proc.pid)
            self.proc.wait()

    def _map_workers(self) -> None:
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.Error:
            return
        for child in children:
            if child.pid in self.pid_rank:
                continue
            try:
                env = child.environ()
            except psutil.Error:
                continue
            if env.get("MS_ROLE") == "MS_WORKER" and env.get("RANK_ID", "").isdigit():
                self.pid_rank[child.pid] = int(env["RANK_ID"])
            elif env.get("MS_ROLE") == "MS_SCHED":
                self.scheduler_pid = child.pid

    def scheduler_failed(self) -> Optional[int]:
        """The exit status of this node's scheduler when it has died with an error (a zombie msrun
        has not reaped yet: msrun waits for it only after every worker), else None."""
        if self.scheduler_pid is None:
            return None
        status = zombie_exit_status(self.scheduler_pid)
        return status if status else None

    def failure(self) -> Optional[RankFailure]:
        """The rank of another node the scheduler lost first, else the first rank msrun saw
        failing, else a scheduler that failed on its own, with the last error line of its log
        (asked once msrun has exited)."""
        lost = self._rank_lost_elsewhere(finished=True)   # the scheduler exits after naming it
        if lost is not None:
            return lost
        match = self.worker_failed.search(finished=True)
        status = self.scheduler_failed()
        # msrun SIGKILLs its scheduler while tearing down after a failed worker: then the worker is
        # the cause; a scheduler that failed on its own (port in use, ...) is the cause.
        if status is not None and not (match and os.WIFSIGNALED(status)):
            code = os.waitstatus_to_exitcode(status)
            return RankFailure(None, code, "the scheduler (node 0) " + scheduler_error(self.scheduler_log, code, self.spec),
                               self.scheduler_log, who="the job")
        if not match:
            return None
        pid, code = int(match.group(1)), int(match.group(2))
        rank = self.pid_rank.get(pid)
        if rank is None:
            return RankFailure(None, code, f"worker pid {pid} died", self.spec.log_dir)
        log = self.spec.worker_log(rank)
        return RankFailure(rank, code, last_error(log, code), log)

    def _rank_lost_elsewhere(self, finished: bool = False) -> Optional[RankFailure]:
        """On the scheduler's node: a rank of another node that died first (its heartbeat timed
        out, the cluster then stopped our ranks, whose own logs show nothing)."""
        match = self.rank_lost.search(finished)
        if not match or int(match.group(1)) in self.spec.local_ranks:
            return None
        return RankFailure(int(match.group(1)), None, "stopped responding (the scheduler's heartbeat timed out); "
                           "the ranks of this node were stopped because of it", self.scheduler_log)


def last_error(log_path: str, exit_code: int) -> str:
    """The most specific error line of a rank's log, or what its exit code says."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            lines = [ln.rstrip() for ln in f]
    except FileNotFoundError:
        lines = []
    for i in range(len(lines) - 1, -1, -1):
        if ERROR_LINE.match(lines[i]):
            return _with_detail(lines, i)
    if exit_code < 0:
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return "no error message in its log"


def _with_detail(lines, i, max_lines=3) -> str:
    """An exception line; when its message is on the next lines (MindSpore's style), add them."""
    line = lines[i]
    if line.split(":", 1)[-1].strip():
        return line
    detail = [ln.strip() for ln in lines[i + 1:]
              if ln.strip() and not set(ln.strip()) <= set("-=") and not ln.startswith("[")]
    return " ".join([line.rstrip()] + detail[:max_lines])


def zombie_exit_status(pid: int) -> Optional[int]:
    """The wait status of ``pid`` if it has exited and not been reaped (``/proc/PID/stat``), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[-1]) if fields and fields[0] == b"Z" else None


def scheduler_error(log_path: str, exit_code: int, spec: LaunchSpec) -> str:
    """What ended the scheduler: its first native error line and its last exception line."""
    first = None
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = NATIVE_ERROR.match(line.rstrip())
                if m:
                    first = m.group(2)
                    break
    except FileNotFoundError:
        pass
    last = last_error(log_path, exit_code)
    cause = f"{first} ({last})" if first else last
    return (f"exited with status {exit_code}: {cause}; is port {spec.master_port} in use, or "
            f"{spec.master_addr} not an address of this node?")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _interrupt_when_parent_dies() -> None:
    """In msrun's child before exec: SIGINT when mf-launch dies (msrun then kills its workers)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def launch(spec: LaunchSpec, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Validate, start this node's ranks through msrun, and (with ``join``) wait for them."""
    spec.validate()
    job = NodeJob(spec, out, err)
    if not spec.join:
        job.start()
        print(f"mf-launch: started in the background (msrun pid {job.proc.pid}); logs in {spec.log_dir}",
              file=err, flush=True)
        return 0
    return job.run()
