"""Fault injection (issue 21): with a fixed seed, corrupt one artefact at a random offset (bytes
overwritten, or the file cut) -- dataset .bin/.idx, index-cache entries, checkpoint index.json,
latest, COMPLETE and shard files, HF safetensors headers -- then use everything in a subprocess
(tests/fault_victim.py) and check: no signal exit, no other exception than mfcore's errors, an
error (or warning) that names the damaged file, and no other artefact modified."""
import hashlib
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from mfcore.checkpoint import CheckpointManager
from mfcore.data import build_gpt_datasets, wait_for_index_cache
from mfcore.io.safetensors import write_hf_weights
from tests.data.test_gpt_dataset import random_docs, write_dataset

ROOT = Path(__file__).resolve().parents[1]
VICTIM = ROOT / "tests" / "fault_victim.py"
SEED = 2112
CASES_PER_TARGET = 6


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One directory with every kind of artefact, all valid."""
    d = tmp_path_factory.mktemp("pristine")
    write_dataset(d / "data", random_docs(np.random.default_rng(0), 150))
    build_gpt_datasets(str(d / "data"), "98,2,0", 16, 3, [300, 5, 0], str(d / "cache"))
    wait_for_index_cache()
    for step in (2, 4):
        CheckpointManager(str(d / "ck")).save(step, {"w": np.full((4, 3), step, np.float32),
                                                     "b": np.arange(5, dtype=np.int64)}, {"step": step})
    rng = np.random.default_rng(1)
    write_hf_weights({f"t{i}": rng.standard_normal(6).astype(np.float32) for i in range(4)}, str(d / "hf"),
                     max_shard_bytes=50)
    return d


def _corrupt(path: Path, rng) -> str:
    data = bytearray(path.read_bytes())
    if len(data) > 1 and rng.random() < 0.25:
        cut = int(rng.integers(0, len(data)))
        path.write_bytes(bytes(data[:cut]))
        return f"cut at {cut}"
    at = int(rng.integers(0, max(len(data), 1)))
    patch = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
    data[at:at + len(patch)] = patch
    path.write_bytes(bytes(data))
    return f"{len(patch)} bytes at {at}"


def _digest(d: Path, skip) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(_content(p)).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and not skip(p)}


def _content(p: Path) -> bytes:
    """A file's bytes; for a cache entry's description, without the recorded file stamps (a copied
    entry's are recorded anew once its values pass their check)."""
    data = p.read_bytes()
    if p.name == "description.json" and p.parent.parent.name == "cache":
        at = data.find(b',\n  "stamps": ')
        return data if at < 0 else data[:at]
    return data


def _targets_for_ids():
    # the target names are fixed by the layout; the cache entry's name is matched by its files
    return [("dataset", "data.bin"), ("dataset", "data.idx")] + \
        [("cache", f"CACHE/{n}") for n in ("description.json", "document_index.npy", "sample_index.npy",
                                            "shuffle_index.npy")] + \
        [("checkpoint", f"ck/step_00000004/{n}") for n in ("COMPLETE", "index.json", "rank_00000.safetensors",
                                                            "trainer_state.json")] + \
        [("checkpoint", "ck/latest")] + \
        [("hf", n) for n in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                             "model.safetensors.index.json")]


def _prepare(pristine: Path, where: Path, kind: str, target: str, rng):
    """A copy of the artefacts with ``target`` corrupted; (dir, damaged path, owner, how, digest)."""
    shutil.copytree(pristine, where)
    entry = next(p for p in (where / "cache").iterdir() if p.is_dir() and p.name.startswith("GPTDataset-train"))
    rel = target.replace("CACHE", str(entry.relative_to(where))) if target.startswith("CACHE") else target
    path = where / (rel if kind != "hf" else f"hf/{rel}")
    assert path.is_file(), f"{path} is not an artefact of this layout"
    how = _corrupt(path, rng)
    # what must stay as it was: everything but the damaged file (and for a cache entry, its entry,
    # which is rebuilt in place with equal arrays)
    owner = entry if kind == "cache" else path
    return path, owner, entry, how, _digest(where, _skipper(owner))


def _skipper(owner: Path):
    return lambda p: p == owner or owner in p.parents or p.name.endswith(".lock")


def _results(stdout: str) -> dict:
    """{case dir: everything the victim printed for it}."""
    out, current = {}, None
    for line in stdout.splitlines():
        if line.startswith("BEGIN "):
            current = line[len("BEGIN "):]
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


@pytest.mark.parametrize("kind, target", _targets_for_ids(), ids=lambda v: str(v).replace("/", ":"))
def test_corruption_is_refused_or_survived_never_a_crash(pristine, tmp_path, kind, target):
    rng = np.random.default_rng([SEED, zlib.crc32(target.encode())])  # fixed per target
    cases = {tmp_path / f"case{i}": _prepare(pristine, tmp_path / f"case{i}", kind, target, rng)
             for i in range(CASES_PER_TARGET)}
    r = subprocess.run([sys.executable, str(VICTIM), kind, *map(str, cases)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300, env={**os.environ, "GLOG_v": "3"})
    results = _results(r.stdout)
    last = list(results)[-1] if results else None
    crashed = f"the victim ended with {r.returncode} in {last}: {cases[Path(last)][3] if last else ''}"
    assert r.returncode == 0, f"{crashed}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"  # no signal, no stray exception
    warnings = r.stderr
    for case, (path, owner, entry, how, before) in cases.items():
        said = results[str(case)]
        context = f"{target} ({how}):\n{said}"
        assert "RESULT" in said, context
        if "error:" in said or "corrupt:" in said:                  # refused: the file is named
            assert str(path) in said or (str(path.parent) in said and path.name in said), context
        elif target == "ck/latest":                                 # fell back, with a warning naming it
            assert f"{path} is not usable" in warnings or f"{path} names" in warnings, context
        after = _digest(case, _skipper(owner))
        assert after == before, context
