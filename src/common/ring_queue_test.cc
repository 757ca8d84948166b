#include "common/ring_queue.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <random>
#include <string>

#include <gtest/gtest.h>

namespace cairn {
namespace {

TEST(RingQueueTest, FifoOrderAcrossGrowthAndWrapAround) {
  RingQueue<std::string> q;
  std::deque<std::string> model;
  std::mt19937 rng(7);
  int next = 0;
  for (int step = 0; step < 20000; step++) {
    if (model.empty() || rng() % 3 != 0) {
      std::string v = "value-" + std::to_string(next++);
      model.push_back(v);
      q.push_back(std::move(v));
    } else {
      ASSERT_EQ(q.front(), model.front());
      q.pop_front();
      model.pop_front();
    }
    ASSERT_EQ(q.size(), model.size());
    if (!model.empty()) {
      ASSERT_EQ(q.back(), model.back());
      const size_t i = rng() % model.size();
      ASSERT_EQ(q[i], model[i]);
    }
  }
}

TEST(RingQueueTest, HoldsNoMemoryOnceDrained) {
  RingQueue<std::unique_ptr<int>> q;
  EXPECT_EQ(q.capacity(), 0u);
  for (int i = 0; i < 100; i++) q.push_back(std::make_unique<int>(i));
  EXPECT_GE(q.capacity(), 100u);
  EXPECT_LE(q.capacity(), 150u);
  for (int i = 0; i < 100; i++) {
    EXPECT_EQ(*q.front(), i);
    q.pop_front();
    // Halved whenever a quarter full: never more than 4x what it holds.
    if (!q.empty()) {
      EXPECT_LE(q.capacity(), std::max<size_t>(16, 4 * q.size() + 8));
    }
  }
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.capacity(), 0u);
  q.push_back(std::make_unique<int>(1));
  EXPECT_GE(q.capacity(), 8u);
  q.clear();
  EXPECT_EQ(q.capacity(), 0u);
}

TEST(RingQueueTest, DestroysWhatItHolds) {
  auto counted = std::make_shared<int>(0);
  {
    RingQueue<std::shared_ptr<int>> q;
    for (int i = 0; i < 20; i++) q.push_back(std::shared_ptr<int>(counted));
    EXPECT_EQ(counted.use_count(), 21);
    q.pop_front();
    EXPECT_EQ(counted.use_count(), 20);
  }
  EXPECT_EQ(counted.use_count(), 1);
}

}  // namespace
}  // namespace cairn
