#pragma once
// A minimal test harness (no external framework is needed to build the tests anywhere):
// TEST(name) { CHECK(cond); CHECK_EQ(a, b); CHECK_THROWS(expr); }  and  int main() { return run_all(); }
#include <algorithm>
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace mft {

struct Case {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& cases() {
  static std::vector<Case> all;
  return all;
}
inline int& failures() {
  static int n = 0;
  return n;
}
struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { cases().push_back({name, std::move(fn)}); }
};
inline void fail(const char* file, int line, const std::string& what) {
  ++failures();
  std::fprintf(stderr, "%s:%d: FAILED %s\n", file, line, what.c_str());
}

}  // namespace mft

#define MFT_CAT2(a, b) a##b
#define MFT_CAT(a, b) MFT_CAT2(a, b)
#define TEST(name)                                                      \
  static void name();                                                   \
  static mft::Registrar MFT_CAT(registrar_, name)(#name, name);         \
  static void name()

#define CHECK(cond) \
  do { if (!(cond)) mft::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); } while (0)

#define CHECK_EQ(a, b)                                                              \
  do {                                                                              \
    auto mft_a = (a);                                                               \
    auto mft_b = (b);                                                               \
    if (!(mft_a == mft_b)) {                                                        \
      std::ostringstream mft_os;                                                    \
      mft_os << "CHECK_EQ(" #a ", " #b "): " << mft_a << " != " << mft_b;           \
      mft::fail(__FILE__, __LINE__, mft_os.str());                                  \
    }                                                                               \
  } while (0)

#define CHECK_THROWS(expr)                                                          \
  do {                                                                              \
    bool mft_threw = false;                                                         \
    try { (void)(expr); } catch (...) { mft_threw = true; }                         \
    if (!mft_threw) mft::fail(__FILE__, __LINE__, "CHECK_THROWS(" #expr ")");       \
  } while (0)

inline int run_all() {
  int failed_cases = 0;
  for (const auto& c : mft::cases()) {
    int before = mft::failures();
    try {
      c.fn();
    } catch (const std::exception& e) {
      mft::fail(c.name, 0, std::string("uncaught exception: ") + e.what());
    }
    bool ok = mft::failures() == before;
    if (!ok) ++failed_cases;
    std::printf("[%s] %s\n", ok ? " OK " : "FAIL", c.name);
  }
  std::printf("%zu cases, %d failed\n", mft::cases().size(), failed_cases);
  return failed_cases == 0 ? 0 : 1;
}
