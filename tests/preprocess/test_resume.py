"""Resume: a run killed with SIGKILL leaves no final dataset, and --resume then produces exactly the
bytes of an uninterrupted run, without redoing the finished chunks."""
import json
import os
import signal
import subprocess
import sys
import time

from mfcore.cli.preprocess import main
from mfcore.data.preprocess.state import LOG_FILE


def _args(tmp_path, tok, prefix, *extra):
    return ["--input", str(tmp_path / "c.jsonl"), "--output-prefix", str(tmp_path / prefix), "--tokenizer", tok,
            "--append-eod", "--no-progress", "--chunk-mb", "0.002", "--workers", "2", "--threads-per-worker", "1",
            *extra]


def _finished(work_dir):
    try:
        with open(os.path.join(work_dir, LOG_FILE)) as f:
            return f.read().count("\n")
    except OSError:
        return 0


def _bytes(prefix):
    return open(prefix + ".bin", "rb").read() + open(prefix + ".idx", "rb").read()


def test_resume_after_sigkill_gives_identical_bytes(tmp_path, small_bpe_path, docs, capsys):
    with open(tmp_path / "c.jsonl", "w") as f:
        for i in range(600):
            f.write(json.dumps({"text": docs[i % len(docs)] + f" #{i}"}) + "\n")
    assert main(_args(tmp_path, small_bpe_path, "ref")) == 0
    reference = _bytes(str(tmp_path / "ref_text_document"))

    work = str(tmp_path / "run.mf-preprocess-work")
    cmd = [sys.executable, "-m", "mfcore.cli.preprocess", *_args(tmp_path, small_bpe_path, "run")]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while _finished(work) < 5 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = _finished(work)
    assert 5 <= done_before, "the run was not interrupted after finishing some chunks"
    assert not os.path.exists(tmp_path / "run_text_document.bin")
    assert not os.path.exists(tmp_path / "run_text_document.idx")

    capsys.readouterr()
    assert main(_args(tmp_path, small_bpe_path, "run", "--resume")) == 0
    assert _bytes(str(tmp_path / "run_text_document")) == reference
    assert "600 documents" in capsys.readouterr().out  # counts of the skipped chunks are kept
    assert not os.path.exists(work)


def test_resume_refuses_other_inputs(tmp_path, small_bpe_path, capsys):
    (tmp_path / "c.jsonl").write_text('{"text": "broken\n')
    assert main(_args(tmp_path, small_bpe_path, "run")) == 2  # leaves the work directory behind
    (tmp_path / "c.jsonl").write_text('{"text": "now different and fine"}\n')
    capsys.readouterr()
    assert main(_args(tmp_path, small_bpe_path, "run", "--resume")) == 2
    assert "other inputs, tokenizer or options" in capsys.readouterr().err
    assert main(_args(tmp_path, small_bpe_path, "run")) == 0


def test_a_torn_log_line_only_redoes_that_chunk(tmp_path):
    from mfcore.data.preprocess.state import WorkState
    from mfcore.data.preprocess.worker import ChunkStats

    state = WorkState.start(str(tmp_path / "w"), "fp", resume=False)
    state.mark_finished(0, ChunkStats(documents={"text": 3}, records=3))
    state.mark_finished(1, ChunkStats(documents={"text": 4}, records=4))
    with open(tmp_path / "w" / LOG_FILE, "a") as f:
        f.write('{"chunk": 2, "sta')
    loaded = WorkState.start(str(tmp_path / "w"), "fp", resume=True)
    assert sorted(loaded.finished) == [0, 1]
    assert loaded.finished[1].documents == {"text": 4}
