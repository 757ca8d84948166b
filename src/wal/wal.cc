#include "wal/wal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "common/check.h"
#include "common/logging.h"
#include "wal/segment_reader.h"

namespace cairn::wal {

namespace fs = std::filesystem;

namespace {
// Every kSparseStride-th entry's offset is kept per segment, so ReadFrom
// starts near its entry without an index of every entry in memory.
constexpr uint64_t kSparseStride = 64;
constexpr size_t kZeroChunkBytes = 1 << 20;
constexpr char kSuffix[] = ".wal";
constexpr char kTmpSuffix[] = ".wal.tmp";

Status IoError(const std::string& what, int err) {
  Code code = (err == ENOSPC || err == EDQUOT) ? Code::kResourceExhausted : Code::kInternal;
  return Status(code, "wal: " + what + ": " + strerror(err));
}

// "<16 hex digits>.wal" -> seq.
bool ParseSegmentName(const std::string& name, uint64_t* seq) {
  if (name.size() != 16 + sizeof(kSuffix) - 1 || name.compare(16, std::string::npos, kSuffix) != 0) {
    return false;
  }
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    char c = name[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *seq = v;
  return true;
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int OpenFile(const std::string& path, int flags) {
  int fd;
  do {
    fd = open(path.c_str(), flags | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  return fd;
}
}  // namespace

struct Wal::Segment {
  uint64_t seq = 0;
  uint64_t bytes = 0;        // file size
  uint64_t first_index = 0;
  uint64_t last_index = 0;   // first_index - 1 while it holds no entry
  uint64_t end = 0;          // bytes in use: header and records (buffered ones too)
  int fd = -1;
  std::vector<uint64_t> sparse;  // offset of entry first_index + k * kSparseStride
  // Recovery only: what lies after the point where reading stopped.
  SegmentReader::ScanResult tail;

  ~Segment() {
    if (fd >= 0) close(fd);
  }
  void TrimSparse() {
    size_t entries = last_index + 1 - first_index;
    size_t keep = static_cast<size_t>((entries + kSparseStride - 1) / kSparseStride);
    sparse.resize(std::min(sparse.size(), keep));
  }
};

Status WalOptions::Validate() const {
  if (segment_bytes < (64 << 10) || segment_bytes % kBlockBytes != 0) {
    return Status(Code::kInvalidArgument, "wal: segment_bytes must be a multiple of 4096, at least 64 KiB");
  }
  if (max_buffer_bytes == 0) return Status(Code::kInvalidArgument, "wal: max_buffer_bytes must be > 0");
  return Status::Ok();
}

Wal::Wal(std::string dir, const WalOptions& options)
    : dir_(std::move(dir)), options_(options), env_(options.env ? options.env : WalEnv::Posix()) {}

Wal::~Wal() = default;

std::string Wal::SegmentPath(uint64_t seq) const {
  char name[32];
  std::snprintf(name, sizeof(name), "%016llx", static_cast<unsigned long long>(seq));
  return dir_ + "/" + name + kSuffix;
}

Status Wal::SyncDir() {
  int fd = OpenFile(dir_, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return IoError("open " + dir_, errno);
  int err = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  return err ? IoError("fsync " + dir_, err) : Status::Ok();
}

Result<std::unique_ptr<Wal>> Wal::Open(const std::string& dir, const WalOptions& options) {
  Status s = options.Validate();
  if (!s.ok()) return s;
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) return Status(Code::kInternal, "wal: cannot create " + dir + ": " + ec.message());
    // The new folder's entry must be durable before anything in it counts.
    int fd = OpenFile(fs::path(dir).parent_path().string(), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
      fsync(fd);
      close(fd);
    }
  }
  std::unique_ptr<Wal> wal(new Wal(dir, options));
  s = wal->Recover();
  if (!s.ok()) return s;
  return wal;
}

size_t Wal::spare_count() const {
  std::lock_guard<std::mutex> l(mu_);
  return spares_.size();
}

// ------------------------------------------------------------------ recovery

struct Wal::Recovery {
  bool unused_seen = false;
  std::vector<uint64_t> void_seqs;  // segments voided by a later header
};

Status Wal::Recover() {
  std::vector<std::pair<uint64_t, uint64_t>> files;  // seq, bytes
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir_, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    uint64_t seq;
    if (EndsWith(name, kTmpSuffix)) {
      // A segment whose preparation was interrupted.
      std::error_code ignored;
      fs::remove(it->path(), ignored);
      continue;
    }
    if (!ParseSegmentName(name, &seq)) continue;
    uint64_t bytes = fs::file_size(it->path(), ec);
    if (ec) return Status(Code::kInternal, "wal: stat " + it->path().string() + ": " + ec.message());
    files.emplace_back(seq, bytes);
  }
  if (ec) return Status(Code::kInternal, "wal: list " + dir_ + ": " + ec.message());
  std::sort(files.begin(), files.end());

  Recovery r;
  for (const auto& [seq, bytes] : files) {
    {
      std::lock_guard<std::mutex> l(mu_);
      next_seq_ = std::max(next_seq_, seq + 1);
    }
    Status s = RecoverSegment(&r, seq, bytes);
    if (!s.ok()) return s;
  }

  // Where reading stopped in a segment that another follows, that segment
  // ended (the next one's first_index followed on, checked above); anything
  // valid after that point is a record cut off from the log by damage.
  for (size_t i = 0; i + 1 < segments_.size(); i++) {
    const Segment& seg = *segments_[i];
    if (seg.tail.records > 0) {
      return Status(Code::kDataLoss,
                    "wal: " + SegmentPath(seg.seq) + ": damaged record at offset " +
                        std::to_string(seg.end) + " with valid records after it (from offset " +
                        std::to_string(seg.tail.first_offset) + "); refusing to start");
    }
  }
  if (!segments_.empty()) {
    Segment& last = *segments_.back();
    // The last segment may end in a torn write of a batch that was never
    // acknowledged: its records were all appended when at most last_index_
    // was durable. A record saying more was durable means the break is in
    // acknowledged data.
    if (last.tail.records > 0 && last.tail.max_synced_index > last_index_) {
      return Status(Code::kDataLoss,
                    "wal: " + SegmentPath(last.seq) + ": damaged record at offset " +
                        std::to_string(last.end) + " (after index " + std::to_string(last_index_) +
                        ") but a record at offset " + std::to_string(last.tail.first_offset) +
                        " was appended after it was synced; refusing to start");
    }
    if (last.tail.records > 0) {
      // Zero what is left of the torn batch, so that appending over it can
      // never line a stale record up behind new ones.
      CAIRN_LOG(kWarn) << "wal: " << SegmentPath(last.seq) << ": dropping a torn tail after index "
                       << last_index_ << " (offsets " << last.end << ".." << last.tail.end << ")";
      static const std::string zeros(kZeroChunkBytes, '\0');
      for (uint64_t off = last.end; off < last.tail.end; off += kZeroChunkBytes) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(kZeroChunkBytes, last.tail.end - off));
        int err = env_->Write(last.fd, zeros.data(), n, off);
        if (err) return IoError("write " + SegmentPath(last.seq), err);
      }
      int err = env_->SyncData(last.fd);
      if (err) return IoError("fdatasync " + SegmentPath(last.seq), err);
    }
    // The active segment's partly written last block goes into the buffer:
    // appends rewrite whole blocks.
    buf_offset_ = AlignDown(last.end, kBlockBytes);
    SegmentReader reader(last.fd, last.bytes, last.seq, SegmentPath(last.seq));
    auto prefix = reader.Read(buf_offset_, last.end - buf_offset_);
    if (!prefix.ok()) return prefix.status();
    buf_.assign(prefix->data(), prefix->size());
    for (auto& seg : segments_) seg->tail = SegmentReader::ScanResult();
    first_index_ = segments_.front()->first_index;
  } else {
    first_index_ = 1;
    last_index_ = 0;
  }
  synced_index_ = last_index_;

