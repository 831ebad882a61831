"""docs/configuration.md against the schema it is generated from: the committed file is what the
generator writes now, every schema key is documented in its section (and nothing else is), and every
key the shipped configs set is a documented one."""
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import yaml

from mfcore.config.docs import config_reference
from mfcore.config.loader import shipped_configs
from mfcore.config.schema import RunConfig

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "configuration.md"
REGENERATE = "docs/configuration.md is out of date with the schema; regenerate it with: " \
             ".venv/bin/python tools/gen_config_docs.py"
ROW = re.compile(r"^\| `(\w+)` \| ([^|]+) \| `([^`]*)` \| (.+) \|$")


def documented_sections(text: str):
    """{section: {key: (type, default, meaning)}} read back from the markdown tables."""
    sections, current = {}, None
    for line in text.splitlines():
        heading = re.match(r"^## `(\w+)`", line)
        if heading:
            current = sections.setdefault(heading.group(1), {})
            continue
        row = ROW.match(line)
        if row and current is not None:
            assert row.group(1) not in current, f"{row.group(1)} documented twice. {REGENERATE}"
            current[row.group(1)] = row.group(2, 3, 4)
    return sections


def schema_sections():
    return {s.name: {f.name: f for f in dataclasses.fields(s.default_factory())}
            for s in dataclasses.fields(RunConfig)}


def test_committed_reference_is_what_the_generator_writes():
    assert DOC.read_text() == config_reference(), REGENERATE


def test_every_schema_key_is_documented_with_default_and_meaning():
    doc, schema = documented_sections(DOC.read_text()), schema_sections()
    assert list(doc) == list(schema), REGENERATE
    for section, fields in schema.items():
        assert list(doc[section]) == list(fields), f"[{section}] keys differ. {REGENERATE}"
        for name, f in fields.items():
            _, default, meaning = doc[section][name]
            assert meaning.startswith(f.metadata["help"]), f"{section}.{name}: help text differs. {REGENERATE}"
            value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                # the config loader reads '1e-08' (a string to YAML 1.1) as the float the key is
                assert type(value)(yaml.safe_load(default)) == value, \
                    f"{section}.{name}: documented default {default!r} != {value!r}. {REGENERATE}"
            for choice in f.metadata.get("choices", ()):
                assert f"`{choice}`" in meaning, f"{section}.{name}: choice {choice} undocumented"


def test_every_key_of_the_shipped_configs_is_documented():
    doc = documented_sections(DOC.read_text())
    for name, path in shipped_configs().items():
        raw = yaml.safe_load(path.read_text())
        for section, values in raw.items():
            if section == "base_config":
                continue
            for key in values:
                assert key in doc.get(section, {}), f"{path.name}: {section}.{key} is not in configuration.md"


def test_generator_script_writes_the_reference(tmp_path):
    """tools/gen_config_docs.py (the command the failure messages name) really regenerates the file."""
    script = (REPO / "tools" / "gen_config_docs.py").read_text()
    assert "config_reference()" in script and "configuration.md" in script
    probe = tmp_path / "gen.py"
    probe.write_text(script.replace('Path(__file__).resolve().parent.parent / "docs" / "configuration.md"',
                                    f"Path({str(tmp_path / 'configuration.md')!r})"))
    subprocess.run([sys.executable, str(probe)], check=True, capture_output=True)
    assert (tmp_path / "configuration.md").read_text() == config_reference()
