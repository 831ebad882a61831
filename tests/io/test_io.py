"""mfcore.io: the one safetensors reader (whole tensors and slices, bfloat16, damaged files) and
the one atomic-replace helper (the old file survives a failed write)."""
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from safetensors.numpy import save_file

from mfcore.errors import CheckpointError
from mfcore.io import atomic
from mfcore.io.safetensors import SafetensorsFile, read_safetensors, write_safetensors


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "state.json"
    atomic.write_json(str(path), {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(str(path)) as f:
            f.write('{"v": 2, "half')
            raise RuntimeError("killed while writing")
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["state.json"]  # no temporary left behind
    atomic.write_text(str(path), "new\n")
    assert path.read_text() == "new\n"


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), data=st.data())
def test_slices_equal_numpy_slicing(tmp_path_factory, shape, data):
    path = str(tmp_path_factory.mktemp("st") / "a.safetensors")
    value = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    write_safetensors({"a": value, "b": value.astype(np.int16)}, path)
    index = tuple(slice(lo, lo + data.draw(st.integers(1, n - lo)))
                  for n, lo in ((n, data.draw(st.integers(0, n - 1))) for n in shape))
    f = SafetensorsFile(path)
    np.testing.assert_array_equal(f.read("a", index), value[index])
    np.testing.assert_array_equal(f.read("b"), value.astype(np.int16))
    assert f.shape("a") == tuple(shape) and sorted(f.names()) == ["a", "b"]


def test_bfloat16_reads_as_float32_whole_and_sliced(tmp_path):
    value = np.array([[1.0, -2.5], [0.15625, 2.0 ** 100]], np.float32)
    bits = (value.view(np.uint32) >> 16).astype(np.uint16)  # exact: these values fit in bfloat16
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bits.tobytes())
    np.testing.assert_array_equal(read_safetensors(str(path))["w"], value)
    np.testing.assert_array_equal(SafetensorsFile(str(path)).read("w", (slice(1, 2),)), value[1:2])


def test_same_tensors_as_the_safetensors_package_writes(tmp_path):
    tensors = {"x": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float16),
               "flag": np.array([True, False]), "n": np.array(7, np.int64)}
    save_file(tensors, str(tmp_path / "p.safetensors"))
    got = read_safetensors(str(tmp_path / "p.safetensors"))
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:5], "too short"),
    (lambda b: (10 ** 9).to_bytes(8, "little") + b[8:], "exceeds the file size"),
    (lambda b: b[:-4], "do not match"),
])
def test_damaged_files_are_named(tmp_path, damage, message):
    path = tmp_path / "d.safetensors"
    write_safetensors({"a": np.zeros((4, 4), np.float32)}, str(path))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=f"{path}: .*{message}"):
        read_safetensors(str(path))
