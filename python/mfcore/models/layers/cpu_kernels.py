"""Where our own C++ CPU kernels come from (``cpp/kernels/``, one shared library) and when they are used.

MindSpore runs them inside the compiled graph through ``ops.Custom(func_type="aot")``. The library is
built by CMake into the package next to ``mfcore._core``; without it (or with ``MFCORE_CPU_KERNELS=0``,
to compare with or fall back to the plain MindSpore formulations) every layer takes its plain path.
The kernels handle float32 only; Ascend keeps its own fused operators.
"""
import functools
import importlib.util
import os

import mindspore as ms
from mindspore import ops

LIBRARY_NAME = "libmfcore_kernels.so"  # installed next to mfcore._core
# threads the kernels may use (read by cpp/kernels/vector_math.h on every call; unset: all cores)
KERNEL_THREADS_ENV = "MFCORE_KERNEL_THREADS"


@functools.lru_cache(maxsize=None)
def kernel_library():
    """Path of the kernel library shipped in the package, or None when it was not built."""
    spec = importlib.util.find_spec("mfcore._core")
    if spec is None or not spec.origin:
        return None
    path = os.path.join(os.path.dirname(spec.origin), LIBRARY_NAME)
    return path if os.path.isfile(path) else None


def use_cpu_kernel(compute_dtype):
    """Whether the C++ kernels serve a layer: CPU target, float32, library built, not switched off."""
    return (ms.get_context("device_target") == "CPU" and compute_dtype == ms.float32
            and os.environ.get("MFCORE_CPU_KERNELS", "1") != "0" and kernel_library() is not None)


def one_element(*shapes):
    """``custom_op`` output shape of a kernel that returns one value (a scalar result or an ordering token)."""
    return (1,)


def float32_output(*dtypes):
    """``custom_op`` output dtype: float32 whatever the inputs."""
    return ms.float32


def custom_op(function, out_shape, out_dtype):
    """``ops.Custom`` running ``function`` of the kernel library (which must exist)."""
    library = kernel_library()
    if library is None:
        raise FileNotFoundError(f"{LIBRARY_NAME} was not built; reinstall mfcore (pip install -e .)")
    return ops.Custom(f"{library}:{function}", out_shape, out_dtype, func_type="aot")
