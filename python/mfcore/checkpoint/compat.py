"""Does a checkpoint belong to this run? Compare the saved model config and dataset fingerprint.

Resuming a run on other data or another model shape silently is the kind of mistake that costs a
week, so a mismatch is an error that lists every difference; the user can override it explicitly
(``allow_mismatch``), e.g. to continue pretraining on a new data mix.
"""
from typing import Any, Dict, List, Optional

from mfcore.errors import CheckpointError

class CheckpointMismatchError(CheckpointError):
    """The checkpoint is intact but belongs to another model or dataset (never skipped silently)."""


# trainer-state keys compared on resume, and what to call them in the message
CHECKED_KEYS = {"model_config": "model config", "dataset_fingerprint": "dataset fingerprint"}


def diff(saved: Any, current: Any, prefix: str = "") -> List[str]:
    """Human-readable differences between two JSON-like values (dicts compared key by key)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved:
                out.append(f"{where}: not in checkpoint, now {current[key]!r}")
            elif key not in current:
                out.append(f"{where}: checkpoint has {saved[key]!r}, now absent")
            else:
                out.extend(diff(saved[key], current[key], where))
        return out
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)):
        saved, current = list(saved), list(current)
    if saved != current:
        return [f"{prefix or 'value'}: checkpoint has {saved!r}, now {current!r}"]
    return []


def check_compatible(saved_state: Dict[str, Any], current: Dict[str, Any], where: str,
                     allow_mismatch: bool = False) -> List[str]:
    """Raise a CheckpointError listing what differs (unless allowed); returns the differences.

    Only keys present in ``current`` with a non-None value are compared, so a caller that does not
    know its dataset fingerprint (e.g. a weights-only import) simply does not pass it.
    """
    problems = []
    for key, label in CHECKED_KEYS.items():
        now: Optional[Any] = current.get(key)
        if now is None or key not in saved_state:
            continue
        problems.extend(f"{label}: {d}" for d in diff(saved_state[key], now))
    if problems and not allow_mismatch:
        raise CheckpointMismatchError(
            f"{where} does not match this run:\n  " + "\n  ".join(problems) +
            "\n(set checkpoint.allow_mismatch: true to resume anyway)")
    return problems
