"""Compute dtypes by name: the one table of names (and their short aliases) and the one rule about
which device can run them. No MindSpore here, so config checks use it before anything is built."""
from typing import Optional

from mfcore.errors import ConfigError

COMPUTE_DTYPES = ("float32", "float16", "bfloat16")
ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def compute_dtype_name(name: str) -> str:
    """The canonical name of a compute dtype name or alias (``bf16`` → ``bfloat16``)."""
    canonical = ALIASES.get(name, name)
    if canonical not in COMPUTE_DTYPES:
        raise ConfigError(f"compute dtype {name!r} is not one of {', '.join(COMPUTE_DTYPES + tuple(ALIASES))}")
    return canonical


def device_problem(name: str, device_target: str) -> Optional[str]:
    """Why ``device_target`` cannot compute in dtype ``name``, or None if it can."""
    if compute_dtype_name(name) == "bfloat16" and device_target.upper() == "CPU":
        return ("bfloat16 is not available on CPU: MindSpore 2.10's CPU backend has no bfloat16 "
                "MatMul; use float32 or float16 there")
    return None
