"""The configuration reference (``docs/configuration.md``) generated from the schema's help strings,
so the documentation cannot drift from the code: ``tools/gen_config_docs.py`` writes it and a test
checks the committed file is current."""
import dataclasses
import typing

from mfcore.config.schema import RunConfig

HEADER = """# mf-train configuration reference

Generated from `python/mfcore/config/schema.py` by `tools/gen_config_docs.py`; do not edit by hand.

A run config is one YAML file with the sections below. `base_config: other.yaml` (a path relative
to the file, or a shipped config name) is loaded first and this file is merged over it; on the
command line `section.key=value` overrides any key (values are parsed as YAML: `3e-4`, `true`,
`[a, b]`, `null`). An unknown key is an error that suggests the nearest valid one, and sizes that
cannot work together (e.g. `training.global_batch_size` not divisible by `micro_batch_size x
parallel.data`) are refused before anything starts. The resolved config is written to
`<run.output_dir>/config.yaml`. Shipped configs: `mf-train --list-configs`.
"""


def _type_text(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return _type_text(inner[0]) + " or null"
    if origin in (list, typing.List):
        return f"list of {_type_text(args[0])}"
    if origin in (dict, typing.Dict):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _default_text(f) -> str:
    if f.default is not dataclasses.MISSING:
        return "null" if f.default is None else repr(f.default).replace("'", "")
    return repr(f.default_factory()).replace("'", "")


def config_reference() -> str:
    lines = [HEADER]
    top_hints = typing.get_type_hints(RunConfig)
    for section in dataclasses.fields(RunConfig):
        cls = top_hints[section.name]
        hints = typing.get_type_hints(cls)
        lines += [f"## `{section.name}` — {section.metadata['help']}", "",
                  "| key | type | default | meaning |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            help_text = f.metadata["help"]
            if f.metadata.get("choices"):
                help_text += " One of: " + ", ".join(f"`{c}`" for c in f.metadata["choices"]) + "."
            lines.append(f"| `{f.name}` | {_type_text(hints[f.name])} | `{_default_text(f)}` | "
                         f"{help_text} |")
        lines.append("")
    return "\n".join(lines)
