#include "hv/loader/entry_list.h"

#include <cstring>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "hv/loader/test_util.h"

namespace hv::loader {
namespace {

using testing::Pattern;

constexpr uint64_t kRam = 1 << 20;  // 256 pages at GPA 0
constexpr uint64_t P = kPageSize;
constexpr GpaRange kCrash{0xd0000, 0x20000};

class EntryListTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mem = GuestMemory::Create({{0, kRam}});
    ASSERT_TRUE(mem.ok());
    memory_ = std::move(*mem);
    // Every page gets distinct contents.
    for (uint64_t p = 0; p < kRam / P; ++p) {
      const auto bytes = Pattern(P, static_cast<uint32_t>(p + 100));
      ASSERT_TRUE(memory_->Write(p * P, bytes.data(), P).ok());
    }
  }

  void WriteEntries(uint64_t page, const std::vector<uint64_t>& entries) {
    ASSERT_LE(entries.size(), kEntriesPerPage);
    ASSERT_TRUE(memory_->Write(page, entries.data(), entries.size() * 8).ok());
  }

  std::vector<uint8_t> PageBytes(uint64_t gpa) {
    std::vector<uint8_t> out(P);
    EXPECT_TRUE(memory_->Read(gpa, out.data(), P).ok());
    return out;
  }

  absl::StatusOr<CopyPlan> Parse(uint64_t head, EntryListLimits limits = {}) {
    return ParseEntryList(*memory_, head, kCrash, limits);
  }

  std::unique_ptr<GuestMemory> memory_;
};

TEST_F(EntryListTest, CopiesSourcesToConsecutiveDestinations) {
  const auto s1 = PageBytes(0x10 * P), s2 = PageBytes(0x11 * P),
             s3 = PageBytes(0x40 * P);
  WriteEntries(0x1 * P, {0x20 * P | kIndDestination, 0x10 * P | kIndSource,
                         0x11 * P | kIndSource, 0x30 * P | kIndDestination,
                         0x40 * P | kIndSource, kIndDone});
  auto plan = Parse(0x1 * P | kIndIndirection);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->copies.size(), 3u);
  EXPECT_EQ(plan->copies[1].src, 0x11 * P);
  EXPECT_EQ(plan->copies[1].dst, 0x21 * P);
  ASSERT_TRUE(ExecuteCopyPlan(memory_.get(), *plan).ok());
  EXPECT_EQ(PageBytes(0x20 * P), s1);
  EXPECT_EQ(PageBytes(0x21 * P), s2);
  EXPECT_EQ(PageBytes(0x30 * P), s3);
}

TEST_F(EntryListTest, CrossesIndirectionPages) {
  // Page 1 holds DEST + 510 sources + INDIRECTION → page 2, which continues
  // the same destination run; the copies must continue seamlessly.
  std::vector<uint64_t> first;
  // 100 destination/source pairs (sources cycle through 8 pages), padding
  // with repeated IND_DESTINATION entries (legal: they only reset the
  // destination), and IND_INDIRECTION in the last slot, as kimage_add_entry()
  // places it.
  for (uint64_t i = 0; i < 100; ++i) {
    first.push_back((0x50 + i) * P | kIndDestination);
    first.push_back((0x2 + (i % 8)) * P | kIndSource);
  }
  while (first.size() < kEntriesPerPage - 1)
    first.push_back(0x50 * P | kIndDestination);
  first.push_back(0x3f * P | kIndIndirection);
  ASSERT_EQ(first.size(), kEntriesPerPage);
  WriteEntries(0x1 * P, first);
  std::vector<uint64_t> second = {0xb4 * P | kIndDestination,
                                  0x2 * P | kIndSource, 0x3 * P | kIndSource,
                                  kIndDone};
  WriteEntries(0x3f * P, second);
  std::vector<std::vector<uint8_t>> src;
  for (uint64_t i = 0; i < 8; ++i) src.push_back(PageBytes((0x2 + i) * P));
  auto plan = Parse(0x1 * P | kIndIndirection);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->indirection_pages,
            (std::vector<uint64_t>{0x1 * P, 0x3f * P}));
  ASSERT_EQ(plan->copies.size(), 102u);
  ASSERT_TRUE(ExecuteCopyPlan(memory_.get(), *plan).ok());
  for (uint64_t i = 0; i < 100; ++i) {
    ASSERT_EQ(PageBytes((0x50 + i) * P), src[i % 8]) << i;
  }
  EXPECT_EQ(PageBytes(0xb4 * P), src[0]);
  EXPECT_EQ(PageBytes(0xb5 * P), src[1]);
}

TEST_F(EntryListTest, RunningOffAnIndirectionPageIsAnError) {
  std::vector<uint64_t> full(kEntriesPerPage, 0x50 * P | kIndDestination);
  WriteEntries(0x1 * P, full);
  auto plan = Parse(0x1 * P | kIndIndirection);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(plan.status().message().find("ends without"),
            absl::string_view::npos);
}

