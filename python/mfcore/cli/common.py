"""Shared by the commands: user errors become one clear line and exit code 2, never a traceback."""
import sys
from typing import Callable, Optional, Sequence

from mfcore.errors import MfcoreError


def run_main(fn: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Run a command's body; an :class:`MfcoreError` is printed as ``error: ...`` and exits 2."""
    try:
        return fn(argv) or 0
    except MfcoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
