"""docs/pretraining.md is executed: every ```bash block runs, in order, in one temporary directory,
rewritten by the substitution table of the guide's last section (real sizes -> tiny ones), so the
guide cannot rot. One test per guide section; each checks the artefacts its commands produced.

The table is read from the guide itself, so what the guide says is substituted is exactly what is.
"""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mfcore.data import IndexedDataset

slow = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "pretraining.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)
SECTION = re.compile(r"^## (\d+)\. ", re.M)
# Lines that look like commands a reader would type: they must live in ```bash blocks.
COMMAND_LIKE = re.compile(r"^\s*(\$ |mf-\w|python |make |pip |bash |export |cat > )")
SCRIPT_TIMEOUT = 600

# Defined for every block: wait until the run in DIR has logged step N (stop waiting if PID died).
PRELUDE = r"""
guide_wait_for_step() {
  # awk, not python: a poll must cost milliseconds, or the run is many steps further when it ends
  until [ -f "$2/metrics.jsonl" ] && awk -v n="$1" '
      match($0, /"step": [0-9]+/) && substr($0, RSTART + 8, RLENGTH - 8) + 0 >= n { found = 1 }
      END { exit !found }' "$2/metrics.jsonl"; do
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
}
"""

TINY_MODEL = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
              "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1024}
TINY_CONFIGS = {  # file under tiny/ -> (shipped tiny base, the full-size config's run name/output dir)
    "llama2-7b.yaml": ("tiny-llama2", "llama2-7b", "output/llama2_7b"),
    "llama3-70b.yaml": ("tiny-llama3", "llama3-70b", "output/llama3_70b"),
    "deepseek-v3-1node.yaml": ("tiny-deepseek-v3", "deepseek-v3-1node", "output/deepseek_v3_1node"),
}
# what a tiny config changes besides TINY_MODEL: DeepSeek's data is tokenised with its 128k tokenizer
TINY_EXTRA = {"deepseek-v3-1node.yaml": {"model": {"vocab_size": 129280},
                                         "data": {"prefixes": ["data/deepseek_text_document"], "eod_id": 1}}}


def parse_guide(text: str):
    """[(section number or None, language, body)] for every fenced block, in order."""
    starts = [(m.start(), int(m.group(1))) for m in SECTION.finditer(text)]
    tested_at = text.index("## How this guide is tested")
    blocks = []
    for m in FENCE.finditer(text):
        section = None
        for pos, number in starts:
            if pos < m.start():
                section = number
        blocks.append((None if m.start() > tested_at else section, m.group(1), m.group(2)))
    return blocks


