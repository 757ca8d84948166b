#include "common/trace_points.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace cairn::trace {

namespace {
void DumpAtExit() { Recorder::Get().Dump(); }
}  // namespace

Recorder& Recorder::Get() {
  static Recorder* recorder = new Recorder();
  return *recorder;
}

Recorder::Recorder() {
  path_ = std::getenv("CAIRN_TRACE");
  if (path_ == nullptr || *path_ == '\0') return;
  capacity_ = 1000000;
  if (const char* n = std::getenv("CAIRN_TRACE_EVENTS")) {
    const long long v = std::atoll(n);
    if (v > 0) capacity_ = static_cast<size_t>(std::min<long long>(v, 100000000));
  }
  events_ = new Event[capacity_]();
  std::atexit(DumpAtExit);
}

void Recorder::Record(const char* stage, uint64_t key, uint64_t value) {
  if (dumped_.load(std::memory_order_relaxed)) return;
  const size_t i = next_.fetch_add(1, std::memory_order_relaxed);
  if (i >= capacity_) return;
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  events_[i] = Event{stage, key, value, static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec)};
}

size_t Recorder::recorded() const { return std::min(next_.load(), capacity_); }

void Recorder::Dump() {
  if (events_ == nullptr || dumped_.exchange(true)) return;
  FILE* f = std::fopen(path_, "w");
  if (f == nullptr) return;
  const size_t n = recorded();
  for (size_t i = 0; i < n; i++) {
    const Event& e = events_[i];
    if (e.stage == nullptr) continue;  // claimed by a thread still writing it
    std::fprintf(f, "%s %llu %llu %llu\n", e.stage, static_cast<unsigned long long>(e.key),
                 static_cast<unsigned long long>(e.value), static_cast<unsigned long long>(e.ns));
  }
  std::fclose(f);
}

}  // namespace cairn::trace
