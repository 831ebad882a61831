"""Shared fixtures. Every test that may compile a graph runs in a temporary directory, because a
failed MindSpore compile dumps ``rank_0/`` into the working directory."""
import os

import pytest

os.environ.setdefault("GLOG_v", "3")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test with a fresh temporary working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
