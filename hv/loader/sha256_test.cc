#include "hv/loader/sha256.h"

#include <cstdio>
#include <string>

#include "gtest/gtest.h"

namespace hv::loader {
namespace {

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()),
                             s.size());
}

// FIPS 180-4 / NIST CSRC example vectors for SHA-256.
TEST(Sha256Test, FipsVectors) {
  EXPECT_EQ(DigestHex(Sha256Of(Bytes(""))),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(DigestHex(Sha256Of(Bytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(DigestHex(Sha256Of(Bytes(
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(DigestHex(Sha256Of(Bytes(
                "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"))),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256Test, MillionAsInUnevenChunks) {
  Sha256 h;
  const std::string chunk(977, 'a');  // not a multiple of the block size
  size_t left = 1000000;
  while (left > 0) {
    const size_t n = std::min(left, chunk.size());
    h.Update(Bytes(chunk.substr(0, n)));
    left -= n;
  }
  EXPECT_EQ(DigestHex(h.Finish()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Padding boundaries: 55/56/63/64/65 bytes, split at every position, must
// equal the one-shot digest (which the vectors above pin down).
TEST(Sha256Test, SplitUpdatesMatchOneShot) {
  for (size_t len : {55u, 56u, 57u, 63u, 64u, 65u, 119u, 128u}) {
    std::string msg(len, '\0');
    for (size_t i = 0; i < len; ++i) msg[i] = static_cast<char>(i * 7 + 1);
    const Sha256Digest one = Sha256Of(Bytes(msg));
    for (size_t cut = 0; cut <= len; ++cut) {
      Sha256 h;
      h.Update(Bytes(msg.substr(0, cut)));
      h.Update(Bytes(msg.substr(cut)));
      ASSERT_EQ(h.Finish(), one) << "len " << len << " cut " << cut;
    }
  }
  EXPECT_NE(Sha256Of(Bytes(std::string(56, 'x'))),
            Sha256Of(Bytes(std::string(57, 'x'))));
}

// The SHA-NI and portable compression functions agree on every length
// (including the FIPS vectors above, which ran with kAuto).
TEST(Sha256Test, ShaNiMatchesPortable) {
  if (!Sha256HaveShaNi()) {
    std::printf("CPU has no SHA-NI: only the portable path is tested\n");
  }
  std::string msg;
  uint32_t x = 12345;
  for (size_t len = 0; len < 700; ++len) {
    Sha256 portable(Sha256Impl::kPortable), ni(Sha256Impl::kShaNi);
    portable.Update(Bytes(msg));
    ni.Update(Bytes(msg));
    ASSERT_EQ(portable.Finish(), ni.Finish()) << len;
    x = x * 1103515245 + 12345;
    msg.push_back(static_cast<char>(x >> 16));
  }
  Sha256 p(Sha256Impl::kPortable);
  p.Update(Bytes("abc"));
  EXPECT_EQ(DigestHex(p.Finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 n(Sha256Impl::kShaNi);
  n.Update(Bytes("abc"));
  EXPECT_EQ(DigestHex(n.Finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace hv::loader
