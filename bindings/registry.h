#pragma once
// Each bindings/<concept>.cpp registers its own definitions, so adding a concept never edits
// another file:   MFCORE_BINDING(indexed_dataset) { m.def(...); }
#include <pybind11/pybind11.h>

#include <functional>
#include <vector>

namespace mfcore_bindings {

using Binder = void (*)(pybind11::module_&);

inline std::vector<Binder>& binders() {
  static std::vector<Binder> all;
  return all;
}
struct Register {
  explicit Register(Binder b) { binders().push_back(b); }
};

}  // namespace mfcore_bindings

#define MFCORE_BINDING(name)                                                      \
  static void mfcore_bind_##name(pybind11::module_& m);                           \
  static mfcore_bindings::Register mfcore_register_##name(&mfcore_bind_##name);   \
  static void mfcore_bind_##name(pybind11::module_& m)
