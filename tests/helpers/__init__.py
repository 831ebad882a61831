"""Helpers shared by the test folders (pytest puts ``tests/`` on the path: ``pythonpath`` in
pyproject.toml), imported as ``from helpers.<module> import ...``."""
