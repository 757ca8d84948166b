// A brute-force guard for Authenticate (beyond etcd, which checks every
// attempt). Per user name, on this member: after kFreeFailures failed logins
// in a row, the next attempt is refused unchecked (the same "authentication
// failed" answer, no bcrypt work) until a wait that doubles with every
// further failure, from kFirstWait up to kMaxWait. A successful login clears
// the name. So a guesser gets a handful of tries and then one every few
// seconds, while bcrypt's cost is not spent on the refused ones.
//
// Bounded: at most kMaxNames names are tracked; past it the name with the
// oldest failure is forgotten.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace cairn::api {

class LoginGuard {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr int kFreeFailures = 3;
  static constexpr std::chrono::milliseconds kFirstWait{200};
  static constexpr std::chrono::milliseconds kMaxWait{10000};
  static constexpr size_t kMaxNames = 10000;

  // Whether an attempt for `name` may be checked now.
  bool Allowed(const std::string& name, Clock::time_point now = Clock::now()) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = names_.find(name);
    return it == names_.end() || now >= it->second.next_allowed;
  }

  // A failed attempt (wrong password or unknown user).
  void Failed(const std::string& name, Clock::time_point now = Clock::now()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (names_.size() >= kMaxNames && names_.find(name) == names_.end()) {
      auto oldest = std::min_element(names_.begin(), names_.end(), [](const auto& a, const auto& b) {
        return a.second.last_failure < b.second.last_failure;
      });
      names_.erase(oldest);
    }
    Entry& e = names_[name];
    e.failures++;
    e.last_failure = now;
    if (e.failures >= kFreeFailures) {
      const int doublings = std::min(e.failures - kFreeFailures, 16);
      const auto wait = std::min<std::chrono::milliseconds>(kFirstWait * (int64_t{1} << doublings), kMaxWait);
      e.next_allowed = now + wait;
    }
  }

  void Succeeded(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    names_.erase(name);
  }

 private:
  struct Entry {
    int failures = 0;
    Clock::time_point last_failure{};
    Clock::time_point next_allowed{};
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry> names_;  // GUARDED_BY(mu_)
};

}  // namespace cairn::api
