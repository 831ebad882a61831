"""docs/migrating-from-mindformers.md is executed: every ```bash block runs, in order, in one temporary
directory, rewritten by the guide's own substitution table (as tests/docs/test_pretraining_guide.py
does for docs/pretraining.md), after the stand-ins for a MindSpore Transformers user's files are
written: their YAML scaled down, a FileWriter MindRecord, a save_checkpoint .ckpt in their naming."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.docs.test_pretraining_guide import Guide, parse_guide, parse_substitutions

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "migrating-from-mindformers.md"
REFERENCE = REPO.parent / "shared" / "reference" / "mindformers" / "pretrain_llama2_7b.yaml"
if not REFERENCE.is_file():
    REFERENCE = Path("/work/shared/reference/mindformers/pretrain_llama2_7b.yaml")
SEQ = 16


def tiny_their_yaml(root: Path) -> None:
    """MindSpore Transformers' pretrain_llama2_7b.yaml with tiny sizes, on CPU, 2 data-parallel ranks."""
    data = yaml.safe_load(REFERENCE.read_text())
    model = data["model"]["model_config"]
    model.update(seq_length=SEQ, hidden_size=32, num_layers=1, num_heads=2, vocab_size=300, bos_token_id=1,
                 eos_token_id=0, compute_dtype="float32", param_init_type="float32",
                 softmax_compute_type="float32", rotary_dtype="float32")
    model.pop("pad_token_id")
    data["context"]["device_target"] = "CPU"
    data["parallel_config"]["data_parallel"] = 2
    data["runner_config"].update(batch_size=2, gradient_accumulation_steps=1)
    data["lr_schedule"]["total_steps"] = 4
    data["callbacks"][1]["save_checkpoint_steps"] = 2
    data["runner_wrapper"]["scale_sense"] = 1.0
    (root / "pretrain_llama2_7b.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def write_inputs(root: Path) -> None:
    from mfcore.data.preprocess.demo_corpus import demo_documents
    docs = iter(demo_documents())
    (root / "wikitext-103").mkdir()
    text = "".join(f" = Article {i} = \n \n {next(docs).strip()} \n \n" for i in range(40))
    (root / "wikitext-103" / "wiki.train.tokens").write_text(text, encoding="utf-8")
    tiny_their_yaml(root)
    sys.path.insert(0, str(REPO / "tests" / "checkpoint"))
    from tests.data.test_mindrecord import write_mindrecord
    from tests.checkpoint.test_ckpt_mindformers import _save, _their_llama
    rng = np.random.default_rng(0)
    rows = rng.integers(1, 300, size=(40, SEQ + 1))
    rows[:, 9] = 0  # EOD
    write_mindrecord(root / "wiki4096.mindrecord", rows)
    from mfcore.models import build_model
    from mfcore.models.hf import hf_state_dict
    from mfcore.config.loader import load_config
    from mfcore.train.trainer import model_config_of
    model = build_model(model_config_of(load_config(str(root / "pretrain_llama2_7b.yaml"), validate=False)))
    _save(_their_llama(hf_state_dict(model), model.config, fused=True), root / "llama2_7b.ckpt")


def train_tokenizer(root: Path) -> None:
    import subprocess
    subprocess.run([str(Path(sys.executable).parent / "mf-preprocess"), "train-tokenizer", "--input",
                    "wikitext-103/wiki.train.tokens", "--vocab-size", "300", "--output", "tokenizer.json"],
                   cwd=root, check=True, capture_output=True)


class MigrationGuide(Guide):
    def __init__(self, root: Path):
        super().__init__(root)
        text = GUIDE.read_text()
        self.blocks = parse_guide(text)
        self.subs = parse_substitutions(text)


@pytest.fixture(scope="module")
def guide(tmp_path_factory):
    root = tmp_path_factory.mktemp("migration")
    write_inputs(root)
    train_tokenizer(root)
    return MigrationGuide(root)


def _losses(path: Path):
    return {r["step"]: r["loss"] for r in map(json.loads, path.read_text().splitlines()) if "loss" in r}


@pytest.mark.slow
def test_1_dataset(guide):
    guide.run_section(1)
    from mfcore.data.mindrecord import open_mindrecord
    ds = open_mindrecord([str(guide.root / "data" / "wiki4096_text_document.mindrecord")], SEQ)
    assert len(ds) > 10 and ds.table.shape[1] == SEQ + 1


@pytest.mark.slow
def test_2_config(guide):
    out = guide.run_section(2)
    written = (guide.root / "llama2_7b.yaml").read_text()
    assert "data: 2  # parallel_config.data_parallel" in written
    assert "format: mindrecord  # train_dataset.data_loader.type MindDataset" in written
    resolved = yaml.safe_load(out[out.index("run:"):])
    assert resolved["data"]["prefixes"] == ["wiki4096.mindrecord"] and resolved["training"]["train_steps"] == 4
    assert resolved["training"]["global_batch_size"] == 4 and resolved["run"]["device_target"] == "CPU"


@pytest.mark.slow
def test_3_one_node(guide):
    out = guide.run_section(3)
    assert "done: 4 steps" in out
    assert sorted(p.name for p in (guide.root / "output" / "checkpoints").glob("step_*")) == \
        ["step_00000002", "step_00000004"]
    assert (guide.root / "output" / "msrun_log" / "worker_1.log").exists()


@pytest.mark.slow
def test_4_many_nodes(guide):
    guide.run_section(4)  # two nodes of one rank each: the same data-parallel run as section 3's
    assert _losses(guide.root / "output" / "multinode" / "metrics.jsonl") == \
        _losses(guide.root / "output" / "metrics.jsonl")


@pytest.mark.slow
def test_5_resume(guide):
    out = guide.run_section(5)
    assert "resumed from" in out and "step_00000004" in out, out[-3000:]
    assert "done: 8 steps" in out, out[-3000:]
    assert sorted(_losses(guide.root / "output" / "metrics.jsonl")) == list(range(1, 9))


@pytest.mark.slow
def test_6_checkpoints(guide):
    out = guide.run_section(6)
    assert (guide.root / "output" / "imported" / "step_00000000").is_dir()
    assert (guide.root / "output" / "reimported" / "step_00000000").is_dir()
    assert "done: 4 steps" in out and (guide.root / "llama2_7b_mfcore.ckpt").is_file()
    assert len(guide.used_subs) == len(guide.subs)  # every substitution still matches the guide
    assert guide.ran == {i for i, (s, lang, _) in enumerate(guide.blocks) if s is not None and lang == "bash"}
