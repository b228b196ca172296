// SHA-256 (FIPS 180-4 §6.2), used to record a digest of every loaded segment
// and re-verify it right before the jump into the image (docs/kexec.md,
// "Integrity"). Self-contained: no libcrypto dependency.
//
// Thread safety: a Sha256 object is not shared; the free function is
// reentrant.
#ifndef HV_LOADER_SHA256_H_
#define HV_LOADER_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/types/span.h"

namespace hv::loader {

using Sha256Digest = std::array<uint8_t, 32>;

// Which compression function to run. kAuto picks the x86 SHA extensions
// (SHA-NI: SHA256RNDS2/MSG1/MSG2) when the CPU has them, else the portable
// code. Both compute the same function; tests check them against each other.
enum class Sha256Impl { kAuto, kPortable, kShaNi };

// True if this CPU supports the SHA-NI path (CPUID.7.0:EBX.SHA[bit 29] plus
// SSSE3/SSE4.1).
bool Sha256HaveShaNi();

class Sha256 {
 public:
  // kShaNi on a CPU without SHA-NI falls back to the portable code.
  explicit Sha256(Sha256Impl impl = Sha256Impl::kAuto);
  // Appends `data` to the message (any length, any number of calls).
  void Update(absl::Span<const uint8_t> data);
  // Pads (§5.1.1), processes the final block(s) and returns H(N) (§6.2.2).
  // The object must not be updated afterwards.
  Sha256Digest Finish();

 private:
  void Compress(const uint8_t* blocks, size_t count);

  std::array<uint32_t, 8> h_;
  bool use_sha_ni_;
  std::array<uint8_t, 64> buffer_;
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

Sha256Digest Sha256Of(absl::Span<const uint8_t> data);
std::string DigestHex(const Sha256Digest& digest);

}  // namespace hv::loader

#endif  // HV_LOADER_SHA256_H_