  for (uint64_t seq : r.void_seqs) {
    if (unlink(SegmentPath(seq).c_str()) != 0 && errno != ENOENT) {
      return IoError("unlink " + SegmentPath(seq), errno);
    }
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    std::sort(spares_.begin(), spares_.end(), [](const Spare& a, const Spare& b) { return a.seq < b.seq; });
  }
  Status s = SyncDir();
  if (!s.ok()) return s;
  CAIRN_LOG(kInfo) << "wal: opened " << dir_ << ": " << segments_.size() << " segments, entries "
                   << first_index_ << ".." << last_index_ << ", " << spare_count() << " spare";
  return Status::Ok();
}

Status Wal::RecoverSegment(Recovery* r, uint64_t seq, uint64_t bytes) {
  const std::string path = SegmentPath(seq);
  int fd = OpenFile(path, O_RDWR);
  if (fd < 0) return IoError("open " + path, errno);
  auto seg = std::make_unique<Segment>();
  seg->seq = seq;
  seg->bytes = bytes;
  seg->fd = fd;
  SegmentReader reader(fd, bytes, seq, path);

  auto head = reader.Read(0, kSegmentHeaderBytes);
  if (!head.ok()) return head.status();
  SegmentHeader header;
  if (!DecodeSegmentHeader(*head, &header) || header.seq != seq) {
    // Unused: a spare (a recycled one still has its old header), or the new
    // segment of a batch whose write was torn before its header landed.
    SegmentReader::ScanResult scan;
    Status s = reader.Scan(kSegmentHeaderBytes, &scan);
    if (!s.ok()) return s;
    if (scan.records > 0 && scan.max_synced_index > last_index_) {
      return Status(Code::kDataLoss, "wal: " + path +
                                         ": damaged segment header, but the segment holds records "
                                         "appended after index " + std::to_string(last_index_) +
                                         " was synced; refusing to start");
    }
    r->unused_seen = true;
    if (scan.records > 0 || bytes != options_.segment_bytes) {
      // Not reusable as it is: it holds records of its own seq.
      r->void_seqs.push_back(seq);
    } else {
      std::lock_guard<std::mutex> l(mu_);
      spares_.push_back(Spare{seq, bytes});
    }
    return Status::Ok();
  }
  if (r->unused_seen) {
    return Status(Code::kDataLoss, "wal: " + path +
                                       " follows a segment without a valid header; refusing to start");
  }

  // Where this segment starts relative to the log read so far.
  const uint64_t first = header.first_index;
  if (header.flags & kSegmentResets) {
    for (auto& s : segments_) r->void_seqs.push_back(s->seq);
    segments_.clear();
  } else if (!segments_.empty() && first != last_index_ + 1) {
    if (first > last_index_ + 1 || !(header.flags & kSegmentTruncates)) {
      return Status(Code::kDataLoss, "wal: " + path + " starts at index " + std::to_string(first) +
                                         " but the log before it ends at " +
                                         std::to_string(last_index_) + "; refusing to start");
    }
    // A truncation: entries from `first` on in earlier segments are void.
    while (!segments_.empty() && segments_.back()->first_index >= first) {
      r->void_seqs.push_back(segments_.back()->seq);
      segments_.pop_back();
    }
    if (!segments_.empty()) {
      Segment& prev = *segments_.back();
      if (prev.last_index + 1 < first) {
        return Status(Code::kDataLoss, "wal: " + path + " truncates the log at index " +
                                           std::to_string(first) + " beyond its end");
      }
      prev.last_index = first - 1;
      prev.TrimSparse();
    }
  }
  seg->first_index = first;
  seg->last_index = first - 1;
  if (segments_.empty()) first_index_ = first;
  last_index_ = first - 1;

  uint64_t offset = kSegmentHeaderBytes;
  while (true) {
    RecordView v;
    uint64_t n = 0;
    Status s = reader.RecordAt(offset, &v, &n);
    if (!s.ok()) return s;
    if (n == 0) break;
    if (v.type == RecordType::kEntry) {
      if (v.index != last_index_ + 1) {
        return Status(Code::kDataLoss, "wal: " + path + " offset " + std::to_string(offset) +
                                           ": entry " + std::to_string(v.index) + " where " +
                                           std::to_string(last_index_ + 1) + " was expected");
      }
      if ((v.index - first) % kSparseStride == 0) seg->sparse.push_back(offset);
      last_index_ = v.index;
      seg->last_index = v.index;
    } else {
      hard_state_ = v.hard_state;
    }
    offset += n;
  }
  seg->end = offset;
  Status s = reader.Scan(offset, &seg->tail);
  if (!s.ok()) return s;
  segments_.push_back(std::move(seg));
  return Status::Ok();
}

// ------------------------------------------------------------------ spares

Status Wal::CreateSegmentFile(uint64_t seq, uint64_t bytes) {
  const std::string path = SegmentPath(seq);
  const std::string tmp = dir_ + "/" + fs::path(path).stem().string() + kTmpSuffix;
  int fd = OpenFile(tmp, O_RDWR | O_CREAT | O_TRUNC);
  if (fd < 0) return IoError("create " + tmp, errno);
  auto fail = [&](const std::string& what, int err) {
    close(fd);
    unlink(tmp.c_str());
    return IoError(what + " " + tmp, err);
  };
  // fallocate reserves the space (ENOSPC now, not at an append), but leaves
  // the extents "unwritten": the first write to each block would convert
  // it, a metadata change every fdatasync would then have to journal. So
  // every byte is written with zeros as well.
  int err = env_->Allocate(fd, bytes);
  if (err && err != EOPNOTSUPP) return fail("fallocate", err);
  err = WriteZeros(fd, 0, bytes);
  if (err) return fail("write", err);
  err = env_->SyncData(fd);
  if (err) return fail("fdatasync", err);
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    unlink(tmp.c_str());
    return IoError("rename " + tmp, err);
  }
  return SyncDir();
}

