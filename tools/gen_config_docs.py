"""Write docs/configuration.md from the run-config schema: .venv/bin/python tools/gen_config_docs.py"""
from pathlib import Path

from mfcore.config.docs import config_reference

if __name__ == "__main__":
    path = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
    path.write_text(config_reference())
    print(f"wrote {path}")
