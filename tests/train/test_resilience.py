"""Stop requests from signals and the save-on-failure rule."""
import os
import signal

import pytest

from mfcore.train.resilience import EXIT_PREEMPTED, StopRequest, save_on_failure


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
