"""What a run costs the machine, for the training log: peak memory (``memory_gb``) and the time to
the first step (start-up, mostly graph compilation).

Peak memory is the device's on Ascend and GPU (MindSpore's ``max_memory_allocated``) and the
process's peak resident set on CPU, read from ``VmHWM`` in ``/proc/self/status``: ``getrusage``'s
``ru_maxrss`` survives ``execve`` on Linux, so a process started from a big parent (msrun, pytest)
would report the parent's peak.
"""
import resource
import sys
import time
from typing import Optional

PROC_STATUS = "/proc/self/status"
GB = 1e9


def peak_rss_bytes(status_path: str = PROC_STATUS) -> int:
    """This process's peak resident set size in bytes (``VmHWM``; ``ru_maxrss`` without /proc)."""
    try:
        with open(status_path, encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024   # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024   # bytes on macOS, kB elsewhere


def device_peak_bytes() -> Optional[int]:
    """MindSpore's peak allocated device memory (None where it keeps no such statistic)."""
    try:
        from mindspore import runtime
        return int(runtime.max_memory_allocated())
    except (ImportError, AttributeError, RuntimeError):
        return None


def peak_memory_gb(device_target: str) -> float:
    """Peak memory in GB (10^9 bytes): the device's off CPU when MindSpore reports it, else peak RSS."""
    if device_target != "CPU":
        device = device_peak_bytes()
        if device:
            return device / GB
    return peak_rss_bytes() / GB


class FirstStepClock:
    """Time to first step: set-up (everything before the loop: data, model, optimizer, resume) plus
    the first step itself, which compiles the step's graphs."""

    def __init__(self):
        self.start = time.perf_counter()
        self.loop_start = None
        self.first_step_s = self.time_to_first_step = None

    def loop_started(self) -> None:
        self.loop_start = time.perf_counter()

    def step_done(self) -> Optional[str]:
        """The log line after this process's first step (None after later steps)."""
        if self.first_step_s is not None or self.loop_start is None:
            return None
        now = time.perf_counter()
        self.first_step_s = now - self.loop_start
        self.time_to_first_step = now - self.start
        return (f"time to first step: {self.time_to_first_step:.1f} s (set-up "
                f"{self.loop_start - self.start:.1f} s, first step {self.first_step_s:.1f} s with graph compile)")
