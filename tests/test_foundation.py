"""The package, its compiled core and its commands are in place."""
import subprocess
import sys

import pytest

import mfcore
from mfcore import _core

COMMANDS = ["mf-preprocess", "mf-train", "mf-launch", "mf-data", "mf-ckpt"]


def test_core_version_matches_package():
    assert _core.__version__ == mfcore.__version__
    assert mfcore.core_version() == mfcore.__version__


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_explains_itself(command):
    bindir = __import__("pathlib").Path(sys.executable).parent
    out = subprocess.run([str(bindir / command), "--help"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith(f"usage: {command}")
    assert len(out.stdout.splitlines()) >= 3
