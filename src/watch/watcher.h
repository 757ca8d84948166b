// Watcher and WatcherIndex: the hub's internal bookkeeping of one watch and
// of the set of synced watches by key. Internal to src/watch/.
//
// Thread safety: none. Every field and every WatcherIndex is guarded by
// WatchHub::mu_; the hub is the only user.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/smart_ptr/intrusive_ptr.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"

#include "etcdserverpb/rpc.pb.h"
#include "mvccpb/kv.pb.h"

namespace cairn::watch {

class WatchStream;

// One watch of one stream. Owned by its stream (WatcherList), reference
// counted so that SyncUnsynced may keep a chosen watcher alive while it reads
// storage without the hub lock.
//
// The watched key and range end are stored right after the object, in the
// same allocation (Create): 56 bytes of fields, so a watcher of a key and end
// of up to 8 bytes together is one 64-byte allocation (a std::string member
// made it 96, and a second allocation for keys over 15 bytes). 100,000
// watchers are 100,000 of these.
struct Watcher : public boost::intrusive_ref_counter<Watcher, boost::thread_safe_counter> {
  enum class State : uint8_t { kSynced, kUnsynced, kRemoved };

  // Builds a watcher from a create request whose key and range_end were
  // already normalised (see WatchHub::CreateWatch).
  static boost::intrusive_ptr<Watcher> Create(uint64_t hub_id, int64_t watch_id, WatchStream* stream,
                                              std::string_view key, std::string_view end, bool from_key,
                                              const etcdserverpb::WatchCreateRequest& request);
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;
  // Frees what Create allocated (the reference count's last release).
  static void operator delete(void* p) { ::operator delete(p); }

  // Whether `key` is in the watched key or range.
  bool Contains(std::string_view key) const;
  // Whether an event (a put, or else a delete) passes the NOPUT/NODELETE
  // filters.
  bool Accepts(bool is_put) const { return is_put ? !no_put : !no_delete; }

  // The watched key, and the range end: "" with !from_key is the single key
  // key().
  std::string_view key() const { return std::string_view(bytes(), key_size_); }
  std::string_view end() const { return std::string_view(bytes() + key_size_, end_size_); }

 private:
  Watcher(uint64_t hub_id, int64_t watch_id, WatchStream* stream, uint32_t key_size, uint32_t end_size,
          bool from_key, const etcdserverpb::WatchCreateRequest& request);
  const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }

  // Fields ordered so that, with the 4-byte reference count first, there is
  // no padding: 56 bytes.
  const uint32_t key_size_;

 public:
  const uint64_t hub_id;   // unique in the hub; orders delivery deterministically
  const int64_t watch_id;  // unique in the stream; what the client sees
  WatchStream* const stream;  // valid while state != kRemoved
  // kSynced: the first revision the watcher accepts (a start_revision in the
  // future); every revision <= the hub's published revision that it accepts
  // has been queued. kUnsynced: the first revision it has not received.
  int64_t next_rev = 0;
  // The stream's sequence number of the watcher's last queued event
  // response (see WatchStream::TryPushEvent); kNoSeq before the first.
  static constexpr uint64_t kNoSeq = ~uint64_t{0};
  uint64_t queued_seq = kNoSeq;

 private:
  const uint32_t end_size_;

 public:
  // The create request's options, one bit each.
  const bool from_key : 1;  // every key >= key()
  const bool no_put : 1;
  const bool no_delete : 1;
  const bool prev_kv : 1;
  const bool progress_notify : 1;
  const bool fragment : 1;
  State state = State::kSynced;
  // An event response was queued since the last progress tick (etcd elides
  // the next progress notification then).
  bool events_since_progress = false;
};

using WatcherRef = boost::intrusive_ptr<Watcher>;

// A stream's watchers by watch id: a sorted vector, 8 bytes per watcher (a
// std::map node was 48, a B-tree entry ~35). Ids are handed out in
// ascending order unless the client picks them, so adding is an append;
// adding or removing one of n elsewhere moves up to n pointers (100,000
// watchers on one stream: ~40 us), and a closing stream removes from the end.
class WatcherList {
 public:
  Watcher* Find(int64_t watch_id) const {
    auto it = LowerBound(watch_id);
    return it != list_.end() && (*it)->watch_id == watch_id ? it->get() : nullptr;
  }
  const WatcherRef& Ref(const Watcher* w) const {
    auto it = LowerBound(w->watch_id);
    return *it;  // REQUIRES: w is in the list
  }
  bool Contains(int64_t watch_id) const { return Find(watch_id) != nullptr; }
  // REQUIRES: no watcher with w's id is in the list.
  void Insert(WatcherRef w) {
    auto it = LowerBound(w->watch_id);
    list_.insert(it, std::move(w));
  }
  // Removes and returns the watcher with this id (null if none).
  WatcherRef Erase(int64_t watch_id) {
    auto it = LowerBound(watch_id);
    if (it == list_.end() || (*it)->watch_id != watch_id) return nullptr;
    WatcherRef w = std::move(*it);
    list_.erase(it);
    if (list_.empty()) std::vector<WatcherRef>().swap(list_);
    return w;
  }
  bool empty() const { return list_.empty(); }
  size_t size() const { return list_.size(); }
  // The watcher with the highest id (removing it moves nothing).
  Watcher* back() const { return list_.back().get(); }

 private:
  std::vector<WatcherRef>::const_iterator LowerBound(int64_t watch_id) const {
    return std::lower_bound(list_.begin(), list_.end(), watch_id,
                            [](const WatcherRef& w, int64_t id) { return w->watch_id < id; });
  }
  std::vector<WatcherRef> list_;
};

// Synced watchers by key, for Publish. Single keys are a hash lookup; ranges
// are kept sorted by start key and scanned up to the event's key (etcd uses
// an interval tree; the distinct ranges of real deployments are few).
class WatcherIndex {
 public:
  void Add(Watcher* w);
  void Remove(Watcher* w);
  bool empty() const { return size_ == 0; }
  // Calls fn(Watcher*) for every indexed watcher. fn must not change the index.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const auto& [key, set] : keys_) {
      for (Watcher* w : set) fn(w);
    }
    for (const auto& [range, set] : ranges_) {
      for (Watcher* w : set) fn(w);
    }
  }
  size_t size() const { return size_; }

  // Calls fn(Watcher*) for each watcher whose key or range contains `key`.
  template <typename Fn>
  void ForEachMatch(const std::string& key, Fn&& fn) const {
    if (auto it = keys_.find(key); it != keys_.end()) {
      for (Watcher* w : it->second) fn(w);
    }
    for (const auto& [range, set] : ranges_) {
      if (range.first > key) break;
      const bool from_key = range.second.empty();
      if (!from_key && key >= range.second) continue;
      for (Watcher* w : set) fn(w);
    }
  }

 private:
  struct ByHubId {
    bool operator()(const Watcher* a, const Watcher* b) const { return a->hub_id < b->hub_id; }
  };
  // B-trees rather than std::set / std::map: ~10 bytes per watcher instead
  // of a 48-byte node each.
  using WatcherSet = absl::btree_set<Watcher*, ByHubId>;
  std::unordered_map<std::string, WatcherSet> keys_;
  // (start, end) -> watchers; end "" means from-key.
  absl::btree_map<std::pair<std::string, std::string>, WatcherSet> ranges_;
  size_t size_ = 0;
};

}  // namespace cairn::watch
