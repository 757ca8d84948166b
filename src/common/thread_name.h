// Names the calling thread (as `top -H`, `ps -L`, perf and /proc/PID/task
// show it), so a per-thread profile tells the raft, apply and peer threads
// apart. Linux keeps at most 15 characters; longer names are cut.
#pragma once

#include <pthread.h>

#include <string>

namespace cairn {

inline void SetThreadName(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace cairn
