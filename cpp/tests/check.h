// The harness every Python-free C++ test shares (no test framework):
// CHECK records a failure and lets the test go on, so one run reports every
// broken behaviour; RunTests runs named tests, prints "[PASS] name" or
// "[FAIL] name" for each (an escaping exception fails that test), and gives
// the process exit code ctest reads. Throws checks that a call is refused.
#ifndef FRAMEGATE_CPP_TESTS_CHECK_H_
#define FRAMEGATE_CPP_TESTS_CHECK_H_

#include <cstdio>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace framegate::testing {

inline int g_failures = 0;

struct NamedTest {
  const char* name;
  std::function<void()> run;
};

// Runs every test in order; 0 when no CHECK failed and nothing escaped.
inline int RunTests(const std::vector<NamedTest>& tests) {
  for (const auto& test : tests) {
    const int before = g_failures;
    try {
      test.run();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: unexpected exception: %s\n", test.name, e.what());
      ++g_failures;
    }
    std::printf("[%s] %s\n", g_failures == before ? "PASS" : "FAIL", test.name);
  }
  if (g_failures) std::fprintf(stderr, "%d check(s) failed\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}

// True when `call` throws an `Exception` (std::invalid_argument unless named)
// whose message contains `message_part` (any message when it is empty).
// Other exceptions escape.
template <typename Exception = std::invalid_argument, typename Call>
bool Throws(Call&& call, const std::string& message_part = "") {
  try {
    std::forward<Call>(call)();
  } catch (const Exception& e) {
    return std::string(e.what()).find(message_part) != std::string::npos;
  }
  return false;
}

}  // namespace framegate::testing

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,       \
                   __LINE__, #cond);                                    \
      ++::framegate::testing::g_failures;                               \
    }                                                                   \
  } while (0)

#endif  // FRAMEGATE_CPP_TESTS_CHECK_H_
