#include "watch/watcher.h"

#include "common/check.h"

namespace cairn::watch {

namespace {
bool HasFilter(const etcdserverpb::WatchCreateRequest& request,
               etcdserverpb::WatchCreateRequest::FilterType type) {
  for (int f : request.filters()) {
    if (f == type) return true;
  }
  return false;
}
}  // namespace

Watcher::Watcher(uint64_t hub_id, int64_t watch_id, WatchStream* stream, std::string key,
                 std::string end, bool from_key, const etcdserverpb::WatchCreateRequest& request)
    : hub_id(hub_id),
      watch_id(watch_id),
      stream(stream),
      key_end_(key + end),
      key_size_(static_cast<uint32_t>(key.size())),
      from_key(from_key),
      no_put(HasFilter(request, etcdserverpb::WatchCreateRequest::NOPUT)),
      no_delete(HasFilter(request, etcdserverpb::WatchCreateRequest::NODELETE)),
      prev_kv(request.prev_kv()),
      progress_notify(request.progress_notify()),
      fragment(request.fragment()) {
  CHECK(!(from_key && !end.empty())) << "from-key watcher with range end";
}

bool Watcher::Contains(std::string_view k) const {
  if (from_key) return k >= key();
  if (end().empty()) return k == key();
  return k >= key() && k < end();
}

void WatcherIndex::Add(Watcher* w) {
  bool inserted = false;
  if (!w->from_key && w->end().empty()) {
    inserted = keys_[std::string(w->key())].insert(w).second;
  } else {
    inserted = ranges_[{std::string(w->key()), std::string(w->end())}].insert(w).second;
  }
  CHECK(inserted) << "watcher " << w->hub_id << " added twice";
  size_++;
}

void WatcherIndex::Remove(Watcher* w) {
  if (!w->from_key && w->end().empty()) {
    auto it = keys_.find(std::string(w->key()));
    CHECK(it != keys_.end()) << "watcher " << w->hub_id << " not indexed";
    CHECK(it->second.erase(w) == 1) << "watcher " << w->hub_id << " not indexed";
    if (it->second.empty()) keys_.erase(it);
  } else {
    auto it = ranges_.find({std::string(w->key()), std::string(w->end())});
    CHECK(it != ranges_.end()) << "watcher " << w->hub_id << " not indexed";
    CHECK(it->second.erase(w) == 1) << "watcher " << w->hub_id << " not indexed";
    if (it->second.empty()) ranges_.erase(it);
  }
  size_--;
}

}  // namespace cairn::watch
