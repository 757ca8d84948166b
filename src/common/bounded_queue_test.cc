#include "common/bounded_queue.h"

#include <gtest/gtest.h>

#include <thread>

namespace cairn {
namespace {

TEST(BoundedQueueTest, TryPushFailsWhenFull) {
  BoundedQueue<int> q(2);
  int a = 1, b = 2, c = 3;
  EXPECT_TRUE(q.TryPush(a));
  EXPECT_TRUE(q.TryPush(b));
  EXPECT_FALSE(q.TryPush(c));
  std::vector<int> out;
  EXPECT_TRUE(q.PopBatch(&out, 10, std::chrono::milliseconds(0)));
  EXPECT_EQ(out, (std::vector<int>{1, 2}));
}

TEST(BoundedQueueTest, PopBatchRespectsMax) {
  BoundedQueue<int> q(10);
  for (int i = 0; i < 5; i++) ASSERT_TRUE(q.Push(i));
  std::vector<int> out;
  ASSERT_TRUE(q.PopBatch(&out, 3, std::chrono::milliseconds(0)));
  EXPECT_EQ(out.size(), 3u);
  EXPECT_EQ(q.size(), 2u);
}

TEST(BoundedQueueTest, CloseWakesBlockedProducer) {
  BoundedQueue<int> q(1);
  ASSERT_TRUE(q.Push(1));
  std::thread t([&] { EXPECT_FALSE(q.Push(2)); });
  q.Close();
  t.join();
  std::vector<int> out;
  EXPECT_TRUE(q.PopBatch(&out, 10, std::chrono::milliseconds(0)));
  EXPECT_FALSE(q.PopBatch(&out, 10, std::chrono::milliseconds(0)));
}

}  // namespace
}  // namespace cairn