int Wal::WriteZeros(int fd, uint64_t from, uint64_t to) {
  static const std::string zeros(kZeroChunkBytes, '\0');
  for (uint64_t off = from; off < to; off += kZeroChunkBytes) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kZeroChunkBytes, to - off));
    int err = env_->Write(fd, zeros.data(), n, off);
    if (err) return err;
    // Written back chunk by chunk: left to the final fdatasync, 64 MiB of
    // dirty pages would go to the disk at once and the appender's next
    // fdatasync (a cache flush) would wait behind all of it (measured: one
    // 36-46 ms stall, against at most 3-12 ms paced).
    sync_file_range(fd, static_cast<off_t>(off), static_cast<off_t>(n),
                    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  }
  return 0;
}

Status Wal::TakeSpares(const std::vector<uint64_t>& bytes_needed, std::deque<Spare>* out) {
  for (uint64_t bytes : bytes_needed) {
    Spare spare;
    bool got = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!spares_.empty()) {
        spare = spares_.front();
        spares_.pop_front();
        got = true;
      }
    }
    if (!got) {
      // Nothing ready: wait for a preparation under way, else prepare here.
      std::lock_guard<std::mutex> p(prepare_mu_);
      {
        std::lock_guard<std::mutex> l(mu_);
        if (!spares_.empty()) {
          spare = spares_.front();
          spares_.pop_front();
          got = true;
        } else {
          spare.seq = next_seq_++;
        }
      }
      if (!got) {
        const auto t0 = std::chrono::steady_clock::now();
        spare.bytes = std::max(bytes, options_.segment_bytes);
        Status s = CreateSegmentFile(spare.seq, spare.bytes);
        if (!s.ok()) {
          ReturnSpares(out);
          return s;
        }
        const std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - t0;
        CAIRN_LOG(kWarn) << "wal: no segment was ready; prepared " << spare.bytes << " bytes inline in "
                         << took.count() << " ms";
      }
    }
    if (spare.bytes < bytes) {
      // An entry larger than a segment: grow the spare (keeping seq order)
      // with zeros, as a new one is made.
      const std::string path = SegmentPath(spare.seq);
      int fd = OpenFile(path, O_RDWR);
      int err = fd < 0 ? errno : env_->Allocate(fd, bytes);
      if (err == EOPNOTSUPP) err = 0;
      if (err == 0) err = WriteZeros(fd, spare.bytes, bytes);
      if (err == 0) err = env_->SyncData(fd);
      if (fd >= 0) close(fd);
      if (err) {
        // The file may have grown in part; its header is still not valid,
        // and recovery only reuses spares of the standard size.
        out->push_back(spare);
        ReturnSpares(out);
        return IoError("grow " + path, err);
      }
      spare.bytes = bytes;
    }
    out->push_back(spare);
  }
  return Status::Ok();
}

