// The extension module mfcore._core: a thin face over the C++ core (no logic here).
#include "registry.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "mfcore C++ core: Megatron indexed datasets and the GPT sample engine";
  for (auto bind : mfcore_bindings::binders()) bind(m);
}
