#include "wal/wal_env.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

namespace cairn::wal {

int WalEnv::Allocate(int fd, uint64_t bytes) {
  if (fallocate(fd, 0, 0, static_cast<off_t>(bytes)) == 0) return 0;
  return errno;
}

int WalEnv::Write(int fd, const char* data, size_t n, uint64_t offset) {
  while (n > 0) {
    ssize_t w = pwrite(fd, data, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return 0;
}

int WalEnv::SyncData(int fd) { return fdatasync(fd) == 0 ? 0 : errno; }

WalEnv* WalEnv::Posix() {
  static WalEnv env;
  return &env;
}

}  // namespace cairn::wal
