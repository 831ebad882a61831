"""Model tests run in graph mode (what training uses) unless a module asks for PyNative; the mode is
restored afterwards so other packages' tests see what they set themselves."""
import mindspore as ms
import pytest


@pytest.fixture(autouse=True)
def execution_mode(request):
    previous = ms.get_context("mode")
    mode = getattr(request.module, "EXECUTION_MODE", ms.GRAPH_MODE)
    ms.set_context(mode=mode)
    yield
    ms.set_context(mode=previous)


@pytest.fixture
def kernels_built():
    """The C++ kernel tests check values: a missing kernel library fails them instead of skipping."""
    from mfcore.models.layers.cpu_kernels import kernel_library

    assert kernel_library() is not None, "libmfcore_kernels.so was not built (run `make build`)"
