// KeyEvents: lets a call that waits on keys (a lock waiting for the holders
// before it to go, an election observer) hear about the changes this member
// applies to a key range, without a watch stream of its own.
//
// The apply path calls Publish with each revision's events (after the watch
// hub); every subscription whose range holds at least one of them is called
// with those events, on the apply thread, so a callback must be quick and
// must not block (read this member's state, propose, queue a write).
// A callback may still run once after Unsubscribe returns (it was already
// on its way); callers guard against that themselves.
//
// Bounded: at most `max_subscriptions` at once; Subscribe fails beyond.
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mvccpb/kv.pb.h"

namespace cairn::api {

// etcd's clientv3.GetPrefixRangeEnd: the range end covering every key that
// starts with `prefix` ("\0", all keys, when no such bound exists).
std::string PrefixRangeEnd(const std::string& prefix);

class KeyEvents {
 public:
  using Callback = std::function<void(int64_t rev, const std::vector<const mvccpb::Event*>& events)>;

  explicit KeyEvents(size_t max_subscriptions = 65536) : max_(max_subscriptions) {}

  // [key, range_end) as etcd ranges (empty range_end: the key alone; "\0":
  // every key from `key` on). `deletes_only`: only DELETE events count.
  // Returns the subscription's id, 0 when there are too many.
  uint64_t Subscribe(std::string key, std::string range_end, bool deletes_only, Callback cb);
  void Unsubscribe(uint64_t id);

  void Publish(int64_t rev, const std::vector<mvccpb::Event>& events);

  size_t size() const;

 private:
  struct Sub {
    std::string key, range_end;
    bool deletes_only = false;
    std::shared_ptr<Callback> cb;
    bool Covers(const std::string& k) const;
  };
  const size_t max_;
  mutable std::mutex mu_;
  uint64_t next_id_ = 1;             // GUARDED_BY(mu_)
  std::map<uint64_t, Sub> subs_;     // GUARDED_BY(mu_)
  std::atomic<size_t> count_{0};     // subs_.size(), read without the lock
};

}  // namespace cairn::api