void Wal::ReturnSpares(std::deque<Spare>* spares) {
  std::lock_guard<std::mutex> l(mu_);
  for (const Spare& s : *spares) spares_.push_back(s);
  spares->clear();
  std::sort(spares_.begin(), spares_.end(), [](const Spare& a, const Spare& b) { return a.seq < b.seq; });
}

Status Wal::Maintain() {
  std::lock_guard<std::mutex> p(prepare_mu_);
  // Released segments go oldest first, each rename or unlink durable before
  // the next: recovery must never find a segment without the older ones
  // that are still part of the log.
  while (true) {
    Spare released;
    bool recycle;
    uint64_t new_seq = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (released_.empty()) break;
      released = released_.front();
      recycle = spares_.size() < options_.spare_segments && released.bytes == options_.segment_bytes;
      if (recycle) new_seq = next_seq_++;
    }
    const std::string from = SegmentPath(released.seq);
    // Renamed to a new seq, its old records no longer match and its old
    // header names another seq: it reads as an unused segment at once.
    int rc = recycle ? rename(from.c_str(), SegmentPath(new_seq).c_str()) : unlink(from.c_str());
    if (rc != 0 && errno != ENOENT) return IoError((recycle ? "rename " : "unlink ") + from, errno);
    Status s = SyncDir();
    if (!s.ok()) return s;
    std::lock_guard<std::mutex> l(mu_);
    released_.pop_front();
    if (recycle && rc == 0) spares_.push_back(Spare{new_seq, released.bytes});
  }
  while (true) {
    uint64_t seq;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (spares_.size() >= options_.spare_segments) break;
      seq = next_seq_++;
    }
    Status s = CreateSegmentFile(seq, options_.segment_bytes);
    if (!s.ok()) return s;
    std::lock_guard<std::mutex> l(mu_);
    spares_.push_back(Spare{seq, options_.segment_bytes});
  }
  return Status::Ok();
}

