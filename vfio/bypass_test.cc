#include "vfio/bypass.h"

#include "gtest/gtest.h"

namespace vfio {
namespace {

struct P : BypassProducer {
  absl::Status Post(hwsim::PostedEntry) override {
    ++posts;
    return absl::OkStatus();
  }
  void Unpost() override { ++unposts; }
  int posts = 0, unposts = 0;
};

struct C : BypassConsumer {
  absl::Status AddProducer(BypassProducer* p) override {
    producer = p;
    ++adds;
    return p->Post({});
  }
  void DelProducer(BypassProducer* p) override {
    EXPECT_EQ(p, producer);
    p->Unpost();
    producer = nullptr;
    ++dels;
  }
  BypassProducer* producer = nullptr;
  int adds = 0, dels = 0;
};

TEST(BypassTest, EitherSideFirstAndUnpair) {
  BypassManager m;
  P p1, p2;
  C c1, c2;
  ASSERT_TRUE(m.RegisterProducer(1, &p1).ok());
  EXPECT_FALSE(m.Paired(1));
  ASSERT_TRUE(m.RegisterConsumer(1, &c1).ok());  // producer first
  EXPECT_TRUE(m.Paired(1));
  EXPECT_EQ(c1.producer, &p1);
  ASSERT_TRUE(m.RegisterConsumer(2, &c2).ok());  // consumer first
  ASSERT_TRUE(m.RegisterProducer(2, &p2).ok());
  EXPECT_EQ(c2.producer, &p2);
  EXPECT_EQ(p2.posts, 1);
  // 1:1: a second producer/consumer for a token is refused.
  EXPECT_EQ(m.RegisterProducer(1, &p2).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(m.RegisterConsumer(1, &c2).code(),
            absl::StatusCode::kAlreadyExists);
  m.UnregisterProducer(1);  // producer side unpairs
  EXPECT_EQ(c1.dels, 1);
  EXPECT_EQ(p1.unposts, 1);
  EXPECT_FALSE(m.Paired(1));
  m.UnregisterConsumer(2);  // consumer side unpairs
  EXPECT_EQ(c2.dels, 1);
  EXPECT_EQ(p2.unposts, 1);
  m.UnregisterConsumer(2);  // unknown / twice: no-ops
  m.UnregisterProducer(99);
  // Re-pair after unpairing.
  ASSERT_TRUE(m.RegisterProducer(1, &p1).ok());
  EXPECT_EQ(c1.adds, 2);
  m.UnregisterConsumer(1);
  m.UnregisterProducer(1);
  m.UnregisterProducer(2);
  EXPECT_FALSE(m.Paired(1));
  EXPECT_FALSE(m.Paired(2));
}

}  // namespace
}  // namespace vfio
