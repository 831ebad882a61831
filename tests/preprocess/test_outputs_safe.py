"""Issue 21 rows 3 and 4: outputs are replaced, never deleted first (a failing re-run keeps the earlier
dataset byte for byte); compressed inputs are checked to their end (a truncated .zst or .gz is an
error naming the file); an empty input is an error unless --allow-empty; a killed run's temporaries
are cleaned; MindRecord files get the usual umask modes."""
import gzip
import json
import os
import stat
import subprocess
import sys

import pytest
import zstandard

from mfcore.cli.preprocess import main


def _cli(capsys, tmp_path, tok, inp, *extra, prefix="out"):
    code = main([str(a) for a in ["--input", inp, "--output-prefix", tmp_path / prefix, "--tokenizer", tok,
                                  "--no-progress", "--chunk-mb", "0.001", *extra]])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(code, err, *fragments):
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def _lines(n, start=0):
    return "".join(json.dumps({"text": f"document number {i} with a few words"}) + "\n" for i in range(start, start + n))


def _dataset_bytes(prefix):
    return {ext: open(f"{prefix}_text_document.{ext}", "rb").read() for ext in ("bin", "idx")}


def test_failing_rerun_keeps_the_existing_dataset(tmp_path, capsys, small_bpe_path):
    good = tmp_path / "good.jsonl"
    good.write_text(_lines(40))
    assert _cli(capsys, tmp_path, small_bpe_path, good)[0] == 0
    before = _dataset_bytes(tmp_path / "out")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_lines(30, 100) + '{"text": "broken\n' + _lines(5, 200))
    code, _, err = _cli(capsys, tmp_path, small_bpe_path, bad)
    _one_error(code, err, f"{bad}:31: malformed JSON")
    assert _dataset_bytes(tmp_path / "out") == before


def _zst_frames(text, frames):
    data = text.encode()
    step = len(data) // frames + 1
    return b"".join(zstandard.ZstdCompressor().compress(data[i:i + step]) for i in range(0, len(data), step))


def _block_ends(frame: bytes):
    """Offsets just after each block of one zstd frame (3-byte block headers, RFC 8878 3.1.1.2)."""
    at, ends = zstandard.frame_header_size(frame), []
    while True:
        header = int.from_bytes(frame[at:at + 3], "little")
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        at += 3 + (1 if kind == 1 else size)
        ends.append(at)
        if last:
            return ends


def test_zstd_cut_at_a_block_boundary_is_an_error(tmp_path, capsys, small_bpe_path):
    text = _lines(3000)
    whole = tmp_path / "c.jsonl.zst"
    whole.write_bytes(_zst_frames(text, 2))
    code, out, _ = _cli(capsys, tmp_path, small_bpe_path, whole, prefix="whole")
    assert code == 0 and "text: 3,000 documents" in out
    # a frame cut right after one of its blocks: the stream used to end there quietly
    frame = zstandard.ZstdCompressor(level=1).compress(text.encode())
    ends = _block_ends(frame)
    assert len(ends) >= 2 and ends[-1] == len(frame)
    cut = tmp_path / "cut.jsonl.zst"
    cut.write_bytes(frame[:ends[0]])
    code, _, err = _cli(capsys, tmp_path, small_bpe_path, cut, prefix="cut")
    _one_error(code, err, f"{cut}: truncated zstd archive")
    assert not os.path.exists(tmp_path / "cut_text_document.bin")


def test_zstd_missing_last_frame_end_is_an_error(tmp_path, capsys, small_bpe_path):
    data = _zst_frames(_lines(2000), 3)
    cut = tmp_path / "c.jsonl.zst"
    cut.write_bytes(data[:-3])  # the last frame loses its final block's tail
    code, _, err = _cli(capsys, tmp_path, small_bpe_path, cut)
    _one_error(code, err, str(cut), "zstd")


def test_gzip_without_its_trailer_is_an_error(tmp_path, capsys, small_bpe_path):
    cut = tmp_path / "c.jsonl.gz"
    cut.write_bytes(gzip.compress(_lines(500).encode())[:-6])
    code, _, err = _cli(capsys, tmp_path, small_bpe_path, cut)
    _one_error(code, err, str(cut))


def test_empty_input_is_an_error_unless_allowed(tmp_path, capsys, small_bpe_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, err = _cli(capsys, tmp_path, small_bpe_path, empty)
    _one_error(code, err, str(empty), "no documents", "--allow-empty")
    assert not os.path.exists(tmp_path / "out_text_document.bin")
    code, out, _ = _cli(capsys, tmp_path, small_bpe_path, empty, "--allow-empty")
    assert code == 0 and "text: 0 documents" in out and os.path.exists(tmp_path / "out_text_document.idx")


def test_temporaries_of_a_killed_run_are_removed(tmp_path, capsys, small_bpe_path):
    good = tmp_path / "good.jsonl"
    good.write_text(_lines(20))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = [tmp_path / f"out_text_document.{ext}.tmp-{pid}-0" for ext in ("bin", "idx")]
    alive = tmp_path / f"out_text_document.bin.tmp-{os.getpid()}-99"  # a live writer's file stays
    for p in stale + [alive]:
        p.write_bytes(b"partial")
    assert _cli(capsys, tmp_path, small_bpe_path, good, "--resume")[0] == 0
    assert not any(p.exists() for p in stale) and alive.exists()


def test_mindrecord_files_get_umask_modes(tmp_path, capsys, small_bpe_path):
    good = tmp_path / "good.jsonl"
    good.write_text(_lines(20))
    old = os.umask(0o022)
    try:
        code, _, err = _cli(capsys, tmp_path, small_bpe_path, good, "--output-format", "mindrecord",
                            "--seq-length", "8", "--pack", "stitch")
    finally:
        os.umask(old)
    assert code == 0, err
    for name in ("out_text_document.mindrecord", "out_text_document.mindrecord.db"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644
