"""Restarting a failed job, and the exit codes a job and its launcher agree on.

``mf-train`` exits with :data:`EXIT_PREEMPTED` after a stop on request (SIGTERM/SIGINT) once its final
checkpoint is saved, so schedulers and ``mf-launch`` can tell a clean preemption from a crash; the
restart loop never restarts after it, after success or after a user interrupt.
"""
import logging
from typing import Callable

log = logging.getLogger("mfcore.launch")

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped on request after a final checkpoint; resume to continue
# exit codes after which restarting cannot help: success, a stop on request, a user interrupt
NO_RESTART = (0, EXIT_PREEMPTED, 130)


def run_with_restarts(run_once: Callable[[int], int], max_restarts: int,
                      report: Callable[[str], None] = log.warning) -> int:
    """Run a job (``run_once(attempt)`` → exit code) and restart it after a failure, at most
    ``max_restarts`` times; the job resumes from its newest valid checkpoint by itself."""
    attempt = 0
    while True:
        code = run_once(attempt)
        if code in NO_RESTART or attempt >= max_restarts:
            if code not in NO_RESTART and max_restarts:
                report(f"job failed with exit code {code}; no restarts left (--max-restarts {max_restarts})")
            return code
        attempt += 1
        report(f"job failed with exit code {code}; restart {attempt} of {max_restarts}, "
               f"resuming from the newest valid checkpoint")
