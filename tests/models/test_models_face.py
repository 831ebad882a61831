"""The models package exports every name its docstring and docs/architecture.md document, and
importing it (for configs, counts, weight files) leaves MindSpore unimported."""
import re
import subprocess
import sys
from pathlib import Path

import mfcore.models

ROOT = Path(__file__).resolve().parents[2]


def _documented_names():
    """Callables named as ``name(`` in the package docstring and as ``mfcore.models.name`` or
    ``name(`` in the Models section of docs/architecture.md."""
    names = set(re.findall(r"``(\w+)\(", mfcore.models.__doc__))
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("### Models", 1)[1].split("\n### ", 1)[0]
    names |= set(re.findall(r"mfcore\.models\.(\w+)\(", section))
    names |= set(re.findall(r"`(\w+)\(", section))
    return names - {"model"}  # ``model(input_ids)`` is a call of the built Cell, not an export


def test_every_documented_name_imports():
    names = _documented_names()
    assert {"from_pretrained", "save_pretrained", "build_model", "load_model_config"} <= names
    for name in sorted(names):
        namespace = {}
        exec(f"from mfcore.models import {name}", namespace)  # the form users write
        assert callable(namespace[name]), name
        assert name in mfcore.models.__all__, name


def test_all_is_importable():
    for name in mfcore.models.__all__:
        assert getattr(mfcore.models, name) is not None, name


def test_config_side_does_not_import_mindspore():
    code = ("import sys\nfrom mfcore.models import load_model_config, count_parameters\n"
            "count_parameters(load_model_config('tiny-llama3'))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mindspore'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
