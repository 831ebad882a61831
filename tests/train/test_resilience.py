"""Stop requests from signals and the save-on-failure rule."""
import os
import signal

import pytest

from mfcore.launch.restarts import EXIT_PREEMPTED
from mfcore.train.resilience import StopRequest, save_on_failure


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_sets_flag_and_second_aborts(sig):
    before = signal.getsignal(sig)
    with StopRequest() as stop:
        assert not stop.should_stop()
        os.kill(os.getpid(), sig)
        assert stop.requested and stop.signal_name == signal.Signals(sig).name
        assert stop.should_stop()
        with pytest.raises(KeyboardInterrupt, match="second"):
            os.kill(os.getpid(), sig)
    assert signal.getsignal(sig) == before


def test_agreement_across_ranks():
    stop = StopRequest()
    seen = []
    assert stop.should_stop(agree=lambda local: seen.append(local) or True)  # another rank asked
    assert seen == [False]
    assert not stop.should_stop(agree=lambda local: local)


def test_save_on_failure_only_when_healthy():
    saved = []
    err = RuntimeError("boom")
    assert save_on_failure(lambda: saved.append(1), lambda: True, err) and saved == [1]
    assert not save_on_failure(lambda: saved.append(2), lambda: False, err) and saved == [1]

    def broken():
        raise OSError("disk full")
    assert not save_on_failure(broken, lambda: True, err)
    assert EXIT_PREEMPTED not in (0, 1, 2, 130)


def _job(codes):
    calls = []

    def run_once(attempt):
        calls.append(attempt)
        return codes[len(calls) - 1]
    return run_once, calls


def test_restarts_until_success():
    from mfcore.launch.restarts import run_with_restarts
    messages = []
    run_once, calls = _job([1, 1, 0])
    assert run_with_restarts(run_once, 3, messages.append) == 0
    assert calls == [0, 1, 2]
    assert messages == ["job failed with exit code 1; restart 1 of 3, resuming from the newest valid checkpoint",
                        "job failed with exit code 1; restart 2 of 3, resuming from the newest valid checkpoint"]


def test_restarts_are_bounded_and_skip_clean_stops():
    from mfcore.launch.restarts import run_with_restarts
    messages = []
    run_once, calls = _job([1, 1, 1])
    assert run_with_restarts(run_once, 2, messages.append) == 1 and calls == [0, 1, 2]
    assert messages[-1] == "job failed with exit code 1; no restarts left (--max-restarts 2)"
    for code in (EXIT_PREEMPTED, 130, 0):
        run_once, calls = _job([code])
        assert run_with_restarts(run_once, 5, messages.append) == code and calls == [0]
    run_once, calls = _job([3])
    assert run_with_restarts(run_once, 0, messages.append) == 3 and calls == [0]
