#include "hv/loader/segment.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace hv::loader {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kR1 = 3 * kMiB;  // second RAM region

class SegmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Two RAM regions with a hole: [0, 2 MiB) and [3 MiB, 4 MiB). 768 pages,
    // so "half of RAM" is 384 pages.
    auto mem = GuestMemory::Create({{0, 2 * kMiB}, {kR1, kMiB}});
    ASSERT_TRUE(mem.ok()) << mem.status();
    memory_ = std::move(*mem);
    data_.assign(3 * kPageSize, 0x5a);
  }

  Segment Seg(uint64_t mem, uint64_t memsz, uint64_t bufsz = kPageSize) {
    return Segment{data_.data(), bufsz, mem, memsz};
  }

  absl::Status Check(const Image& image, ValidationPolicy policy = {}) {
    return ValidateImage(image, *memory_, policy);
  }

  // Expects `status` to be the violation (rule, segment) with `code`.
  static void ExpectViolation(const absl::Status& status, SegmentRule rule,
                              size_t segment, absl::StatusCode code) {
    ASSERT_FALSE(status.ok());
    EXPECT_EQ(status.code(), code) << status;
    auto v = GetSegmentViolation(status);
    ASSERT_TRUE(v.has_value()) << status;
    EXPECT_EQ(v->rule, rule) << status;
    EXPECT_EQ(v->segment, segment) << status;
    if (segment != kWholeImage) {
      EXPECT_NE(status.message().find("segment " + std::to_string(segment)),
                absl::string_view::npos)
          << status;
    }
  }

  std::unique_ptr<GuestMemory> memory_;
  std::vector<uint8_t> data_;
};

TEST_F(SegmentTest, ValidImageAccepted) {
  Image image{
      0x1000,
      {Seg(0x0, 0x2000), Seg(0x4000, 0x1000), Seg(kR1, 0x3000, 3 * kPageSize)}};
  EXPECT_TRUE(Check(image).ok());
  // Exactly KEXEC_SEGMENT_MAX is fine.
  Image sixteen{0x0, {}};
  for (uint64_t i = 0; i < 16; ++i)
    sixteen.segments.push_back(Seg(i * 0x1000, 0x1000));
  EXPECT_TRUE(Check(sixteen).ok());
  // An empty segment (memsz 0) is accepted and intersects nothing.
  Image empty{0x0, {Seg(0x0, 0x1000), Seg(0x0, 0, 0)}};
  EXPECT_TRUE(Check(empty).ok());
}

TEST_F(SegmentTest, SeventeenSegments) {
  Image image{0x0, {}};
  for (uint64_t i = 0; i < 17; ++i)
    image.segments.push_back(Seg(i * 0x1000, 0x1000));
  ExpectViolation(Check(image), SegmentRule::kTooManySegments, kWholeImage,
                  absl::StatusCode::kInvalidArgument);
}

TEST_F(SegmentTest, NullBuffer) {
  Image image{0x0, {Seg(0x0, 0x1000), Segment{nullptr, 16, 0x2000, 0x1000}}};
  ExpectViolation(Check(image), SegmentRule::kNullBuffer, 1,
                  absl::StatusCode::kInvalidArgument);
}

TEST_F(SegmentTest, WrapAround) {
  Image image{0x0, {Seg(0x0, 0x1000), Seg(0xfffffffffffff000, 0x2000)}};
  ExpectViolation(Check(image), SegmentRule::kWrap, 1,
                  absl::StatusCode::kOutOfRange);
  // Ending exactly at 2^64 also wraps (mend == 0 < mstart).
  Image exact{0x0, {Seg(0xfffffffffffff000, 0x1000)}};
  ExpectViolation(Check(exact), SegmentRule::kWrap, 0,
                  absl::StatusCode::kOutOfRange);
}

TEST_F(SegmentTest, Unaligned) {
  ExpectViolation(Check(Image{0, {Seg(0x0, 0x1000), Seg(0x2010, 0x1000, 16)}}),
                  SegmentRule::kUnaligned, 1, absl::StatusCode::kOutOfRange);
  ExpectViolation(Check(Image{0, {Seg(0x2000, 0x1001)}}),
                  SegmentRule::kUnaligned, 0, absl::StatusCode::kOutOfRange);
}

TEST_F(SegmentTest, OutsideRam) {
  // Past the end of RAM.
  ExpectViolation(Check(Image{0, {Seg(4 * kMiB, 0x1000)}}),
                  SegmentRule::kOutsideRam, 0, absl::StatusCode::kOutOfRange);
  // In the hole between the regions.
  ExpectViolation(Check(Image{0, {Seg(0x0, 0x1000), Seg(2 * kMiB, 0x1000)}}),
                  SegmentRule::kOutsideRam, 1, absl::StatusCode::kOutOfRange);
  // Straddling the end of region 0.
  ExpectViolation(Check(Image{0, {Seg(2 * kMiB - 0x1000, 0x2000)}}),
                  SegmentRule::kOutsideRam, 0, absl::StatusCode::kOutOfRange);
}

TEST_F(SegmentTest, Overlap) {
  Image image{0x0,
              {Seg(0x0, 0x3000), Seg(0x8000, 0x1000), Seg(0x2000, 0x2000)}};
  ExpectViolation(Check(image), SegmentRule::kOverlap, 2,
                  absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Check(image).message().find("segment 0"), absl::string_view::npos);
  // Adjacent is fine.
  EXPECT_TRUE(Check(Image{0, {Seg(0x0, 0x2000), Seg(0x2000, 0x1000)}}).ok());
}

