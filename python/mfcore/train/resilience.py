"""Surviving interruptions: stop cleanly on SIGTERM/SIGINT, save on the way out of a failure.

A signal only raises a flag; the loop finishes the step it is in, asks :meth:`StopRequest.should_stop`
(all ranks agree through ``agree``, so every rank stops after the same step), saves a final-state
checkpoint, and the command exits with :data:`EXIT_PREEMPTED` so schedulers and ``mf-launch`` can
tell a clean preemption from a crash. A second signal while stopping aborts at once.

An exception inside a step is different: :func:`save_on_failure` writes a checkpoint only if the
state is healthy (finite parameters, no half-applied update), then the error propagates and the
command exits non-zero.
"""
import logging
import signal
import threading
from typing import Callable, Iterable, Optional

log = logging.getLogger("mfcore.train")

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped on request after a final checkpoint; resume to continue
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag checked between steps (a context manager restores handlers)."""

    def __init__(self, signals: Iterable[int] = STOP_SIGNALS):
        self.signals = tuple(signals)
        self.signal_name: Optional[str] = None
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, frame):
        if self.requested:  # asked twice: stop waiting for the step to finish
            self.restore()
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name} while stopping")
        self.signal_name = signal.Signals(signum).name
        log.warning("%s received: finishing the current step, then saving and stopping", self.signal_name)

    def install(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def should_stop(self, agree: Optional[Callable[[bool], bool]] = None) -> bool:
        """Whether to stop after this step; ``agree(local)`` returns whether ANY rank wants to."""
        return bool(agree(self.requested)) if agree is not None else self.requested

    def __enter__(self) -> "StopRequest":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()


def save_on_failure(save: Callable[[], object], healthy: Callable[[], bool], error: BaseException) -> bool:
    """After ``error`` escaped a step: save if ``healthy()``; never mask the original error."""
    try:
        if not healthy():
            log.error("not saving after %s: the training state is not healthy", type(error).__name__)
            return False
        save()
        log.warning("saved a checkpoint after %s; the run can resume from it", type(error).__name__)
        return True
    except Exception as e:  # a failing save must not hide why training stopped
        log.error("saving after %s failed too: %s", type(error).__name__, e)
        return False


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
