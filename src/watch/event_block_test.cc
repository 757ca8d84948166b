#include "watch/event_block.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "etcdserverpb/rpc.pb.h"

namespace cairn::watch {
namespace {

mvccpb::Event MakeEvent(int64_t rev, const std::string& key, const std::string& value, bool put,
                        bool with_prev) {
  mvccpb::Event ev;
  ev.set_type(put ? mvccpb::Event::PUT : mvccpb::Event::DELETE);
  ev.mutable_kv()->set_key(key);
  ev.mutable_kv()->set_mod_revision(rev);
  if (put) {
    ev.mutable_kv()->set_value(value);
    ev.mutable_kv()->set_create_revision(rev > 3 ? rev - 3 : rev);
    ev.mutable_kv()->set_version(3);
    ev.mutable_kv()->set_lease(rev % 2 == 0 ? 0x7fffffffffffLL : 0);
  }
  if (with_prev) {
    ev.mutable_prev_kv()->set_key(key);
    ev.mutable_prev_kv()->set_value("old-" + value);
    ev.mutable_prev_kv()->set_mod_revision(rev - 1);
  }
  return ev;
}

// What protobuf itself writes for a WatchResponse holding `events` (and
// nothing else): the reference the hand-made encoding must equal.
std::string Reference(const std::vector<mvccpb::Event>& events, bool prev_kv) {
  etcdserverpb::WatchResponse r;
  for (const auto& ev : events) {
    mvccpb::Event* out = r.add_events();
    *out = ev;
    if (!prev_kv) out->clear_prev_kv();
  }
  return r.SerializeAsString();
}

TEST(EventBlockTest, WireFormIsProtobufsOwn) {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; round++) {
    std::vector<mvccpb::Event> events;
    const int n = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < n; i++) {
      // Values around the one- and two-byte varint length boundaries.
      const size_t value_size = rng() % 3 == 0 ? 100 + rng() % 300 : rng() % 20;
      events.push_back(MakeEvent(10 + i / 3, "key/" + std::to_string(rng() % 1000),
                                 std::string(value_size, 'v'), rng() % 4 != 0, rng() % 2 == 0));
    }
    auto block = EventBlock::Encode(events);
    ASSERT_EQ(block->size(), events.size());
    for (bool prev : {false, true}) {
      EXPECT_EQ(block->wire(0, events.size(), prev), Reference(events, prev));
      size_t total = 0;
      for (size_t i = 0; i < events.size(); i++) {
        EXPECT_EQ(block->wire(i, i + 1, prev), Reference({events[i]}, prev));
        total += block->wire_size(i, prev);
      }
      EXPECT_EQ(total, block->wire(0, events.size(), prev).size());
    }
    for (size_t i = 0; i < events.size(); i++) {
      EXPECT_EQ(block->key(i), events[i].kv().key());
      EXPECT_EQ(block->revision(i), events[i].kv().mod_revision());
      EXPECT_EQ(block->is_put(i), events[i].type() == mvccpb::Event::PUT);
    }
  }
}

TEST(EventBlockTest, WithoutAnyPrevKvBothFormsAreTheSame) {
  std::vector<mvccpb::Event> events = {MakeEvent(5, "a", "1", true, false),
                                       MakeEvent(5, "b", "", false, false)};
  auto block = EventBlock::Encode(events);
  EXPECT_EQ(block->wire(0, 2, true), block->wire(0, 2, false));
  EXPECT_EQ(block->wire(0, 2, true), Reference(events, true));
}

TEST(EventBlockTest, EmptyBlock) {
  auto block = EventBlock::Encode({});
  EXPECT_EQ(block->size(), 0u);
  EXPECT_EQ(block->wire(0, 0, true), "");
}

std::vector<std::pair<uint32_t, uint32_t>> Runs(const EventSelection& s, size_t skip, size_t take) {
  std::vector<std::pair<uint32_t, uint32_t>> runs;
  s.ForEachRun(skip, take, [&](uint32_t b, uint32_t e) { runs.emplace_back(b, e); });
  return runs;
}

TEST(EventSelectionTest, RunsSkipTakeAndTruncate) {
  std::vector<mvccpb::Event> events;
  for (int i = 0; i < 10; i++) events.push_back(MakeEvent(1 + i, "k", "value", true, true));
  auto block = EventBlock::Encode(events);
  EventSelection s(block, true);
  for (uint32_t i : {0u, 1u, 2u, 5u, 7u, 8u, 9u}) s.Add(i);
  using R = std::vector<std::pair<uint32_t, uint32_t>>;
  EXPECT_EQ(s.count(), 7u);
  EXPECT_EQ(Runs(s, 0, 7), (R{{0, 3}, {5, 6}, {7, 10}}));
  EXPECT_EQ(Runs(s, 2, 3), (R{{2, 3}, {5, 6}, {7, 8}}));
  EXPECT_EQ(Runs(s, 4, 100), (R{{7, 10}}));
  EXPECT_EQ(Runs(s, 7, 1), R{});
  size_t bytes = 0;
  for (uint32_t i : {0u, 1u, 2u, 5u, 7u, 8u, 9u}) bytes += block->wire_size(i, true);
  EXPECT_EQ(s.bytes(), bytes);

  s.Truncate(4);
  EXPECT_EQ(s.count(), 4u);
  EXPECT_EQ(Runs(s, 0, 100), (R{{0, 3}, {5, 6}}));
  EXPECT_EQ(s.bytes(), block->wire_size(0, true) + block->wire_size(1, true) +
                           block->wire_size(2, true) + block->wire_size(5, true));
  s.Truncate(0);
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.bytes(), 0u);
}

}  // namespace
}  // namespace cairn::watch
