// Gives back to the OS the memory glibc's malloc keeps after large,
// short-lived buffers.
//
// Why: gRPC receives a message as many small slices. One it then refuses as
// larger than the receive limit (a 64 MiB Put against the default 2 MiB) is
// freed again, but glibc keeps the freed pages: they lie below live
// allocations in its heaps, so its own trimming, which only shrinks a heap
// from the top, never reaches them, whatever M_TRIM_THRESHOLD or
// M_MMAP_THRESHOLD say (measured: each such request left ~20-60 MB of RSS,
// up to 100+ MB, and neither tunable changed that). malloc_trim(0) returns
// the free pages of every arena. etcd (Go) gives such memory back by itself.
//
// A thread looks every `interval` at how much of the resident size is free
// heap memory malloc holds (estimated from mallinfo2 and the resident size
// after the last trim) and trims when that is more than `slack_bytes`, or when
// more than `slack_bytes` of live memory was freed since its last look (a trim
// made while big buffers were being freed counts some of their pages as not
// malloc's, which the estimate alone would then never look at again), so an
// idle or steady server, or one that grows with live data, is not trimmed
// over and over.
//
// Thread safety: construct and destroy on one thread; the trimming runs on a
// thread of its own.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>

namespace cairn {

class MemoryTrimmer {
 public:
  struct Options {
    std::chrono::milliseconds interval{1000};  // Default: 1 s
    size_t slack_bytes = 16 << 20;             // Default: 16 MiB
  };

  explicit MemoryTrimmer(Options options);
  ~MemoryTrimmer();  // stops the thread and waits for it

  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

 private:
  void Run();

  const Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace cairn