// ------------------------------------------------------------------ writing

uint64_t Wal::SegmentBytesFor(uint64_t record_bytes) const {
  return std::max(options_.segment_bytes,
                  AlignUp(kSegmentHeaderBytes + HardStateRecordBytes() + record_bytes, kBlockBytes));
}

Status Wal::WriteBuffer(bool sync) {
  if (segments_.empty()) return Status::Ok();
  Segment& a = *segments_.back();
  if (buf_dirty_) {
    const size_t used = buf_.size();
    CHECK(buf_offset_ + used == a.end) << "buffer " << buf_offset_ << "+" << used << " end " << a.end;
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(AlignUp(used, kBlockBytes), a.bytes - buf_offset_));
    buf_.resize(n, '\0');
    int err = env_->Write(a.fd, buf_.data(), n, buf_offset_);
    buf_.resize(used);
    if (err) return IoError("write " + SegmentPath(a.seq), err);
    buf_dirty_ = false;
    unsynced_ = true;
    uint64_t keep = AlignDown(a.end, kBlockBytes);
    buf_.erase(0, keep - buf_offset_);
    buf_offset_ = keep;
  }
  if (sync && unsynced_) {
    int err = env_->SyncData(a.fd);
    if (err) return IoError("fdatasync " + SegmentPath(a.seq), err);
    unsynced_ = false;
    synced_index_ = last_index_;
  }
  return Status::Ok();
}

Status Wal::Activate(const Spare& spare, uint64_t first_index, uint32_t flags) {
  // The segment being left must be complete on disk before the next one
  // gets a byte: recovery takes the point where reading a segment stops for
  // its end only if the next segment follows on.
  Status s = WriteBuffer(true);
  if (!s.ok()) return s;
  const std::string path = SegmentPath(spare.seq);
  int fd = OpenFile(path, O_RDWR);
  if (fd < 0) return IoError("open " + path, errno);
  auto seg = std::make_unique<Segment>();
  seg->seq = spare.seq;
  seg->bytes = spare.bytes;
  seg->first_index = first_index;
  seg->last_index = first_index - 1;
  seg->end = kSegmentHeaderBytes;
  seg->fd = fd;
  buf_.clear();
  buf_offset_ = 0;
  EncodeSegmentHeader(SegmentHeader{spare.seq, first_index, flags}, &buf_);
  buf_dirty_ = true;
  segments_.push_back(std::move(seg));
  // Each segment starts with the HardState, so releasing older segments
  // never loses it.
  if (!hard_state_.empty()) AppendHardStateRecord();
  return Status::Ok();
}

