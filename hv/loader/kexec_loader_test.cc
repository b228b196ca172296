#include "hv/loader/kexec_loader.h"

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "hv/loader/elf_image.h"
#include "hv/loader/test_util.h"

namespace hv::loader {
namespace {

using testing::BuildElf;
using testing::Pattern;

constexpr uint64_t kRam = 4 << 20;              // 4 MiB at GPA 0
constexpr GpaRange kCrash{0x200000, 0x100000};  // 1 MiB crash region

class KexecLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mem = GuestMemory::Create({{0, kRam}});
    ASSERT_TRUE(mem.ok());
    memory_ = std::move(*mem);
    ASSERT_TRUE(memory_->Fill(0, 0xaa, kRam).ok());
    auto loader = KexecLoader::Create(memory_.get(), kCrash);
    ASSERT_TRUE(loader.ok()) << loader.status();
    loader_ = std::move(*loader);
  }

  std::vector<uint8_t> Snapshot() {
    std::vector<uint8_t> out(kRam);
    EXPECT_TRUE(memory_->Read(0, out.data(), kRam).ok());
    return out;
  }

  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<KexecLoader> loader_;
};

TEST_F(KexecLoaderTest, CreateValidatesCrashRegion) {
  EXPECT_EQ(
      KexecLoader::Create(memory_.get(), {0x1001, 0x1000}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KexecLoader::Create(memory_.get(), {kRam - 0x1000, 0x2000})
                .status()
                .code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(KexecLoader::Create(memory_.get(), {}).ok());
}

TEST_F(KexecLoaderTest, LoadCopiesZeroesTailAndRecordsDigests) {
  const auto a = Pattern(0x1800, 1), b = Pattern(0x10, 2);
  Image image{0x10000,
              {{a.data(), a.size(), 0x10000, 0x3000},
               {b.data(), b.size(), 0x40000, 0x1000}}};
  ASSERT_TRUE(loader_->Load(Slot::kNormal, image).ok());
  std::vector<uint8_t> got(0x3000);
  ASSERT_TRUE(memory_->Read(0x10000, got.data(), got.size()).ok());
  EXPECT_EQ(std::memcmp(got.data(), a.data(), a.size()), 0);
  for (size_t i = a.size(); i < got.size(); ++i) ASSERT_EQ(got[i], 0) << i;
  // Bytes around the segments are untouched.
  EXPECT_EQ(*memory_->ReadObj<uint8_t>(0xffff), 0xaa);
  EXPECT_EQ(*memory_->ReadObj<uint8_t>(0x13000), 0xaa);
  EXPECT_EQ(*memory_->ReadObj<uint8_t>(0x41000), 0xaa);

  auto desc = loader_->Describe(Slot::kNormal);
  ASSERT_TRUE(desc.ok());
  ASSERT_TRUE(desc->has_value());
  EXPECT_EQ((*desc)->entry, 0x10000u);
  ASSERT_EQ((*desc)->segments.size(), 2u);
  EXPECT_EQ((*desc)->segments[0].digest, Sha256Of(got));
  EXPECT_EQ((*desc)->segments[1].bufsz, 0x10u);
  auto target = loader_->VerifyBeforeJump(Slot::kNormal);
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_EQ(target->entry, 0x10000u);
}

TEST_F(KexecLoaderTest, InvalidImageWritesNothing) {
  const auto a = Pattern(0x1000, 3);
  const auto before = Snapshot();
  // Segment 0 is fine, segment 1 overlaps it: nothing may be copied.
  Image image{0x10000,
              {{a.data(), a.size(), 0x10000, 0x1000},
               {a.data(), a.size(), 0x10000, 0x1000}}};
  absl::Status s = loader_->Load(Slot::kNormal, image);
  EXPECT_EQ(GetSegmentViolation(s)->rule, SegmentRule::kOverlap);
  EXPECT_EQ(Snapshot(), before);
  EXPECT_FALSE(loader_->Describe(Slot::kNormal)->has_value());
}

TEST_F(KexecLoaderTest, FailedLoadKeepsThePreviousImage) {
  const auto a = Pattern(0x1000, 4);
  ASSERT_TRUE(loader_
                  ->Load(Slot::kNormal,
                         {0x10000, {{a.data(), a.size(), 0x10000, 0x1000}}})
                  .ok());
  Image bad{0x10000, {{a.data(), 0x2000, 0x20000, 0x1000}}};  // bufsz > memsz
  EXPECT_FALSE(loader_->Load(Slot::kNormal, bad).ok());
  EXPECT_TRUE(loader_->VerifyBeforeJump(Slot::kNormal).ok());
}

TEST_F(KexecLoaderTest, ZeroSegmentsUnloads) {
  const auto a = Pattern(0x1000, 5);
  ASSERT_TRUE(loader_
                  ->Load(Slot::kNormal,
                         {0x10000, {{a.data(), a.size(), 0x10000, 0x1000}}})
                  .ok());
  ASSERT_TRUE(loader_
                  ->Load(Slot::kCrash,
                         {0x200000, {{a.data(), a.size(), 0x200000, 0x1000}}})
                  .ok());
  ASSERT_TRUE(loader_->Load(Slot::kNormal, Image{}).ok());
  EXPECT_FALSE(loader_->Describe(Slot::kNormal)->has_value());
  EXPECT_EQ(loader_->VerifyBeforeJump(Slot::kNormal).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(loader_->Describe(Slot::kCrash)->has_value());  // other slot kept
  ASSERT_TRUE(loader_->Unload(Slot::kCrash).ok());
  EXPECT_FALSE(loader_->Describe(Slot::kCrash)->has_value());
  EXPECT_TRUE(loader_->Unload(Slot::kCrash).ok());  // unloading empty: fine
}

TEST_F(KexecLoaderTest, CrashImageConfinedToCrashRegion) {
  const auto elf = BuildElf(0x201000, {{0x200000, Pattern(0x2000, 6), 0x3000}});
  auto image = ParseElfImage(elf);
  ASSERT_TRUE(image.ok());
  ASSERT_TRUE(loader_->Load(Slot::kCrash, *image).ok());
  EXPECT_EQ(*memory_->ReadObj<uint8_t>(0x202fff), 0);  // bss zeroed
  // Segment outside the region.
  const auto outside =
      BuildElf(0x201000, {{0x1ff000, Pattern(0x2000, 7), 0x2000}});
  auto s = loader_->Load(Slot::kCrash, *ParseElfImage(outside));
  EXPECT_EQ(GetSegmentViolation(s)->rule, SegmentRule::kOutsideCrashRegion);
  // Entry outside the region.
  const auto bad_entry =
      BuildElf(0x1000, {{0x200000, Pattern(0x100, 8), 0x100}});
  s = loader_->Load(Slot::kCrash, *ParseElfImage(bad_entry));
  EXPECT_EQ(GetSegmentViolation(s)->rule,
            SegmentRule::kEntryOutsideCrashRegion);
  // The normal image may not be loaded into the crash region.
  s = loader_->Load(Slot::kNormal, *image);
  EXPECT_EQ(GetSegmentViolation(s)->rule, SegmentRule::kInsideCrashRegion);
  // The crash image survived the refused loads.
  EXPECT_TRUE(loader_->VerifyBeforeJump(Slot::kCrash).ok());
}

TEST_F(KexecLoaderTest, VmmReservedRanges) {
  EXPECT_EQ(KexecLoader::Create(memory_.get(), kCrash, {{0x2ff000, 0x2000}})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      KexecLoader::Create(memory_.get(), kCrash, {{0x1000, 0}}).status().code(),
      absl::StatusCode::kInvalidArgument);
  auto loader = KexecLoader::Create(memory_.get(), kCrash, {{0x0, 0x10000}});
  ASSERT_TRUE(loader.ok()) << loader.status();
  const auto a = Pattern(0x100, 16);
  absl::Status s = (*loader)->Load(
      Slot::kNormal, {0x8000, {{a.data(), a.size(), 0x8000, 0x1000}}});
  EXPECT_EQ(GetSegmentViolation(s)->rule, SegmentRule::kInsideVmmReserved);
  EXPECT_TRUE((*loader)
                  ->Load(Slot::kNormal,
                         {0x10000, {{a.data(), a.size(), 0x10000, 0x1000}}})
                  .ok());
  // Guest kexec destinations may not land there either.
  const std::vector<uint64_t> list = {0x4000 | kIndDestination,
                                      0x30000 | kIndSource, kIndDone};
  ASSERT_TRUE(memory_->Write(0x31000, list.data(), list.size() * 8).ok());
  EXPECT_EQ(
      (*loader)->GuestKexec(0x31000 | kIndIndirection, 0x10000).status().code(),
      absl::StatusCode::kPermissionDenied);
}

TEST_F(KexecLoaderTest, NoCrashRegionNoCrashSlot) {
  auto loader = KexecLoader::Create(memory_.get(), {});
  ASSERT_TRUE(loader.ok());
  const auto a = Pattern(0x100, 9);
  EXPECT_EQ((*loader)
                ->Load(Slot::kCrash,
                       {0x200000, {{a.data(), a.size(), 0x200000, 0x1000}}})
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(KexecLoaderTest, VerifyDetectsTamperingAndNamesTheSegment) {
  const auto a = Pattern(0x1000, 10), b = Pattern(0x2000, 11);
  ASSERT_TRUE(
      loader_
          ->Load(Slot::kCrash, {0x200000,
                                {{a.data(), a.size(), 0x200000, 0x1000},
                                 {b.data(), b.size(), 0x204000, 0x3000}}})
          .ok());
  ASSERT_TRUE(loader_->VerifyBeforeJump(Slot::kCrash).ok());
  // A stray guest write into the zeroed tail of segment 1.
  ASSERT_TRUE(memory_->WriteObj<uint8_t>(0x206ff0, 1).ok());
  auto r = loader_->VerifyBeforeJump(Slot::kCrash);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("segment 1"), absl::string_view::npos)
      << r.status();
  ASSERT_TRUE(memory_->WriteObj<uint8_t>(0x206ff0, 0).ok());
  EXPECT_TRUE(loader_->VerifyBeforeJump(Slot::kCrash).ok());
}

TEST_F(KexecLoaderTest, GuestKexec) {
  const auto a = Pattern(0x1000, 12);
  ASSERT_TRUE(loader_
                  ->Load(Slot::kNormal,
                         {0x10000, {{a.data(), a.size(), 0x10000, 0x1000}}})
                  .ok());
  ASSERT_TRUE(loader_
                  ->Load(Slot::kCrash,
                         {0x200000, {{a.data(), a.size(), 0x200000, 0x1000}}})
                  .ok());
  const auto src = Pattern(kPageSize, 13);
  ASSERT_TRUE(memory_->Write(0x30000, src.data(), src.size()).ok());
  const std::vector<uint64_t> list = {0x80000 | kIndDestination,
                                      0x30000 | kIndSource, kIndDone};
  ASSERT_TRUE(memory_->Write(0x31000, list.data(), list.size() * 8).ok());
  // Entry inside the crash region / outside RAM: refused before any copy.
  EXPECT_EQ(
      loader_->GuestKexec(0x31000 | kIndIndirection, 0x200000).status().code(),
      absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(
      loader_->GuestKexec(0x31000 | kIndIndirection, kRam).status().code(),
      absl::StatusCode::kOutOfRange);
  EXPECT_EQ(*memory_->ReadObj<uint8_t>(0x80000), 0xaa);
  auto r = loader_->GuestKexec(0x31000 | kIndIndirection, 0x80010);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entry, 0x80010u);
  std::vector<uint8_t> got(kPageSize);
  ASSERT_TRUE(memory_->Read(0x80000, got.data(), got.size()).ok());
  EXPECT_EQ(got, src);
  EXPECT_FALSE(loader_->Describe(Slot::kNormal)->has_value());
  EXPECT_TRUE(loader_->VerifyBeforeJump(Slot::kCrash).ok());
}

TEST_F(KexecLoaderTest, CrashFreezesImagesAndWritesCoreHeader) {
  const auto a = Pattern(0x3000, 14);
  // Crash image at the top of the crash region, so the header must go below.
  ASSERT_TRUE(loader_
                  ->Load(Slot::kCrash,
                         {0x2fd000, {{a.data(), a.size(), 0x2fd000, 0x3000}}})
                  .ok());
  std::vector<uint8_t> before = Snapshot();
  loader_->BeginCrash();
  const auto b = Pattern(0x100, 15);
  EXPECT_EQ(loader_
                ->Load(Slot::kNormal,
                       {0x10000, {{b.data(), b.size(), 0x10000, 0x1000}}})
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(loader_->Unload(Slot::kCrash).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(loader_->GuestKexec(kIndDone, 0x1000).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::vector<VcpuDump> vcpus(2);
  vcpus[1].vcpu_id = 1;
  vcpus[1].state.rip = 0x1234;
  auto jump = loader_->PrepareCrashJump(vcpus);
  ASSERT_TRUE(jump.ok()) << jump.status();
  EXPECT_EQ(jump->entry, 0x2fd000u);
  EXPECT_EQ(jump->core_header_gpa, 0x2fc000u);  // highest free page
  std::vector<uint8_t> header(jump->core_header_size);
  ASSERT_TRUE(
      memory_->Read(jump->core_header_gpa, header.data(), header.size()).ok());
  auto core = ParseCoreHeader(header, jump->core_header_gpa);
  ASSERT_TRUE(core.ok()) << core.status();
  ASSERT_EQ(core->preserved.size(), 2u);
  EXPECT_EQ(core->preserved[0].end(), kCrash.base);
  EXPECT_EQ(core->preserved[1].base, kCrash.end());
  ASSERT_EQ(core->vcpus.size(), 2u);
  EXPECT_EQ(core->vcpus[1].state.rip, 0x1234u);
  // Memory outside the crash region is exactly as before.
  const std::vector<uint8_t> after = Snapshot();
  EXPECT_EQ(std::memcmp(before.data(), after.data(), kCrash.base), 0);
  EXPECT_EQ(std::memcmp(before.data() + kCrash.end(),
                        after.data() + kCrash.end(), kRam - kCrash.end()),
            0);
}

TEST_F(KexecLoaderTest, CrashJumpErrors) {
  EXPECT_EQ(loader_->PrepareCrashJump({}).status().code(),
            absl::StatusCode::kNotFound);
  // A crash image filling the whole region leaves no room for the header.
  std::vector<uint8_t> big(kCrash.size, 1);
  auto loader = KexecLoader::Create(memory_.get(), kCrash);
  ASSERT_TRUE((*loader)
                  ->Load(Slot::kCrash,
                         {kCrash.base,
                          {{big.data(), big.size(), kCrash.base, kCrash.size}}})
                  .ok());
  EXPECT_EQ((*loader)->PrepareCrashJump({}).status().code(),
            absl::StatusCode::kResourceExhausted);
}

// One loader at a time: concurrent loads either succeed or fail with
// Unavailable ("busy"), never block, and the slot ends up holding exactly one
// complete image.
TEST_F(KexecLoaderTest, RacingLoadsGetBusyNeverCorrupt) {
  constexpr int kThreads = 4;
  constexpr uint64_t kSegBytes = 512 << 10;
  std::vector<std::vector<uint8_t>> payloads;
  for (int t = 0; t < kThreads; ++t)
    payloads.push_back(Pattern(kSegBytes, 100 + t));
  std::atomic<int> busy{0}, ok{0}, other{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) {
      }
      for (int i = 0; i < 20; ++i) {
        Image image{0x100000,
                    {{payloads[t].data(), kSegBytes, 0x100000, kSegBytes}}};
        absl::Status s = loader_->Load(Slot::kNormal, image);
        if (s.ok()) {
          ++ok;
        } else if (s.code() == absl::StatusCode::kUnavailable) {
          EXPECT_NE(s.message().find("busy"), absl::string_view::npos);
          ++busy;
        } else {
          ++other;
        }
      }
    });
  }
  go = true;
  for (auto& th : threads) th.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(ok.load() + busy.load(), kThreads * 20);
  // The loaded image is consistent: its digest verifies and memory holds one
  // thread's complete payload.
  ASSERT_TRUE(loader_->VerifyBeforeJump(Slot::kNormal).ok());
  std::vector<uint8_t> got(kSegBytes);
  ASSERT_TRUE(memory_->Read(0x100000, got.data(), got.size()).ok());
  int matches = 0;
  for (const auto& p : payloads) matches += (p == got);
  EXPECT_EQ(matches, 1);
  std::printf("racing loads: %d ok, %d busy\n", ok.load(), busy.load());
}

}  // namespace
}  // namespace hv::loader