def parse_substitutions(text: str):
    """The guide's table: rows of `| `in the guide` | `in the test` |`, top to bottom."""
    tail = text[text.index("## How this guide is tested"):]
    return re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|$", tail, re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_inputs(root: Path) -> None:
    """The downloads' stand-ins: a wikitext-103 style file and a JSONL corpus; the tiny configs."""
    from mfcore.data.preprocess.demo_corpus import demo_documents

    docs = iter(demo_documents())
    (root / "wikitext-103").mkdir()
    articles = [f" = Article {i} = \n \n" + "".join(f" {p.strip()} \n" for p in next(docs).split("\n\n")
                                                   if p.strip()) + " \n" for i in range(60)]
    (root / "wikitext-103" / "wiki.train.tokens").write_text("".join(articles), encoding="utf-8")
    (root / "corpus").mkdir()
    for part in range(2):
        lines = [json.dumps({"text": next(docs), "url": f"doc{part}-{i}"}) for i in range(20)]
        (root / "corpus" / f"part{part}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "tiny").mkdir()
    for name, (base, run_name, output_dir) in TINY_CONFIGS.items():
        config = {"base_config": base, "run": {"name": run_name, "output_dir": output_dir},
                  "model": {"overrides": dict(TINY_MODEL)},
                  "data": {"prefixes": ["data/pretrain_text_document"], "seq_length": 32,
                           "eod_id": 0, "cache_dir": None, "num_workers": 1},
                  "training": {"global_batch_size": 4, "micro_batch_size": 2, "train_steps": 4,
                               "eval_interval": 0},
                  "checkpoint": {"save_interval": 2}, "logging": {"log_interval": 1},
                  "parallel": {"data": 2}}
        for section, values in TINY_EXTRA.get(name, {}).items():
            (config["model"]["overrides"] if section == "model" else config[section]).update(values)
        (root / "tiny" / name).write_text(json.dumps(config, indent=1))  # JSON is YAML


class Guide:
    """The guide's blocks, the workdir they run in, and the bookkeeping of what ran."""

    def __init__(self, root: Path):
        self.root = root
        text = GUIDE.read_text()
        self.blocks = parse_guide(text)
        self.subs = parse_substitutions(text)
        self.used_subs = set()
        self.ran = set()
        self.env = dict(os.environ, GLOG_v="3", PYTHONUNBUFFERED="1",
                        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

    def rewrite(self, body: str) -> str:
        for i, (real, tiny) in enumerate(self.subs):
            if real in body:
                self.used_subs.add(i)
                body = body.replace(real, tiny)
        return body

    def start(self, script: str, port: int) -> subprocess.Popen:
        return subprocess.Popen(["bash", "-euo", "pipefail", "-c", PRELUDE + script], cwd=self.root,
                                env=dict(self.env, GUIDE_PORT=str(port)), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def run_block(self, body: str) -> str:
        proc = self.start(self.rewrite(body), free_port())
        out, _ = proc.communicate(timeout=SCRIPT_TIMEOUT)
        assert proc.returncode == 0, f"guide block failed (exit {proc.returncode}):\n{body}\n--- output:\n{out[-6000:]}"
        return out

    def run_section(self, number: int) -> str:
        """Run every bash block of section ``number``; their combined output."""
        outputs = []
        for index, (section, lang, body) in enumerate(self.blocks):
            if section != number or lang != "bash":
                continue
            outputs.append(self.run_nodes(body) if "NODE_RANK=0" in body else self.run_block(body))
            self.ran.add(index)
        assert outputs, f"section {number} of the guide has no bash block"
        return "\n".join(outputs)

    def run_nodes(self, body: str) -> str:
        """The multi-node block, run at once as node 0 and node 1 of one job on this host."""
        port = free_port()
        nodes = [self.start(self.rewrite(body).replace("NODE_RANK=0", f"NODE_RANK={rank}"), port)
                 for rank in (0, 1)]
        outs = [node.communicate(timeout=SCRIPT_TIMEOUT)[0] for node in nodes]
        for rank, (node, out) in enumerate(zip(nodes, outs)):
            assert node.returncode == 0, f"node {rank} failed:\n{out[-6000:]}"
        assert "done: 4 steps" in outs[0] and "done:" not in outs[1]   # rank 0's log streams on node 0
        return outs[0] + outs[1]


@pytest.fixture(scope="module")
def guide(tmp_path_factory):
    root = tmp_path_factory.mktemp("guide")
    write_inputs(root)
    return Guide(root)


def checkpoint_steps(root: Path):
    return sorted(p.name for p in root.glob("step_*") if (p / "COMPLETE").exists())


@slow
def test_1_prepare_a_dataset(guide):
    out = guide.run_section(1)
    from tokenizers import Tokenizer
    assert Tokenizer.from_file(str(guide.root / "tokenizer.json")).get_vocab_size() == 1024
    data = guide.root / "data"
    wiki = IndexedDataset(str(data / "pretrain_text_document"))
    web = IndexedDataset(str(data / "web_text_document"))
    merged = IndexedDataset(str(data / "all_text_document"))
    assert wiki.num_documents == 60 and web.num_documents == 40
    assert merged.num_documents == 100
    assert int(merged.sequence_lengths.sum()) == int(wiki.sequence_lengths.sum() + web.sequence_lengths.sum())
    assert wiki[0][-1] == 0 and web[0][-1] == 0          # --append-eod: <|endoftext|> is id 0
    packed = IndexedDataset(str(data / "packed_text_document"))
    assert set(packed.sequence_lengths.tolist()) == {65}   # --seq-length 64 --pack stitch
    assert int(packed.sequence_lengths.sum()) == 65 * (int(wiki.sequence_lengths.sum()) // 65)
    assert re.search(r"^documents\s+100$", out, re.M)                # mf-data info of the merge


@slow
def test_2_the_config_file(guide):
    out = guide.run_section(2)
    for name in ("llama2-7b", "llama3-70b", "deepseek-v3-671b", "tiny-llama3"):
        assert re.search(rf"^{re.escape(name)}\s", out, re.M), name
    mine = out[out.index("name: my-llama2"):]
    assert "output_dir: output/my_llama2" in mine and "micro_batch_size: 2" in mine
    assert re.search(r"weights:\n  - 0\.7\n  - 0\.3", mine) and "lr: 0.0002" in mine
    assert "eod_id: 0" in mine
    assert "config: my-llama2" in out and "tokens per step: 128 (4 x 32)" in out
    assert "memory per device (estimate)" in out


@slow
def test_3_launch(guide):
    out = guide.run_section(3)
    for run in ("my_llama2", "llama3_70b"):
        ckpts = guide.root / "output" / run / "checkpoints"
        assert checkpoint_steps(ckpts) == ["step_00000002", "step_00000004"], run
        assert (ckpts / "latest").read_text().strip() == "step_00000004"
        files = json.loads((ckpts / "step_00000004" / "index.json").read_text())["files"]
        assert sorted(f["rank"] for f in files.values()) == [0, 1], run     # two data-parallel ranks
    assert out.count("done: 4 steps, 512 tokens") >= 2
    assert (guide.root / "output" / "msrun_log" / "worker_1.log").exists()


@slow
def test_4_monitor(guide):
    out = guide.run_section(4)
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert records and records[-1]["step"] == 4 and records[-1]["consumed_tokens"] == 512
    assert np.isfinite(records[-1]["loss"])
    run = guide.root / "output" / "my_llama2"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert re.search(r"name: my-llama2\n[\s\S]*weights:\n  - 0\.7", (run / "config.yaml").read_text())
    png = run / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@slow
def test_5_checkpoints(guide):
    out = guide.run_section(5)
    assert "step: 4" in out
    root = guide.root
    from safetensors.numpy import load_file
    merged = load_file(root / "merged_llama2" / "model.safetensors")      # small: one file, no index
    assert merged["model/model.embed_tokens.weight"].shape == (1024, 64)
    assert any(name.startswith("optimizer/") for name in merged)
    hf_config = json.loads((root / "hf_llama2" / "config.json").read_text())
    assert hf_config["hidden_size"] == 64 and hf_config["num_hidden_layers"] == 2
    hf = load_file(root / "hf_llama2" / "model.safetensors")
    assert not any(name.startswith("optimizer") for name in hf)
    np.testing.assert_array_equal(hf["model.embed_tokens.weight"], merged["model/model.embed_tokens.weight"])
    import mindspore as ms
    ms_params = ms.load_checkpoint(str(root / "llama2.ckpt"))
    assert ms_params and all(name.startswith("model") for name in ms_params)
    assert checkpoint_steps(root / "output" / "continued" / "checkpoints") == ["step_00000000"]


@slow
def test_6_fault_recovery(guide):
    END = 30  # the guide's table: the restarted job's train_steps
    out = guide.run_section(6)
    assert "mf-train exited with code 75" in out
    stopped = re.search(r"stopped by SIGTERM after step (\d+)", out)
    # the restarted job must have steps left to run after the stop (it ends at step END)
    assert stopped and 5 <= int(stopped.group(1)) < END, out[-3000:]
    ckpts = guide.root / "output" / "my_llama2" / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == f"step_{END:08d}"
    files = json.loads((ckpts / f"step_{END:08d}" / "index.json").read_text())["files"]
    assert sorted(f["rank"] for f in files.values()) == [0, 1]
    state = json.loads((ckpts / f"step_{END:08d}" / "trainer_state.json").read_text())
    assert state["consumed_tokens"] == END * 128
    records = [json.loads(line) for line in (ckpts.parent / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps[-1] == END


@slow
def test_7_deepseek_v3(guide):
    out = guide.run_section(7)
    data = IndexedDataset(str(guide.root / "data" / "deepseek_text_document"))
    assert data.num_documents == 60 and data[0][-1] == 1                # <｜end▁of▁sentence｜> is id 1
    assert 1024 < max(int(data[i].max()) for i in range(data.num_documents)) < 129280   # the 128k vocabulary
    assert "config deepseek-v3-1node:" in out and "TP1 x PP1 x DP8 ZeRO-1" in out and "runs today: yes" in out
    ckpts = guide.root / "output" / "deepseek_v3_1node" / "checkpoints"
    assert checkpoint_steps(ckpts) == ["step_00000002", "step_00000004"]
    files = json.loads((ckpts / "step_00000004" / "index.json").read_text())["files"]
    assert sorted(f["rank"] for f in files.values()) == [0, 1]
    # the test runs 2 ranks per node: the launch refuses the rank count before starting any rank
    assert "asks for parallel.tensor (4) x parallel.pipeline (32) x parallel.data (8) = 1024" in out
    assert "mf-launch exited with code 2" in out


@slow
def test_every_block_ran_and_every_substitution_matched(guide):
    """Runs last: nothing in the guide escaped the test, and the table has no dead rows."""
    for index, (section, lang, body) in enumerate(guide.blocks):
        if lang == "bash":
            assert index in guide.ran, f"bash block not run by any test:\n{body}"
        else:
            for line in body.splitlines():
                assert not COMMAND_LIKE.match(line), f"a command outside a bash block: {line!r}"
    unused = [guide.subs[i][0] for i in range(len(guide.subs)) if i not in guide.used_subs]
    assert not unused, f"substitutions that match nothing in the guide: {unused}"
    assert len(guide.subs) >= 10


def test_guide_is_executable_as_written():
    """Fast (not slow) structure check: every bash block is in a numbered section, no command hides in
    another kind of block, every substitution row matches the guide, and the tiny configs' run names
    are the full-size configs' ones (so the guide's output paths are the real ones)."""
    text = GUIDE.read_text()
    blocks, subs = parse_guide(text), parse_substitutions(text)
    bash = [(section, body) for section, lang, body in blocks if lang == "bash"]
    assert {section for section, _ in bash} == {1, 2, 3, 4, 5, 6, 7}
    for section, lang, body in blocks:
        assert lang in ("bash", "text"), f"fenced block of unknown kind {lang!r}: tag it bash or text"
        if lang != "bash":
            assert not any(COMMAND_LIKE.match(line) for line in body.splitlines()), body
    guide_text = "\n".join(body for _, body in bash)
    assert all(real in guide_text for real, _ in subs), [r for r, _ in subs if r not in guide_text]
    assert sum("NODE_RANK=0" in body for _, body in bash) == 1
    from mfcore.config.loader import load_config
    for name, (_, run_name, output_dir) in TINY_CONFIGS.items():
        real = load_config(name[:-len(".yaml")], validate=False)
        assert (real.run.name, real.run.output_dir) == (run_name, output_dir)