void Wal::AppendHardStateRecord() {
  Segment& a = *segments_.back();
  EncodeHardState(a.seq, synced_index_, hard_state_, &buf_);
  a.end += HardStateRecordBytes();
  buf_dirty_ = true;
}

Status Wal::Append(std::span<const Entry> entries) {
  if (entries.empty()) return Status::Ok();
  for (size_t i = 0; i < entries.size(); i++) {
    if (entries[i].index != last_index_ + 1 + i) {
      return Status(Code::kInvalidArgument, "wal: append of entry " + std::to_string(entries[i].index) +
                                                " after " + std::to_string(last_index_ + i));
    }
  }
  // Plan the segments the batch needs first, so that running out of space
  // changes nothing.
  std::vector<uint64_t> needed;
  bool have = !segments_.empty();
  uint64_t pos = have ? segments_.back()->end : 0;
  uint64_t cap = have ? segments_.back()->bytes : 0;
  const uint64_t start = kSegmentHeaderBytes + (hard_state_.empty() ? 0 : HardStateRecordBytes());
  for (const Entry& e : entries) {
    uint64_t rec = EntryRecordBytes(e.data.size());
    if (!have || pos + rec > cap) {
      needed.push_back(SegmentBytesFor(rec));
      cap = needed.back();
      pos = start;
      have = true;
    }
    pos += rec;
  }
  std::deque<Spare> spares;
  Status s = TakeSpares(needed, &spares);
  if (!s.ok()) return s;

  for (const Entry& e : entries) {
    uint64_t rec = EntryRecordBytes(e.data.size());
    if (segments_.empty() || segments_.back()->end + rec > segments_.back()->bytes) {
      CHECK(!spares.empty()) << "append planned too few segments";
      s = Activate(spares.front(), last_index_ + 1, 0);
      spares.pop_front();
      if (!s.ok()) return s;
    }
    Segment& a = *segments_.back();
    if ((e.index - a.first_index) % kSparseStride == 0) a.sparse.push_back(a.end);
    EncodeEntry(a.seq, synced_index_, e, &buf_);
    a.end += rec;
    a.last_index = e.index;
    last_index_ = e.index;
    buf_dirty_ = true;
    if (buf_.size() >= options_.max_buffer_bytes) {
      s = WriteBuffer(false);
      if (!s.ok()) return s;
    }
  }
  // A spare larger than planned leaves some unused.
  ReturnSpares(&spares);
  return Status::Ok();
}

Status Wal::SetHardState(const HardState& hard_state) {
  if (segments_.empty() || segments_.back()->end + HardStateRecordBytes() > segments_.back()->bytes) {
    std::deque<Spare> spares;
    Status s = TakeSpares({SegmentBytesFor(HardStateRecordBytes())}, &spares);
    if (!s.ok()) return s;
    hard_state_ = hard_state;
    return Activate(spares.front(), last_index_ + 1, 0);  // writes the HardState first
  }
  hard_state_ = hard_state;
  AppendHardStateRecord();
  return Status::Ok();
}

Status Wal::Sync() { return WriteBuffer(true); }

Status Wal::StartOverride(uint64_t first_index, uint32_t flags) {
  Status s = WriteBuffer(true);
  if (!s.ok()) return s;
  std::deque<Spare> spares;
  s = TakeSpares({SegmentBytesFor(0)}, &spares);
  if (!s.ok()) return s;
  // Records of the new segment are appended when everything before
  // first_index is settled.
  last_index_ = first_index - 1;
  synced_index_ = last_index_;
  s = Activate(spares.front(), first_index, flags);
  if (!s.ok()) return s;
  // The commit point: once this header is durable, recovery voids the rest.
  s = WriteBuffer(true);
  if (!s.ok()) return s;

  std::unique_ptr<Segment> active = std::move(segments_.back());
  segments_.pop_back();
  std::vector<uint64_t> void_seqs;
  while (!segments_.empty() &&
         ((flags & kSegmentResets) || segments_.back()->first_index >= first_index)) {
    void_seqs.push_back(segments_.back()->seq);
    segments_.pop_back();
  }
  if (!segments_.empty()) {
    Segment& prev = *segments_.back();
    CHECK(prev.last_index + 1 >= first_index) << "truncation past the end of the log";
    prev.last_index = first_index - 1;
    prev.TrimSparse();
  }
  segments_.push_back(std::move(active));
  first_index_ = segments_.front()->first_index;
  for (uint64_t seq : void_seqs) {
    if (unlink(SegmentPath(seq).c_str()) != 0 && errno != ENOENT) {
      return IoError("unlink " + SegmentPath(seq), errno);
    }
  }
  return void_seqs.empty() ? Status::Ok() : SyncDir();
}

