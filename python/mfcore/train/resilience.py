"""Surviving interruptions: stop cleanly on SIGTERM/SIGINT, save on the way out of a failure.

A signal only raises a flag; the loop finishes the step it is in, asks :meth:`StopRequest.should_stop`
(all ranks agree through ``agree``, so every rank stops after the same step), saves a final-state
checkpoint, and the command exits with :data:`mfcore.launch.restarts.EXIT_PREEMPTED` so schedulers
and ``mf-launch`` can tell a clean preemption from a crash. A second signal while stopping aborts at once.

An exception inside a step is different: :func:`save_on_failure` writes a checkpoint only if the
state is healthy (finite parameters, no half-applied update), then the error propagates and the
command exits non-zero.
"""
import logging
import signal
import threading
from typing import Callable, Iterable, Optional

log = logging.getLogger("mfcore.train")

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
