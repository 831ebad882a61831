"""Monitoring: the log line, metrics.jsonl and TensorBoard hold what was logged; the plot renders."""
import io

import pytest

from mfcore.train.monitor import IntervalMeter, Monitor, format_duration, format_line, read_metrics
from mfcore.config.schema import LoggingSection


def record(step, loss):
    return {"step": step, "total_steps": 10, "consumed_tokens": 2048 * step, "loss": loss, "lr": 1e-3,
            "grad_norm": 0.5, "loss_scale": None, "tokens_per_s": 1000.0, "step_time": 0.25,
            "mfu": 0.125, "data_wait": 0.001, "data_wait_share": 0.004, "eta_s": 90.0, "skipped": 0}


def test_log_line_has_every_field():
    line = format_line(record(3, 2.5))
    for part in ("step 3/10", "tokens 6.14K", "loss 2.5000", "lr 1.000e-03", "grad 0.500",
                 "1000 tok/s", "250 ms/step", "MFU 12.5%", "data 0.4%", "ETA 1m30s"):
        assert part in line
    assert "scale" not in line
    assert "scale 1024" in format_line({**record(1, 1.0), "loss_scale": 1024.0})
    assert "experts" not in line
    assert "experts max/mean 1.50" in format_line({**record(1, 1.0), "expert_imbalance": 1.5})
    assert "dropped" not in line
    assert "dropped 12" in format_line({**record(1, 1.0), "dropped_tokens": 12})
    tokens = {"expert_tokens_min": 3, "expert_tokens_mean": 8.0, "expert_tokens_max": 15}
    assert "expert tokens min/mean/max 3/8.0/15" in format_line({**record(1, 1.0), **tokens})
    assert "EP comm" not in line
    assert "EP comm 12.5%" in format_line({**record(1, 1.0), "ep_comm_share": 0.125})


def test_expert_load_record_reports_the_worst_layer():
    import numpy as np
    from mfcore.train.expert_balance import expert_load_record
    load = np.array([[4, 4, 4, 4], [1, 2, 3, 10]], np.float32)   # balanced; max/mean = 10/4
    got = expert_load_record(load)
    assert got == {"expert_load": [[4, 4, 4, 4], [1, 2, 3, 10]], "expert_imbalance": 2.5,
                   "expert_tokens_min": 1, "expert_tokens_mean": 4.0, "expert_tokens_max": 10}
    assert expert_load_record(load, dropped=7)["dropped_tokens"] == 7


def test_interval_meter_averages_tokens_and_time():
    m = IntervalMeter()
    m.add(1.0, 0.1, 100, 30.0, 10, False)
    m.add(3.0, 0.1, 100, 10.0, 10, True)
    s = m.summary()
    assert s == pytest.approx({"loss": 2.0, "step_time": 2.0, "data_wait": 0.1, "data_wait_share": 0.05,
                               "tokens_per_s": 50.0, "skipped": 1})


def test_format_duration():
    assert [format_duration(x) for x in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def test_metrics_files_hold_logged_values(tmp_path):
    out = io.StringIO()
    mon = Monitor(tmp_path, 10, LoggingSection(progress_bar="never"), "run:\n  name: t\n", stream=out)
    mon.log_train(record(1, 3.0))
    mon.log_train(record(2, 2.0))
    mon.log_valid(2, 2.2, 9.025)
    mon.close()
    rows = read_metrics(tmp_path)
    assert [r["loss"] for r in rows if "loss" in r] == [3.0, 2.0]
    assert rows[2] == {"step": 2, "valid_loss": 2.2, "valid_ppl": 9.025}
    assert "step 2/10" in out.getvalue() and "perplexity 9.025" in out.getvalue()
    from tensorboard_reader import read_scalars
    scalars = read_scalars(tmp_path / "tensorboard")
    assert scalars["train/loss"] == [(1, 3.0), (2, 2.0)]
    assert scalars["valid/valid_ppl"] == [(2, pytest.approx(9.025))]


def test_config_is_written_to_tensorboard_as_text(tmp_path):
    mon = Monitor(tmp_path, 10, LoggingSection(progress_bar="never"), "run:\n  name: special\n",
                  stream=io.StringIO())
    mon.close()
    from tensorboard_reader import read_scalars
    texts = [v for k, vals in read_scalars(tmp_path / "tensorboard").items() if k.startswith("text:")
             for v in vals]
    assert any("name: special" in t for t in texts)


def test_plot_renders_png(tmp_path):
    from mfcore.train.plot import plot_run
    mon = Monitor(tmp_path, 10, LoggingSection(progress_bar="never", tensorboard=False), stream=io.StringIO())
    for step in range(1, 6):
        mon.log_train(record(step, 5.0 - step))
    mon.log_valid(5, 1.5, 4.48)
    mon.close()
    path = plot_run(tmp_path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_plot_without_metrics_is_a_clear_error(tmp_path):
    from mfcore.errors import MfcoreError
    from mfcore.train.plot import plot_run
    with pytest.raises(MfcoreError, match="metrics.jsonl: no training metrics"):
        plot_run(tmp_path)


def test_progress_bar_mode_keeps_messages(tmp_path):
    out = io.StringIO()
    mon = Monitor(tmp_path, 10, LoggingSection(progress_bar="always", tensorboard=False, jsonl=False),
                  stream=out)
    mon.log_train(record(4, 1.25))
    mon.print("hello")
    mon.close()
    text = out.getvalue()
    assert "4/10" in text and "loss 1.2500" in text and "hello" in text
