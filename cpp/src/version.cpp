#include "mfcore/version.h"

namespace mfcore {

std::string core_version() { return MFCORE_VERSION; }

}  // namespace mfcore
