"""mf-launch's argument handling and the msrun command line it builds (no processes started)."""
import sys

import pytest

from mfcore.cli import launch as cli
from mfcore.errors import ConfigError
from mfcore.launch.spec import LaunchSpec, LogTail, RankFailure
from mfcore.launch.launcher import last_error


def _spec(argv):
    return cli._spec(cli.build_parser().parse_args(argv))


def test_flags_become_the_msrun_command_line():
    spec = _spec(["--nproc-per-node", "2", "--nnodes", "3", "--node-rank", "1", "--master-addr", "10.0.0.5",
                  "--master-port", "29500", "--log-dir", "L", "--cluster-timeout", "90", "--",
                  "--config", "run.yaml", "train.steps=5"])
    argv = spec.msrun_argv()
    assert argv[:3] == [sys.executable, "-m", "mfcore.launch.msrun_node"]
    for flag in ["--worker_num=6", "--local_worker_num=2", "--master_addr=10.0.0.5", "--master_port=29500",
                 "--node_rank=1", "--log_dir=L", "--join=True", "--cluster_time_out=90"]:
        assert flag in argv
    assert argv[-7:] == ["--", "python", "-m", "mfcore.cli.train", "--config", "run.yaml", "train.steps=5"]
    assert spec.local_ranks == [2, 3]
    assert spec.worker_log(3) == "L/worker_3.log"


def test_script_replaces_mf_train_and_join_takes_a_value():
    spec = _spec(["--script", "job.py", "--join", "false", "--", "--x", "1"])
    assert spec.command == ["job.py", "--x", "1"] and spec.join is False
    assert _spec(["--join", "--", "a"]).join is True


def test_workers_run_this_interpreter():
    env = _spec(["--", "x"]).process_env()
    assert env["PATH"].split(":")[0] == sys.executable.rsplit("/", 1)[0]


@pytest.mark.parametrize("argv,message", [
    (["--nproc-per-node", "0", "--", "x"], "--nproc-per-node must be at least 1"),
    (["--nnodes", "2", "--node-rank", "2", "--", "x"], r"--node-rank 2 must be in \[0, 1\]"),
    (["--master-port", "80", "--", "x"], "--master-port 80"),
])
def test_bad_flags_are_clear_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        _spec(argv).validate()
    with pytest.raises(ConfigError, match="nothing to launch"):
        LaunchSpec(command=[]).validate()


def test_train_args_must_follow_the_separator(capsys):
    assert cli.main(["--nproc-per-node", "2", "run.yaml"]) == 2
    assert "put the mf-train arguments after `--`" in capsys.readouterr().err


def test_last_error_prefers_the_exception_line(tmp_path):
    log = tmp_path / "worker_1.log"
    log.write_text("step 1\nTraceback (most recent call last):\n  File x\nValueError: bad shape\n[INFO] bye\n")
    assert last_error(str(log), 1) == "ValueError: bad shape"
    log.write_text("error: parallel.data (2) x parallel.tensor (2) = 4 ranks\n")
    assert last_error(str(log), 2).startswith("error: parallel.data")
    log.write_text("TypeError: \n------\n- Kernel select failed:\n------\nSelect CPU operator[AllReduce] fail!\n")
    assert last_error(str(log), 1) == "TypeError: - Kernel select failed: Select CPU operator[AllReduce] fail!"
    log.write_text("step 1\n")
    assert last_error(str(log), -9) == "killed by SIGKILL"
    assert last_error(str(tmp_path / "missing.log"), 3) == "no error message in its log"


def test_rank_failure_names_the_rank():
    text = RankFailure(1, -9, "killed by SIGKILL", "L/worker_1.log").describe()
    assert text == "rank 1 failed (exit code -9): killed by SIGKILL; log: L/worker_1.log"


def test_log_tail_streams_complete_lines_only(tmp_path):
    import io
    path = tmp_path / "worker_0.log"
    out = io.StringIO()
    tail = LogTail(str(path), out)
    tail.pump()
    assert out.getvalue() == ""
    path.write_text("one\ntw")
    tail.pump()
    assert out.getvalue() == "one\n"
    with open(path, "a") as f:
        f.write("o\nthree")
    tail.pump()
    assert out.getvalue() == "one\ntwo\n"
    tail.flush_rest()
    assert out.getvalue() == "one\ntwo\nthree\n"


