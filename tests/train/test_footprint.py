"""Peak memory and time to first step as the training log reports them: VmHWM (not the inherited
ru_maxrss) on CPU, MindSpore's device statistic elsewhere, the first-step line once."""
import time

import pytest

from mfcore.train import footprint
from mfcore.train.footprint import FirstStepClock, peak_memory_gb, peak_rss_bytes


def _current_rss_bytes():
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_peak_rss_is_this_process_high_water_mark():
    before = peak_rss_bytes()
    block = bytearray(64 * 2**20)   # touch 64 MiB: the high-water mark cannot stay below it
    for i in range(0, len(block), 4096):
        block[i] = 1
    after = peak_rss_bytes()
    assert after >= _current_rss_bytes() >= len(block)
    assert after >= before and after < 64 * 2**30


def test_peak_rss_reads_vmhwm_in_kilobytes(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t 9999999 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 1000 kB\n")
    assert peak_rss_bytes(str(status)) == 123456 * 1024


def test_without_proc_the_rusage_peak_is_used(tmp_path):
    assert peak_rss_bytes(str(tmp_path / "missing")) >= _current_rss_bytes() // 2


def test_device_targets_report_the_device_peak(monkeypatch):
    monkeypatch.setattr(footprint, "device_peak_bytes", lambda: 3_500_000_000)
    assert peak_memory_gb("Ascend") == pytest.approx(3.5)
    assert peak_memory_gb("CPU") == pytest.approx(peak_rss_bytes() / 1e9, rel=0.05)
    monkeypatch.setattr(footprint, "device_peak_bytes", lambda: None)   # no statistic: the host's
    assert peak_memory_gb("GPU") == pytest.approx(peak_rss_bytes() / 1e9, rel=0.05)


def test_the_first_step_line_comes_once_with_its_parts():
    clock = FirstStepClock()
    assert clock.step_done() is None   # the loop has not started
    time.sleep(0.02)
    clock.loop_started()
    time.sleep(0.03)
    line = clock.step_done()
    assert line.startswith("time to first step: ") and "graph compile" in line
    assert clock.first_step_s >= 0.03 and clock.time_to_first_step >= clock.first_step_s + 0.02
    assert clock.step_done() is None