TEST_F(EntryListTest, SourceThatIsAnotherDestinationUsesOriginalContents) {
  const auto a = PageBytes(0x10 * P), b = PageBytes(0x11 * P);
  // A→B, B→C (chain, B read before it is overwritten) and X↔Y swap.
  const auto x = PageBytes(0x20 * P), y = PageBytes(0x21 * P);
  WriteEntries(0x1 * P, {0x11 * P | kIndDestination, 0x10 * P | kIndSource,
                         0x12 * P | kIndDestination, 0x11 * P | kIndSource,
                         0x20 * P | kIndDestination, 0x21 * P | kIndSource,
                         0x20 * P | kIndSource,  // dest now 0x21: Y ← X
                         kIndDone});
  auto plan = Parse(0x1 * P | kIndIndirection);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(ExecuteCopyPlan(memory_.get(), *plan).ok());
  EXPECT_EQ(PageBytes(0x11 * P), a);
  EXPECT_EQ(PageBytes(0x12 * P), b);  // original B, not A
  EXPECT_EQ(PageBytes(0x10 * P), a);  // untouched source
  EXPECT_EQ(PageBytes(0x20 * P), y);
  EXPECT_EQ(PageBytes(0x21 * P), x);
}

TEST_F(EntryListTest, CopiesOverwritingTheListItself) {
  // The destination is the indirection page: the list was fully parsed first.
  const auto s = PageBytes(0x10 * P);
  WriteEntries(0x1 * P,
               {0x1 * P | kIndDestination, 0x10 * P | kIndSource, kIndDone});
  auto plan = Parse(0x1 * P | kIndIndirection);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(ExecuteCopyPlan(memory_.get(), *plan).ok());
  EXPECT_EQ(PageBytes(0x1 * P), s);
}

TEST_F(EntryListTest, Cycles) {
  WriteEntries(0x1 * P, {0x2 * P | kIndIndirection});
  WriteEntries(0x2 * P,
               {0x50 * P | kIndDestination, 0x1 * P | kIndIndirection});
  auto plan = Parse(0x1 * P | kIndIndirection);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(plan.status().message().find("cycle"), absl::string_view::npos);
  WriteEntries(0x3 * P, {0x3 * P | kIndIndirection});  // self loop
  EXPECT_NE(Parse(0x3 * P | kIndIndirection).status().message().find("cycle"),
            absl::string_view::npos);
}

TEST_F(EntryListTest, PointersOutsideRam) {
  EXPECT_EQ(Parse(kRam | kIndIndirection).status().code(),
            absl::StatusCode::kOutOfRange);
  WriteEntries(0x1 * P,
               {0x50 * P | kIndDestination, kRam | kIndSource, kIndDone});
  EXPECT_EQ(Parse(0x1 * P | kIndIndirection).status().code(),
            absl::StatusCode::kOutOfRange);
  WriteEntries(0x1 * P, {(kRam << 4) | kIndDestination});
  EXPECT_EQ(Parse(0x1 * P | kIndIndirection).status().code(),
            absl::StatusCode::kOutOfRange);
  // A destination run walking off the end of RAM.
  WriteEntries(0x1 * P, {(kRam - P) | kIndDestination, 0x10 * P | kIndSource,
                         0x10 * P | kIndSource, kIndDone});
  auto plan = Parse(0x1 * P | kIndIndirection);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(plan.status().message().find("entry 3"), absl::string_view::npos)
      << plan.status();
  WriteEntries(0x1 * P, {0x50 * P | kIndDestination, 0x10 * P | kIndSource,
                         (kRam + 16 * P) | kIndIndirection});
  EXPECT_EQ(Parse(0x1 * P | kIndIndirection).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST_F(EntryListTest, DestinationInCrashRegion) {
  WriteEntries(0x1 * P,
               {(kCrash.base - P) | kIndDestination, 0x10 * P | kIndSource,
                0x10 * P | kIndSource, kIndDone});
  auto plan = Parse(0x1 * P | kIndIndirection);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kPermissionDenied);
  // Sources may be read from the crash region.
  WriteEntries(0x1 * P, {0x50 * P | kIndDestination, kCrash.base | kIndSource,
                         kIndDone});
  EXPECT_TRUE(Parse(0x1 * P | kIndIndirection).ok());
}

TEST_F(EntryListTest, MalformedEntries) {
  auto code = [&](std::vector<uint64_t> entries) {
    WriteEntries(0x1 * P, entries);
    return Parse(0x1 * P | kIndIndirection).status().code();
  };
  EXPECT_EQ(code({0x10 * P | kIndSource, kIndDone}),
            absl::StatusCode::kInvalidArgument);  // source before destination
  EXPECT_EQ(code({0}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({0x10 * P | kIndSource | kIndDestination}),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({0x10 * P | 0x10}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({0x10 * P | kIndDone}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({0x50 * P | kIndDestination, 0x10 * P | kIndSource,
                  0x50 * P | kIndDestination, 0x11 * P | kIndSource, kIndDone}),
            absl::StatusCode::kAlreadyExists);
  // Head must start the walk through memory.
  EXPECT_EQ(Parse(0x50 * P | kIndDestination).status().code(),
            absl::StatusCode::kInvalidArgument);
  // An empty list (head == IND_DONE) is valid and copies nothing.
  auto empty = Parse(kIndDone);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->copies.empty());
}

TEST_F(EntryListTest, Limits) {
  WriteEntries(0x1 * P,
               {0x50 * P | kIndDestination, 0x10 * P | kIndSource,
                0x11 * P | kIndSource, 0x12 * P | kIndSource, kIndDone});
  EXPECT_EQ(
      Parse(0x1 * P | kIndIndirection, {.max_entries = 4}).status().code(),
      absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(
      Parse(0x1 * P | kIndIndirection, {.max_copied_pages = 2}).status().code(),
      absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Parse(0x1 * P | kIndIndirection,
                    {.max_entries = 6, .max_copied_pages = 3})
                  .ok());
}

}  // namespace
}  // namespace hv::loader