def test_wrong_world_size_is_refused_before_anything_starts(capsys, monkeypatch):
    import mfcore.cli.launch as launch_mod

    started = []
    monkeypatch.setattr(launch_mod, "launch", lambda spec: started.append(spec) or 0)
    assert cli.main(["--nproc-per-node", "2", "--", "--config", "tiny-llama3"]) == 2
    err = capsys.readouterr().err
    assert "2 ranks, but tiny-llama3 asks for parallel.tensor (1) x parallel.pipeline (1) x parallel.data (1) = 1" in err
    assert "override parallel.data=2" in err
    assert cli.main(["--nproc-per-node", "2", "--", "--config", "tiny-llama3", "parallel.tensor=3"]) == 2
    assert "parallel.tensor x parallel.pipeline (3) must divide the number of ranks" in capsys.readouterr().err
    assert started == []
    assert cli.main(["--nproc-per-node", "2", "--", "--config", "tiny-llama3", "parallel.data=2"]) == 0
    assert started[0].world_size == 2


def test_rank_lost_on_another_node_ends_this_node_after_the_grace(tmp_path, monkeypatch):
    """Node 0 hosts the scheduler: once its log names a rank of node 1 as timed out, node 0's job
    is ended (its own ranks cannot go on) without waiting for msrun to notice, and that rank is
    the one reported. A stale line from an earlier attempt is removed at start."""
    import io
    import time

    from mfcore.launch import launcher

    monkeypatch.setattr(launcher, "FAILURE_GRACE_SECONDS", 0.3)
    spec = LaunchSpec(command=["-c", "pass"], nnodes=2, node_rank=0, log_dir=str(tmp_path))
    scheduler_log = tmp_path / "scheduler.log"
    scheduler_log.write_text("worker 1 is the first one timed out\n")           # an earlier attempt's
    err = io.StringIO()
    job = launcher.NodeJob(spec, out=io.StringIO(), err=err)
    # msrun's stand-in: a process that would run for a minute, started the way start() starts msrun
    monkeypatch.setattr(spec, "msrun_argv", lambda: [sys.executable, "-c", "import time; time.sleep(60)"])
    job.start()
    assert not scheduler_log.exists()
    assert job.failure() is None
    scheduler_log.write_text("[WARNING] ... worker 1 is the first one timed out, cluster will exit\n")
    began = time.monotonic()
    assert job.wait() == 1
    assert time.monotonic() - began < 10
    assert job.proc.returncode == -9                                              # ended by us
    assert "error: rank 1 failed: stopped responding" in err.getvalue()


def test_log_watch_finds_a_complete_line_reading_each_byte_once(tmp_path):
    import re

    from mfcore.launch.spec import LogWatch
    path = tmp_path / "msrun.log"
    watch = LogWatch(str(path), re.compile(r"Worker process (\d+) exit"))
    assert watch.search() is None                                  # no file yet
    path.write_text("start\nWorker process 41 ex")                 # the line is still being written
    assert watch.search() is None and watch.offset == len("start\n")
    with open(path, "a") as f:
        f.write("it with exception. Error code: 1\nWorker process 42 exit\n")
    assert watch.search().group(1) == "41"
    path.write_text("")                                            # later changes do not matter
    assert watch.search().group(1) == "41"


def test_log_watch_of_a_finished_writer_reads_its_last_line_without_newline(tmp_path):
    import re

    from mfcore.launch.spec import LogWatch
    path = tmp_path / "msrun.log"
    path.write_text("start\nWorker process 7 exit")
    watch = LogWatch(str(path), re.compile(r"Worker process (\d+) exit"))
    assert watch.search() is None
    assert watch.search(finished=True).group(1) == "7"


def test_world_size_check_reads_overrides_after_a_flag(capsys, monkeypatch):
    import mfcore.cli.launch as launch_mod

    started = []
    monkeypatch.setattr(launch_mod, "launch", lambda spec: started.append(spec) or 0)
    argv = ["--nproc-per-node", "2", "--", "--config", "tiny-llama3", "--resume", "auto", "parallel.data=2"]
    assert cli.main(argv) == 0
    assert started[0].command[-3:] == ["--resume", "auto", "parallel.data=2"]
    argv = ["--nproc-per-node", "2", "--", "--config", "tiny-llama3", "--resume", "auto", "parallel.tensor=3"]
    assert cli.main(argv) == 2
    assert "parallel.tensor x parallel.pipeline (3) must divide the number of ranks" in capsys.readouterr().err
