#include "hostsim/crash_env.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "common/check.h"

namespace cairn::hostsim {
namespace {

std::string PathOf(int fd) {
  char link[64];
  std::snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  char buf[4096];
  ssize_t n = readlink(link, buf, sizeof(buf) - 1);
  CHECK(n > 0) << "readlink " << link;
  return std::string(buf, static_cast<size_t>(n));
}

void WriteAll(int fd, const char* data, size_t n, uint64_t offset) {
  while (n > 0) {
    ssize_t w = pwrite(fd, data, n, static_cast<off_t>(offset));
    CHECK(w > 0 || errno == EINTR) << "pwrite while undoing: " << errno;
    if (w <= 0) continue;
    data += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
}

// Opens the file with inode `ino`: at `path`, or renamed within its folder;
// -1 if it is gone.
int OpenByInode(const std::string& path, uint64_t ino) {
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && st.st_ino == ino) return open(path.c_str(), O_WRONLY | O_CLOEXEC);
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (stat(entry.path().c_str(), &st) == 0 && st.st_ino == ino) {
      return open(entry.path().c_str(), O_WRONLY | O_CLOEXEC);
    }
  }
  return -1;
}

}  // namespace

int CrashEnv::Allocate(int fd, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (crashed_) return 0;
  return WalEnv::Allocate(fd, bytes);
}

void CrashEnv::ArmCrash() {
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = true;
}

int CrashEnv::Write(int fd, const char* data, size_t n, uint64_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  if (crashed_) return 0;
  if (armed_ && n > 1 && (offset + n) % 3 == 0) {
    // Torn in the middle of this write: its first part reaches the file.
    crashed_ = true;
    n /= 2;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) return errno;
  Undo u;
  u.ino = st.st_ino;
  u.path = PathOf(fd);
  u.offset = offset;
  u.n = n;
  u.old_size = static_cast<uint64_t>(st.st_size);
  if (offset < u.old_size) {
    u.old_bytes.resize(std::min<uint64_t>(n, u.old_size - offset));
    ssize_t r = pread(fd, u.old_bytes.data(), u.old_bytes.size(), static_cast<off_t>(offset));
    CHECK(r == static_cast<ssize_t>(u.old_bytes.size())) << "pread " << u.path;
  }
  u.new_bytes.assign(data, n);
  int err = WalEnv::Write(fd, data, n, offset);
  if (err == 0) {
    unsynced_.push_back(std::move(u));
    writes_++;
  }
  return err;
}

int CrashEnv::SyncData(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (crashed_) return 0;
  if (armed_) {
    crashed_ = true;
    return 0;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) return errno;
  if (!lying_sync_) {
    std::erase_if(unsynced_, [&](const Undo& u) { return u.ino == st.st_ino; });
  }
  // The real sync is not needed for the simulation (nothing really crashes)
  // and would only slow it down.
  return 0;
}

size_t CrashEnv::Crash(raft::SplitMix64& rng) {
  std::lock_guard<std::mutex> lock(mu_);
  crashed_ = true;
  const size_t keep = unsynced_.empty() ? 0 : rng.Uniform(unsynced_.size() + 1);
  size_t undone = 0;
  for (size_t i = unsynced_.size(); i > keep; i--) {
    const Undo& u = unsynced_[i - 1];
    // The file may have been renamed since (a prepared segment) or removed.
    const int fd = OpenByInode(u.path, u.ino);
    if (fd < 0) continue;
    WriteAll(fd, u.old_bytes.data(), u.old_bytes.size(), u.offset);
    if (u.offset + u.n > u.old_size) {
      CHECK(ftruncate(fd, static_cast<off_t>(u.old_size)) == 0);
    }
    // The oldest undone write may be torn: some of its sectors made it.
    if (i - 1 == keep && u.n > 512 && rng.Uniform(2) == 0) {
      const size_t sectors = rng.Uniform(u.n / 512) ;
      WriteAll(fd, u.new_bytes.data(), sectors * 512, u.offset);
    }
    close(fd);
    undone++;
  }
  unsynced_.clear();
  return undone;
}

void CrashEnv::Restart() {
  std::lock_guard<std::mutex> lock(mu_);
  crashed_ = false;
  armed_ = false;
  unsynced_.clear();
}

}  // namespace cairn::hostsim
