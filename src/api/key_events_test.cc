#include "api/key_events.h"

#include <gtest/gtest.h>

namespace cairn::api {
namespace {

mvccpb::Event Ev(const std::string& key, bool del) {
  mvccpb::Event e;
  e.set_type(del ? mvccpb::Event::DELETE : mvccpb::Event::PUT);
  e.mutable_kv()->set_key(key);
  return e;
}

TEST(PrefixRangeEndTest, AsEtcd) {
  EXPECT_EQ(PrefixRangeEnd("a/"), "a0");
  EXPECT_EQ(PrefixRangeEnd("a\xff"), "b");
  EXPECT_EQ(PrefixRangeEnd("\xff\xff"), std::string(1, '\0'));
  EXPECT_EQ(PrefixRangeEnd(""), std::string(1, '\0'));
}

TEST(KeyEventsTest, CallsOnlyMatchingSubscriptionsWithTheirEvents) {
  KeyEvents ke;
  std::vector<std::string> prefix_seen, key_seen, deletes_seen;
  ke.Subscribe("lock/", PrefixRangeEnd("lock/"), false, [&](int64_t, const auto& evs) {
    for (auto* e : evs) prefix_seen.push_back(e->kv().key());
  });
  ke.Subscribe("lock/a", "", false, [&](int64_t, const auto& evs) {
    for (auto* e : evs) key_seen.push_back(e->kv().key());
  });
  ke.Subscribe("lock/", PrefixRangeEnd("lock/"), true, [&](int64_t, const auto& evs) {
    for (auto* e : evs) deletes_seen.push_back(e->kv().key());
  });
  ke.Publish(2, {Ev("lock/a", false), Ev("lockx", false), Ev("lock/b", true), Ev("other", true)});
  EXPECT_EQ(prefix_seen, (std::vector<std::string>{"lock/a", "lock/b"}));
  EXPECT_EQ(key_seen, (std::vector<std::string>{"lock/a"}));
  EXPECT_EQ(deletes_seen, (std::vector<std::string>{"lock/b"}));
}

TEST(KeyEventsTest, UnsubscribeStopsCallsAndTheBoundHolds) {
  KeyEvents ke(2);
  int calls = 0;
  const uint64_t a = ke.Subscribe("k", "", false, [&](int64_t, const auto&) { calls++; });
  const uint64_t b = ke.Subscribe("k", "", false, [&](int64_t, const auto&) { calls++; });
  EXPECT_NE(a, 0u);
  EXPECT_NE(b, 0u);
  EXPECT_EQ(ke.Subscribe("k", "", false, [](int64_t, const auto&) {}), 0u);
  ke.Unsubscribe(a);
  ke.Publish(2, {Ev("k", false)});
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(ke.size(), 1u);
}

TEST(KeyEventsTest, ACallbackMayUnsubscribeItself) {
  KeyEvents ke;
  int calls = 0;
  uint64_t id = 0;
  id = ke.Subscribe("k", "", false, [&](int64_t, const auto&) {
    calls++;
    ke.Unsubscribe(id);
  });
  ke.Publish(2, {Ev("k", false)});
  ke.Publish(3, {Ev("k", false)});
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(ke.size(), 0u);
}

}  // namespace
}  // namespace cairn::api
