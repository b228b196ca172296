// Runs the hv-vmm binary (from the test's runfiles) and collects what it
// printed and its exit code.
#ifndef TESTS_UTIL_RUN_VMM_H_
#define TESTS_UTIL_RUN_VMM_H_

#include <string>
#include <vector>

namespace hv::test {

struct VmmResult {
  int exit_code = -1;  // -1 if it could not be spawned or was killed
  std::string out;
  std::string err;
};

// Spawns `hv/vmm/hv-vmm args...`; stdout and stderr are drained
// concurrently so a chatty guest cannot block on a full pipe.
VmmResult RunVmm(std::vector<std::string> args);

}  // namespace hv::test

#endif  // TESTS_UTIL_RUN_VMM_H_
