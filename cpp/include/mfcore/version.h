#pragma once
#include <string>

namespace mfcore {

// Version of the C++ core, set by CMake from the project version.
std::string core_version();

}  // namespace mfcore
