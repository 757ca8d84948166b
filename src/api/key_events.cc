#include "api/key_events.h"

namespace cairn::api {

std::string PrefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  for (size_t i = end.size(); i > 0; i--) {
    if (static_cast<unsigned char>(end[i - 1]) < 0xff) {
      end[i - 1] = static_cast<char>(static_cast<unsigned char>(end[i - 1]) + 1);
      end.resize(i);
      return end;
    }
  }
  return std::string(1, '\0');
}

bool KeyEvents::Sub::Covers(const std::string& k) const {
  if (range_end.empty()) return k == key;
  if (k < key) return false;
  return range_end == std::string(1, '\0') || k < range_end;
}

uint64_t KeyEvents::Subscribe(std::string key, std::string range_end, bool deletes_only, Callback cb) {
  std::lock_guard<std::mutex> lock(mu_);
  if (subs_.size() >= max_) return 0;
  const uint64_t id = next_id_++;
  subs_[id] = Sub{std::move(key), std::move(range_end), deletes_only, std::make_shared<Callback>(std::move(cb))};
  count_ = subs_.size();
  return id;
}

void KeyEvents::Unsubscribe(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  subs_.erase(id);
  count_ = subs_.size();
}

size_t KeyEvents::size() const { return count_.load(); }

void KeyEvents::Publish(int64_t rev, const std::vector<mvccpb::Event>& events) {
  if (count_.load() == 0) return;
  std::vector<std::pair<std::shared_ptr<Callback>, std::vector<const mvccpb::Event*>>> calls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, sub] : subs_) {
      std::vector<const mvccpb::Event*> matching;
      for (const auto& ev : events) {
        if (sub.deletes_only && ev.type() != mvccpb::Event::DELETE) continue;
        if (sub.Covers(ev.kv().key())) matching.push_back(&ev);
      }
      if (!matching.empty()) calls.emplace_back(sub.cb, std::move(matching));
    }
  }
  // Outside the lock: a callback may subscribe or unsubscribe.
  for (auto& [cb, matching] : calls) (*cb)(rev, matching);
}

}  // namespace cairn::api
