// Deterministic stand-in for libFuzzer's main() in non-fuzz builds.
//
// Every fuzz target is also a plain test: this driver feeds it a bounded set
// of inputs (empty, all-zero, all-ones, and pseudo-random buffers of many
// sizes from a fixed seed) plus any files named on the command line, so the
// target's invariants are exercised under ASan/UBSan/TSan configs too.
// Under --config=fuzz the real libFuzzer main is linked instead.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv)
    __attribute__((weak));

namespace {

void RunOne(const std::vector<uint8_t>& input) {
  LLVMFuzzerTestOneInput(input.data(), input.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  size_t runs = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) continue;
    std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
    RunOne(data);
    ++runs;
  }
  const char* env_iters = std::getenv("HV_FUZZ_ITERATIONS");
  const size_t iterations =
      env_iters != nullptr ? std::strtoull(env_iters, nullptr, 10) : 20000;
  RunOne({});
  RunOne(std::vector<uint8_t>(4096, 0));
  RunOne(std::vector<uint8_t>(4096, 0xff));
  std::mt19937_64 rng(0x68760001);  // fixed seed: reproducible runs
  for (size_t i = 0; i < iterations; ++i) {
    // Mostly small inputs, occasionally large ones.
    const size_t size = (i % 97 == 0) ? rng() % 65536 : rng() % 1024;
    std::vector<uint8_t> input(size);
    for (auto& b : input) b = static_cast<uint8_t>(rng());
    RunOne(input);
    ++runs;
  }
  std::printf("fuzz_driver: %zu inputs executed\n", runs + 3);
  return 0;
}
