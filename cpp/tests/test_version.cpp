#include "harness.h"
#include "mfcore/version.h"

TEST(version_matches_project) { CHECK_EQ(mfcore::core_version(), std::string(MFCORE_VERSION)); }
TEST(version_is_semver_like) {
  auto v = mfcore::core_version();
  CHECK(std::count(v.begin(), v.end(), '.') == 2);
}

int main() { return run_all(); }
