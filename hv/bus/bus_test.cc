#include "hv/bus/bus.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace hv {
namespace {

// Records the last access; offset 0xff rejects every access.
class RecordingDevice : public MmioDevice {
 public:
  absl::Status Read(const MmioContext& ctx, uint64_t offset, uint8_t size,
                    uint64_t* value) override {
    if (offset == 0xff) return absl::InvalidArgumentError("rejected");
    last_vcpu = ctx.vcpu;
    last_offset = offset;
    last_size = size;
    reads.fetch_add(1);
    *value = 0x1122334455667788ull;
    return absl::OkStatus();
  }
  absl::Status Write(const MmioContext& ctx, uint64_t offset, uint8_t size,
                     uint64_t value) override {
    if (offset == 0xff) return absl::InvalidArgumentError("rejected");
    last_vcpu = ctx.vcpu;
    last_offset = offset;
    last_size = size;
    last_value = value;
    writes.fetch_add(1);
    return absl::OkStatus();
  }
  uint32_t last_vcpu = 0;
  uint64_t last_offset = 0;
  uint8_t last_size = 0;
  uint64_t last_value = 0;
  std::atomic<int> reads{0};
  std::atomic<int> writes{0};
};

TEST(BusTest, DispatchesWithOffsetAndContext) {
  MmioBus bus;
  RecordingDevice a, b;
  ASSERT_TRUE(bus.Register(0x1000, 0x100, &a, "a").ok());
  ASSERT_TRUE(bus.Register(0x2000, 0x1000, &b, "b").ok());
  MmioContext ctx;
  ctx.vcpu = 3;
  bus.Write(ctx, 0x2010, 4, 0xdeadbeef);
  EXPECT_EQ(b.writes.load(), 1);
  EXPECT_EQ(b.last_offset, 0x10u);
  EXPECT_EQ(b.last_size, 4);
  EXPECT_EQ(b.last_value, 0xdeadbeefu);
  EXPECT_EQ(b.last_vcpu, 3u);
  EXPECT_EQ(a.writes.load(), 0);
  uint64_t v = 0;
  bus.Read(ctx, 0x1004, 2, &v);
  EXPECT_EQ(v, 0x7788u);  // truncated to the access size
  EXPECT_EQ(a.last_offset, 4u);
  EXPECT_EQ(bus.unhandled_count(), 0u);
}

TEST(BusTest, UnhandledReadsAllOnesAndCounts) {
  PioBus bus;
  RecordingDevice a;
  ASSERT_TRUE(bus.Register(0x3f8, 8, &a, "uart").ok());
  uint64_t v = 0;
  bus.Read({}, 0x80, 1, &v);
  EXPECT_EQ(v, 0xffu);
  bus.Read({}, 0x80, 4, &v);
  EXPECT_EQ(v, 0xffffffffu);
  bus.Read({}, 0x80, 8, &v);
  EXPECT_EQ(v, ~uint64_t{0});
  bus.Write({}, 0x80, 1, 1);
  // Straddling the end of a range is unhandled too.
  bus.Read({}, 0x3fe, 4, &v);
  EXPECT_EQ(v, 0xffffffffu);
  EXPECT_EQ(a.reads.load(), 0);
  // Bad size.
  bus.Read({}, 0x3f8, 3, &v);
  EXPECT_EQ(a.reads.load(), 0);
  EXPECT_EQ(bus.unhandled_count(), 6u);
}

TEST(BusTest, DeviceErrorIsCountedAndReadsAllOnes) {
  MmioBus bus;
  RecordingDevice a;
  ASSERT_TRUE(bus.Register(0x0, 0x1000, &a, "a").ok());
  uint64_t v = 0;
  bus.Read({}, 0xff, 1, &v);
  EXPECT_EQ(v, 0xffu);
  bus.Write({}, 0xff, 1, 0);
  EXPECT_EQ(bus.unhandled_count(), 2u);
}

TEST(BusTest, RejectsOverlapAndBadRanges) {
  MmioBus bus;
  RecordingDevice a;
  ASSERT_TRUE(bus.Register(0x1000, 0x1000, &a, "a").ok());
  EXPECT_EQ(bus.Register(0x1fff, 2, &a, "b").code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(bus.Register(0x0, 0x1001, &a, "c").code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(bus.Register(0x5000, 0, &a, "d").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bus.Register(~uint64_t{0} - 1, 4, &a, "e").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bus.Register(0x9000, 4, nullptr, "f").code(),
            absl::StatusCode::kInvalidArgument);
  // Adjacent ranges are fine.
  EXPECT_TRUE(bus.Register(0x2000, 0x10, &a, "g").ok());
  EXPECT_TRUE(bus.Register(0x0, 0x1000, &a, "h").ok());
}

TEST(BusTest, UnregisterRemovesRange) {
  MmioBus bus;
  RecordingDevice a;
  ASSERT_TRUE(bus.Register(0x1000, 0x10, &a, "a").ok());
  ASSERT_TRUE(bus.Unregister(0x1000).ok());
  EXPECT_EQ(bus.Unregister(0x1000).code(), absl::StatusCode::kNotFound);
  uint64_t v = 0;
  bus.Read({}, 0x1000, 4, &v);
  EXPECT_EQ(v, 0xffffffffu);
  EXPECT_EQ(a.reads.load(), 0);
}

// Thread-safe device for the concurrency test: only counts.
class CountingDevice : public MmioDevice {
 public:
  absl::Status Read(const MmioContext&, uint64_t, uint8_t,
                    uint64_t* value) override {
    reads.fetch_add(1);
    *value = 0;
    return absl::OkStatus();
  }
  absl::Status Write(const MmioContext&, uint64_t, uint8_t, uint64_t) override {
    return absl::OkStatus();
  }
  std::atomic<int> reads{0};
};

TEST(BusTest, ConcurrentDispatchAndRegistration) {
  MmioBus bus;
  CountingDevice a, b;
  ASSERT_TRUE(bus.Register(0x1000, 0x10, &a, "a").ok());
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      uint64_t v;
      while (!done.load()) bus.Read({}, 0x1000, 4, &v);
    });
  }
  // Keep re-publishing the table until the readers made real progress.
  for (int i = 0; i < 200 || a.reads.load() < 1000; ++i) {
    ASSERT_TRUE(bus.Register(0x8000, 0x10, &b, "b").ok());
    ASSERT_TRUE(bus.Unregister(0x8000).ok());
  }
  done = true;
  for (auto& t : threads) t.join();
  EXPECT_GE(a.reads.load(), 1000);
  EXPECT_EQ(bus.unhandled_count(), 0u);
}

}  // namespace
}  // namespace hv

namespace hv {
namespace {

TEST(BusTest, LoggingIsBoundedButCountingIsNot) {
  MmioBus bus;
  testing::internal::CaptureStderr();
  uint64_t v;
  for (uint64_t a = 0; a < 3000; ++a) bus.Read({}, a * 8, 8, &v);
  for (uint64_t a = 0; a < 10; ++a) bus.Read({}, 0, 8, &v);  // repeats
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(bus.unhandled_count(), 3010u);
  size_t lines = 0;
  for (char c : err) lines += c == '\n';
  // One line per logged address plus the cap notice.
  EXPECT_EQ(lines, Bus::kMaxLoggedAddresses + 1);
}

}  // namespace
}  // namespace hv