Status Wal::TruncateAfter(uint64_t index) {
  if (index + 1 < first_index_ || index > last_index_) {
    return Status(Code::kInvalidArgument, "wal: truncate after " + std::to_string(index) +
                                              " outside the log " + std::to_string(first_index_) +
                                              ".." + std::to_string(last_index_));
  }
  if (index == last_index_) return Status::Ok();
  return StartOverride(index + 1, kSegmentTruncates);
}

Status Wal::Reset(uint64_t next_index) {
  if (next_index == 0) return Status(Code::kInvalidArgument, "wal: reset to index 0");
  return StartOverride(next_index, kSegmentResets);
}

bool Wal::CanReleaseBefore(uint64_t index) const {
  return segments_.size() > 1 && segments_[1]->first_index <= index;
}

size_t Wal::ReleaseBefore(uint64_t index) {
  size_t n = 0;
  while (CanReleaseBefore(index)) {
    Spare released{segments_.front()->seq, segments_.front()->bytes};
    segments_.pop_front();  // closes the file
    std::lock_guard<std::mutex> l(mu_);
    released_.push_back(released);
    n++;
  }
  if (n > 0) first_index_ = segments_.front()->first_index;
  return n;
}

// ------------------------------------------------------------------ reading

Result<std::vector<Entry>> Wal::ReadFrom(uint64_t index, size_t max_bytes) const {
  if (index < first_index_) {
    return Status(Code::kOutOfRange, "wal: entry " + std::to_string(index) +
                                         " is released (the log starts at " +
                                         std::to_string(first_index_) + ")");
  }
  std::vector<Entry> out;
  const uint64_t last = std::min(synced_index_, last_index_);
  size_t bytes = 0;
  // The last segment starting at or before `index`.
  auto starts_after = [](uint64_t i, const std::unique_ptr<Segment>& s) { return i < s->first_index; };
  auto it = std::upper_bound(segments_.begin(), segments_.end(), index, starts_after);
  if (it != segments_.begin()) --it;
  for (; it != segments_.end() && index <= last; ++it) {
    const Segment& seg = **it;
    if (index > seg.last_index || seg.sparse.empty()) continue;
    const std::string path = SegmentPath(seg.seq);
    SegmentReader reader(seg.fd, seg.bytes, seg.seq, path, 64 << 10);
    uint64_t k = (index - seg.first_index) / kSparseStride;
    CHECK(k < seg.sparse.size()) << "sparse index of " << path;
    uint64_t offset = seg.sparse[k];
    while (index <= std::min(seg.last_index, last)) {
      RecordView v;
      uint64_t n = 0;
      Status s = reader.RecordAt(offset, &v, &n);
      if (!s.ok()) return s;
      if (n == 0) {
        return Status(Code::kDataLoss, "wal: " + path + ": no valid record at offset " +
                                           std::to_string(offset) + " reading entry " +
                                           std::to_string(index));
      }
      offset += n;
      if (v.type != RecordType::kEntry || v.index < index) continue;
      if (v.index != index) {
        return Status(Code::kDataLoss, "wal: " + path + ": entry " + std::to_string(v.index) +
                                           " where " + std::to_string(index) + " was expected");
      }
      if (!out.empty() && bytes + v.data.size() > max_bytes) return out;
      out.push_back(Entry{v.index, v.term, v.entry_type, std::string(v.data)});
      bytes += v.data.size();
      index++;
    }
  }
  return out;
}

}  // namespace cairn::wal
