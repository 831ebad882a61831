"""mf-ckpt info / verify / merge / export-ms on checkpoints made in the test."""
import argparse
import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from helpers.ckpt_ranks import save_as_ranks
from mfcore.checkpoint import ShardSpec
from mfcore.cli.ckpt import main, parse_size
from mfcore.io.safetensors import read_hf_weights

W = np.arange(4 * 6, dtype=np.float32).reshape(4, 6)
B = np.arange(3, dtype=np.float16)


def _make(root, steps=(1, 2)):
    for step in steps:  # saved by two "ranks": W split in rows, B on rank 0 only
        save_as_ranks(root, step, [
            {"model/w": (W[:2] * step, ShardSpec((4, 6), (0, 0))), "model/b": B},
            {"model/w": (W[2:] * step, ShardSpec((4, 6), (2, 0)))}],
            {"consumed_samples": 32 * step, "dataset_fingerprint": "fp"})


def test_info(tmp_path, capsys):
    _make(tmp_path)
    assert main(["info", "-c", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"checkpoints in {tmp_path}: 1, 2" in out
    assert "step: 2" in out and "2 rank file(s), 2 tensors" in out and "consumed_samples: 64" in out
    assert "model/w  F32[4, 6]  2 slice(s)  96 B" in out and "model/b  F16[3]  1 slice(s)  6 B" in out


def test_verify_ok_and_corrupt(tmp_path, capsys):
    _make(tmp_path)
    assert main(["verify", "-c", str(tmp_path)]) == 0
    assert "2 of 2 checkpoint(s) valid" in capsys.readouterr().out
    shard = tmp_path / "step_00000001" / "rank_00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    assert main(["verify", "-c", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"CORRUPT {tmp_path}/step_00000001: {shard}: checksum mismatch" in out
    assert "1 of 2 checkpoint(s) valid" in out


def test_merge_unifies_shards(tmp_path, capsys):
    _make(tmp_path / "ck")
    assert main(["merge", str(tmp_path / "out"), "-c", str(tmp_path / "ck"), "--max-shard-size", "50B"]) == 0
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == [".mfcore-output.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                     "model.safetensors.index.json", "trainer_state.json"]
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 96 + 6
    assert index["weight_map"] == {"model/b": "model-00001-of-00002.safetensors",
                                   "model/w": "model-00002-of-00002.safetensors"}
    merged = read_hf_weights(str(tmp_path / "out"))
    assert np.array_equal(merged["model/w"], W * 2) and np.array_equal(merged["model/b"], B)
    assert load_file(str(tmp_path / "out" / "model-00002-of-00002.safetensors"))["model/w"].tobytes() == (W * 2).tobytes()
    assert json.loads((tmp_path / "out" / "trainer_state.json").read_text())["consumed_samples"] == 64


def test_export_ms_ckpt(tmp_path, capsys):
    import mindspore as ms
    _make(tmp_path / "ck", steps=(3,))
    out = tmp_path / "m.ckpt"
    assert main(["export-ms", str(out), "-c", str(tmp_path / "ck" / "step_00000003"), "--prefix", "model/w"]) == 0
    loaded = ms.load_checkpoint(str(out))
    assert list(loaded) == ["model/w"]
    assert np.array_equal(loaded["model/w"].asnumpy(), W * 3)


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["info", "-c", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "nothing" in err
    _make(tmp_path / "ck", steps=(1,))
    with pytest.raises(SystemExit) as e:  # argparse: usage line + message, exit 2
        main(["merge", str(tmp_path / "o"), "-c", str(tmp_path / "ck"), "--max-shard-size", "lots"])
    assert e.value.code == 2 and "bad size 'lots'" in capsys.readouterr().err
    assert main(["export-ms", str(tmp_path / "m.bin"), "-c", str(tmp_path / "ck")]) == 2
    assert "must end in .ckpt" in capsys.readouterr().err


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2GiB") == 2 * 2**30 and parse_size("10kb") == 10**4
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("0MB")


def test_info_without_latest_uses_newest_complete(tmp_path, capsys):
    _make(tmp_path)  # as if killed after the rename, before `latest` moved
    os.remove(tmp_path / "latest")
    assert main(["info", "-c", str(tmp_path)]) == 0
    assert f"checkpoint {tmp_path}/step_00000002" in capsys.readouterr().out


def test_inspecting_and_merging_do_not_import_mindspore(tmp_path):
    """info / verify / merge read and write files only: they must not pay MindSpore's seconds-long
    import (a fresh interpreter, since this test process has imported it long ago)."""
    import subprocess
    import sys
    _make(tmp_path)
    script = ("import sys\nfrom mfcore.cli.ckpt import main\n"
              f"for argv in (['info', '-c', {str(tmp_path)!r}], ['verify', '-c', {str(tmp_path)!r}],\n"
              f"             ['merge', {str(tmp_path / 'merged')!r}, '-c', {str(tmp_path)!r}]):\n"
              "    assert main(argv) == 0, argv\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mindspore'))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "merged" / "model.safetensors").is_file()
