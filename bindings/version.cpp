#include "mfcore/version.h"
#include "registry.h"

MFCORE_BINDING(version) {
  m.attr("__version__") = mfcore::core_version();
  m.def("core_version", &mfcore::core_version, "Version of the C++ core.");
}
