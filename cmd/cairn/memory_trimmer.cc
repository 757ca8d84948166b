#include "memory_trimmer.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdio>

namespace cairn {

MemoryTrimmer::MemoryTrimmer(Options options) : options_(options) {
  thread_ = std::thread([this] { Run(); });
}

MemoryTrimmer::~MemoryTrimmer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

namespace {
// Resident set size in bytes, from /proc/self/statm; 0 if unreadable.
size_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size_pages = 0, resident_pages = 0;
  const int n = std::fscanf(f, "%lu %lu", &size_pages, &resident_pages);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<size_t>(resident_pages) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}
}  // namespace

void MemoryTrimmer::Run() {
  // Resident memory is malloc's live blocks (uordblks, hblkhd), the free
  // heap pages it still holds resident, and everything else (code, stacks,
  // pages of partly used blocks): `other`, measured right after a trim, when
  // the free pages are gone. Between trims the free resident pages are then
  // about resident - other - live; memory in use by a request in flight
  // counts as live, so it never looks like something to give back.
  auto measure_other = [] {
    const struct mallinfo2 m = mallinfo2();
    const size_t live = m.uordblks + m.hblkhd;
    const size_t resident = ResidentBytes();
    return resident > live ? resident - live : 0;
  };
  malloc_trim(0);
  size_t other = measure_other();
  size_t last_live = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, options_.interval, [this] { return stop_; })) {
    const struct mallinfo2 m = mallinfo2();
    const size_t live = m.uordblks + m.hblkhd;
    const size_t accounted = other + live;
    const size_t resident = ResidentBytes();
    // Also when more than the slack was freed since the last look: a trim
    // made while big buffers were being freed measured some of their pages
    // as `other`, which the estimate alone would then never look at again.
    const bool freed_a_lot = last_live > live && last_live - live > options_.slack_bytes;
    last_live = live;
    if (!freed_a_lot && (resident <= accounted || resident - accounted <= options_.slack_bytes)) continue;
    malloc_trim(0);
    // Whatever trimming could not return is not looked at again.
    other = measure_other();
  }
}

}  // namespace cairn
