// Latency trace points: timestamped events along a request's path, for
// finding where the time of one request goes (which hand-off, which write).
// Off unless the process starts with CAIRN_TRACE=<file>; then every Point()
// records (stage, key, value, CLOCK_MONOTONIC ns) into a bounded in-memory
// buffer (CAIRN_TRACE_EVENTS, default 1,000,000; later points are dropped),
// written to <file> as text lines "stage key value ns" when the process exits
// normally. Monotonic time is the same clock in every process of a machine,
// so the files of a cluster's members line up. scripts/trace-put-path.sh
// uses them; docs/benchmarks.md has what they showed.
//
// Keys: a raft index for the log stages, a waiter id for the request stages
// ("accept" maps one to the other: key = waiter id, value = index).
//
// Thread-safe; a disabled Point costs one load and a branch.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace cairn::trace {

struct Event {
  const char* stage;  // a string literal
  uint64_t key;
  uint64_t value;
  uint64_t ns;
};

class Recorder {
 public:
  // The process's recorder (never destroyed: points may come from threads
  // still running at exit).
  static Recorder& Get();
  bool enabled() const { return events_ != nullptr; }
  void Record(const char* stage, uint64_t key, uint64_t value);
  // Writes what was recorded to the file and stops recording (at exit).
  void Dump();
  size_t recorded() const;

 private:
  Recorder();
  Event* events_ = nullptr;
  size_t capacity_ = 0;
  std::atomic<size_t> next_{0};
  std::atomic<bool> dumped_{false};
  const char* path_ = nullptr;
};

inline void Point(const char* stage, uint64_t key, uint64_t value = 0) {
  Recorder& r = Recorder::Get();
  if (r.enabled()) r.Record(stage, key, value);
}

}  // namespace cairn::trace