TEST_F(SegmentTest, BufszExceedsMemsz) {
  ExpectViolation(
      Check(Image{0, {Seg(0x0, 0x1000), Seg(0x4000, 0x1000, 0x1001)}}),
      SegmentRule::kBufszExceedsMemsz, 1, absl::StatusCode::kInvalidArgument);
}

TEST_F(SegmentTest, MoreThanHalfOfRam) {
  // 385 pages in one segment (RAM is 768 pages).
  ExpectViolation(Check(Image{0, {Seg(0x0, 385 * kPageSize)}}),
                  SegmentRule::kTooLarge, 0,
                  absl::StatusCode::kInvalidArgument);
  // 384 pages total is exactly half: accepted.
  EXPECT_TRUE(
      Check(Image{0, {Seg(0x0, 192 * kPageSize), Seg(kR1, 192 * kPageSize)}})
          .ok());
  // 193 + 192 pages: each fine, the total is not.
  ExpectViolation(
      Check(Image{0, {Seg(0x0, 193 * kPageSize), Seg(kR1, 192 * kPageSize)}}),
      SegmentRule::kTooLarge, kWholeImage, absl::StatusCode::kInvalidArgument);
}

TEST_F(SegmentTest, CrashRegionRules) {
  ValidationPolicy crash{.crash_region = {0x80000, 0x40000}};
  EXPECT_TRUE(
      Check(Image{0x81000, {Seg(0x80000, 0x2000), Seg(0xbf000, 0x1000)}}, crash)
          .ok());
  ExpectViolation(
      Check(Image{0x81000, {Seg(0x80000, 0x2000), Seg(0xbf000, 0x2000)}},
            crash),
      SegmentRule::kOutsideCrashRegion, 1, absl::StatusCode::kOutOfRange);
  ExpectViolation(Check(Image{0x81000, {Seg(0x7f000, 0x2000)}}, crash),
                  SegmentRule::kOutsideCrashRegion, 0,
                  absl::StatusCode::kOutOfRange);
  // Segments inside, entry outside the region (but in RAM).
  ExpectViolation(Check(Image{0x1000, {Seg(0x80000, 0x2000)}}, crash),
                  SegmentRule::kEntryOutsideCrashRegion, kWholeImage,
                  absl::StatusCode::kOutOfRange);
  ExpectViolation(Check(Image{0xc0000, {Seg(0x80000, 0x2000)}}, crash),
                  SegmentRule::kEntryOutsideCrashRegion, kWholeImage,
                  absl::StatusCode::kOutOfRange);
  // A normal image may not touch the reserved crash region.
  ValidationPolicy normal{.reserved = {0x80000, 0x40000}};
  ExpectViolation(
      Check(Image{0x0, {Seg(0x0, 0x1000), Seg(0x7f000, 0x2000)}}, normal),
      SegmentRule::kInsideCrashRegion, 1, absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(
      Check(Image{0x0, {Seg(0x7f000, 0x1000), Seg(0xc0000, 0x1000)}}, normal)
          .ok());
}

TEST_F(SegmentTest, VmmReservedRanges) {
  ValidationPolicy policy{.vmm_reserved = {{0x0, 0x2000}, {0x9000, 0x1000}}};
  ExpectViolation(
      Check(Image{0x2000, {Seg(0x2000, 0x1000), Seg(0x8000, 0x2000)}}, policy),
      SegmentRule::kInsideVmmReserved, 1, absl::StatusCode::kOutOfRange);
  ExpectViolation(Check(Image{0x2000, {Seg(0x1000, 0x1000)}}, policy),
                  SegmentRule::kInsideVmmReserved, 0,
                  absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(
      Check(Image{0x2000, {Seg(0x2000, 0x7000), Seg(0xa000, 0x1000)}}, policy)
          .ok());
}

TEST_F(SegmentTest, EntryOutsideRam) {
  ExpectViolation(Check(Image{2 * kMiB + 8, {Seg(0x0, 0x1000)}}),
                  SegmentRule::kEntryOutsideRam, kWholeImage,
                  absl::StatusCode::kOutOfRange);
}

TEST_F(SegmentTest, KernelCheckOrder) {
  // Segment 1 overlaps segment 0 AND has bufsz > memsz: the overlap pass runs
  // first in sanity_check_segment_list(), so it is reported.
  Image image{0, {Seg(0x0, 0x2000), Seg(0x1000, 0x1000, 0x2000)}};
  ExpectViolation(Check(image), SegmentRule::kOverlap, 1,
                  absl::StatusCode::kInvalidArgument);
  // An unaligned later segment is reported before an earlier overlap.
  Image image2{0,
               {Seg(0x0, 0x2000), Seg(0x1000, 0x1000), Seg(0x5001, 0x1000, 0)}};
  ExpectViolation(Check(image2), SegmentRule::kUnaligned, 2,
                  absl::StatusCode::kOutOfRange);
}

TEST(SegmentViolationTest, NotAViolation) {
  EXPECT_FALSE(GetSegmentViolation(absl::OkStatus()).has_value());
  EXPECT_FALSE(GetSegmentViolation(absl::InternalError("x")).has_value());
  auto v =
      GetSegmentViolation(MakeSegmentError(SegmentRule::kWrap, 12, "detail"));
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->rule, SegmentRule::kWrap);
  EXPECT_EQ(v->segment, 12u);
}

}  // namespace
}  // namespace hv::loader
