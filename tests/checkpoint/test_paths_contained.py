"""Issue 21 row 5: names read from files stay inside their directory (mfcore.io.paths), `mf-ckpt info`
follows `latest` with the resume fallback and never outside the root, malformed HF safetensors
headers are one clear error."""
import hashlib
import json
import os
import struct

import numpy as np
import pytest

from mfcore.checkpoint import CheckpointManager
from mfcore.checkpoint.load import resolve_step_dir
from mfcore.cli.ckpt import main
from mfcore.errors import CheckpointError
from mfcore.io.paths import UnsafePathError, contained_path
from mfcore.io.safetensors import read_hf_weights, read_safetensors, write_hf_weights


@pytest.mark.parametrize("name, problem", [("../x", "'..'"), ("a/../../x", "'..'"), ("/etc/passwd", "absolute"),
                                           ("a\x00b", "NUL"), ("", "not a file name"), (3, "not a file name")])
def test_unsafe_names_are_refused_naming_the_source(tmp_path, name, problem):
    with pytest.raises(UnsafePathError) as e:
        contained_path(str(tmp_path), name, "/some/index.json")
    assert str(e.value).startswith("/some/index.json: names ") and problem in str(e.value)


def test_symlink_out_of_the_directory_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "outside").write_text("secret")
    os.symlink(tmp_path / "outside", tmp_path / "d" / "link")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        contained_path(str(tmp_path / "d"), "link", "idx")
    assert contained_path(str(tmp_path / "d"), "sub/f.bin", "idx") == str(tmp_path / "d" / "sub" / "f.bin")


def _save(root, step, value=1.0):
    CheckpointManager(root).save(step, {"w": np.full(4, value, np.float32)}, {"step": step})
    return os.path.join(root, f"step_{step:08d}")


def _rewrite_index(step_dir, change):
    """Edits index.json and re-seals the marker, as a careful attacker would."""
    path = os.path.join(step_dir, "index.json")
    index = json.load(open(path))
    change(index)
    data = json.dumps(index).encode()
    open(path, "wb").write(data)
    marker_path = os.path.join(step_dir, "COMPLETE")
    marker = json.load(open(marker_path))
    marker["index_sha256"] = hashlib.sha256(data).hexdigest()
    json.dump(marker, open(marker_path, "w"))


@pytest.mark.parametrize("evil", ["../../outside.safetensors", "/tmp/outside.safetensors"])
def test_checkpoint_index_naming_a_file_outside_is_refused(tmp_path, capsys, evil):
    step_dir = _save(str(tmp_path / "ck"), 5)

    def point_outside(index):
        (old,) = index["files"]
        index["files"] = {evil: index["files"][old]}
        for entry in index["tensors"].values():
            for s in entry["slices"]:
                s["file"] = evil
    _rewrite_index(step_dir, point_outside)
    for argv in (["verify", "-c", step_dir], ["info", "-c", step_dir], ["merge", str(tmp_path / "m"), "-c", step_dir]):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code in (1, 2) and "Traceback" not in err, argv
        assert f"{step_dir}/index.json: names {evil!r}" in out + err, argv
    with pytest.raises(CheckpointError, match="index.json: names"):
        CheckpointManager(str(tmp_path / "ck")).load("auto")


@pytest.mark.parametrize("latest", [b"../elsewhere/step_00000009\n", b"/abs/step_00000009\n", b"\xff\xfe\x00bad",
                                    b"step_00000099\n", b"step_00000002\n"])
def test_info_follows_latest_with_the_resume_fallback(tmp_path, capsys, latest):
    root = str(tmp_path / "ck")
    _save(root, 2)
    newest = _save(root, 4)
    _save(str(tmp_path / "elsewhere"), 9)  # a valid checkpoint outside the root
    with open(os.path.join(root, "latest"), "wb") as f:
        f.write(latest)
    expect = os.path.join(root, "step_00000002") if latest == b"step_00000002\n" else newest
    assert resolve_step_dir(root) == expect
    assert main(["info", "-c", root]) == 0
    out, err = capsys.readouterr()
    assert f"checkpoint {expect}\n" in out and "Traceback" not in err
    assert "elsewhere" not in out


def _hf_dir(tmp_path):
    d = tmp_path / "hf"
    write_hf_weights({"a": np.ones(3, np.float32), "b": np.zeros(2, np.float32)}, str(d), max_shard_bytes=12)
    return d


@pytest.mark.parametrize("evil", ["../outside.safetensors", "/tmp/x.safetensors"])
def test_hf_weight_map_naming_a_file_outside_is_refused(tmp_path, evil):
    d = _hf_dir(tmp_path)
    write_hf_weights({"a": np.ones(3, np.float32)}, str(tmp_path / "o"), max_shard_bytes=10**9)
    os.replace(tmp_path / "o" / "model.safetensors", tmp_path / "outside.safetensors")
    index_path = d / "model.safetensors.index.json"
    index = json.load(open(index_path))
    index["weight_map"]["a"] = evil
    json.dump(index, open(index_path, "w"))
    with pytest.raises(CheckpointError, match=f"{index_path}: names {evil!r}"):
        read_hf_weights(str(d))


def _raw_safetensors(path, header):
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"\0" * 16)


@pytest.mark.parametrize("header", [
    [1, 2], "text", {"t": 3}, {"t": {"dtype": "F32"}}, {"t": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}},
    {"t": {"dtype": "F32", "shape": [4], "data_offsets": [0]}}, {"t": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}},
    {"t": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 16]}}, {"t": {"dtype": 5, "shape": [4], "data_offsets": [0, 16]}},
    {"t": {"dtype": "F32", "shape": [4], "data_offsets": [8, 4]}}, b"\xff\xfe{}", b"[" * 100000])
def test_malformed_safetensors_headers_are_one_clear_error(tmp_path, header):
    path = tmp_path / "model.safetensors"
    _raw_safetensors(path, header)
    with pytest.raises(CheckpointError) as e:
        read_safetensors(str(path))
    assert str(e.value).startswith(f"{path}: ")
