#include "watch/watcher.h"

#include <cstring>
#include <new>

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

boost::intrusive_ptr<Watcher> Watcher::Create(uint64_t hub_id, int64_t watch_id, WatchStream* stream,
                                              std::string_view key, std::string_view end, bool from_key,
                                              const etcdserverpb::WatchCreateRequest& request) {
  CHECK(!(from_key && !end.empty())) << "from-key watcher with range end";
  void* memory = ::operator new(sizeof(Watcher) + key.size() + end.size());
  auto* w = new (memory) Watcher(hub_id, watch_id, stream, static_cast<uint32_t>(key.size()),
                                 static_cast<uint32_t>(end.size()), from_key, request);
  char* bytes = reinterpret_cast<char*>(w + 1);
  if (!key.empty()) std::memcpy(bytes, key.data(), key.size());
  if (!end.empty()) std::memcpy(bytes + key.size(), end.data(), end.size());
  return boost::intrusive_ptr<Watcher>(w);
}

Watcher::Watcher(uint64_t hub_id, int64_t watch_id, WatchStream* stream, uint32_t key_size,
                 uint32_t end_size, bool from_key, const etcdserverpb::WatchCreateRequest& request)
    : key_size_(key_size),
      hub_id(hub_id),
      watch_id(watch_id),
      stream(stream),
      end_size_(end_size),
      from_key(from_key),
      no_put(HasFilter(request, etcdserverpb::WatchCreateRequest::NOPUT)),
      no_delete(HasFilter(request, etcdserverpb::WatchCreateRequest::NODELETE)),
      prev_kv(request.prev_kv()),
      progress_notify(request.progress_notify()),
      fragment(request.fragment()) {}

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
