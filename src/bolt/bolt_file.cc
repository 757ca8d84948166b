#include "bolt/bolt_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace cairn::bolt {
namespace {

constexpr uint16_t kBranchPage = 0x01;
constexpr uint16_t kLeafPage = 0x02;
constexpr uint16_t kMetaPage = 0x04;
constexpr uint16_t kFreelistPage = 0x10;
constexpr uint32_t kBucketLeafFlag = 0x01;
constexpr size_t kPageHeaderBytes = 16;
constexpr size_t kElementBytes = 16;  // leaf and branch elements alike
constexpr size_t kMetaBytes = 64;     // magic .. checksum
constexpr size_t kBucketHeaderBytes = 16;
constexpr uint64_t kFirstDataPage = 3;  // 0, 1: meta; 2: freelist
constexpr int kMaxDepth = 64;
constexpr size_t kWriteBufferBytes = 1 << 20;

void Put16(std::string* out, size_t at, uint16_t v) {
  for (int i = 0; i < 2; ++i) (*out)[at + i] = static_cast<char>(v >> (8 * i));
}
void Put32(std::string* out, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*out)[at + i] = static_cast<char>(v >> (8 * i));
}
void Put64(std::string* out, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) (*out)[at + i] = static_cast<char>(v >> (8 * i));
}
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t Get32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t Get64(const uint8_t* p) { return Get32(p) | (static_cast<uint64_t>(Get32(p + 4)) << 32); }

uint64_t Fnv64a(const uint8_t* p, size_t n) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

std::string ErrnoText() { return std::strerror(errno); }

// One level of the tree being built: a leaf (level 0) or a branch.
struct Level {
  struct Element {
    std::string key;
    std::string value;  // leaf only
    uint32_t flags = 0;  // leaf only
    uint64_t child = 0;  // branch only
  };
  std::vector<Element> elements;
  size_t bytes = kPageHeaderBytes;
};

}  // namespace

struct BoltWriter::Impl {
  enum class Mode { kFile, kPlan, kStream };
  Mode mode = Mode::kFile;
  int fd = -1;
  Sink sink;
  Layout planned;
  uint32_t page_size = kDefaultPageSize;
  uint64_t next_page = kFirstDataPage;
  std::string buffer;          // pages not yet written, starting at buffer_page
  uint64_t buffer_page = kFirstDataPage;
  bool finished = false;
  Status error;                // the first write error, sticky

  // The bucket being written.
  bool in_bucket = false;
  std::string bucket;
  std::string last_key;
  bool have_key = false;
  uint64_t pages_in_bucket = 0;
  std::vector<Level> levels;
  // Top-level buckets written: name -> root page.
  std::vector<std::pair<std::string, uint64_t>> buckets;

  ~Impl() {
    if (fd >= 0) ::close(fd);
  }

  Status FlushBuffer() {
    if (mode == Mode::kPlan) {
      buffer_page += buffer.size() / page_size;
      buffer.clear();
      return Status::Ok();
    }
    if (mode == Mode::kStream) {
      Status s = sink(buffer);
      buffer_page += buffer.size() / page_size;
      buffer.clear();
      return s;
    }
    size_t done = 0;
    const off_t at = static_cast<off_t>(buffer_page * page_size);
    while (done < buffer.size()) {
      ssize_t n = ::pwrite(fd, buffer.data() + done, buffer.size() - done, at + static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Status(Code::kInternal, "writing the snapshot file: " + ErrnoText());
      done += static_cast<size_t>(n);
    }
    buffer_page += buffer.size() / page_size;
    buffer.clear();
    return Status::Ok();
  }

  // Appends one page (or a page and its overflow) holding `level`; returns its id.
  uint64_t WritePage(const Level& level, bool leaf) {
    const uint64_t id = next_page;
    const size_t pages = (level.bytes + page_size - 1) / page_size;
    std::string page(pages * page_size, '\0');
    Put64(&page, 0, id);
    Put16(&page, 8, leaf ? kLeafPage : kBranchPage);
    Put16(&page, 10, static_cast<uint16_t>(level.elements.size()));
    Put32(&page, 12, static_cast<uint32_t>(pages - 1));
    size_t data = kPageHeaderBytes + level.elements.size() * kElementBytes;
    for (size_t i = 0; i < level.elements.size(); ++i) {
      const auto& e = level.elements[i];
      const size_t at = kPageHeaderBytes + i * kElementBytes;
      const uint32_t pos = static_cast<uint32_t>(data - at);
      if (leaf) {
        Put32(&page, at, e.flags);
        Put32(&page, at + 4, pos);
        Put32(&page, at + 8, static_cast<uint32_t>(e.key.size()));
        Put32(&page, at + 12, static_cast<uint32_t>(e.value.size()));
      } else {
        Put32(&page, at, pos);
        Put32(&page, at + 4, static_cast<uint32_t>(e.key.size()));
        Put64(&page, at + 8, e.child);
      }
      page.replace(data, e.key.size(), e.key);
      data += e.key.size();
      if (leaf) {
        page.replace(data, e.value.size(), e.value);
        data += e.value.size();
      }
    }
    next_page += pages;
    ++pages_in_bucket;
    if (mode == Mode::kPlan) return id;
    buffer += page;
    if (buffer.size() >= kWriteBufferBytes && error.ok()) error = FlushBuffer();
    return id;
  }

  // Writes level `i` as a page and adds it to the level above.
  void FlushLevel(size_t i) {
    Level level = std::move(levels[i]);
    levels[i] = Level();
    const uint64_t id = WritePage(level, i == 0);
    std::string first = level.elements.empty() ? std::string() : level.elements[0].key;
    AddBranch(i + 1, std::move(first), id);
  }

  void AddBranch(size_t i, std::string key, uint64_t child) {
    if (levels.size() <= i) levels.resize(i + 1);
    const size_t need = kElementBytes + key.size();
    if (!levels[i].elements.empty() && levels[i].bytes + need > page_size) FlushLevel(i);
    levels[i].bytes += need;
    levels[i].elements.push_back({std::move(key), "", 0, child});
  }

  void AddLeaf(std::string_view key, std::string_view value, uint32_t flags) {
    if (levels.empty()) levels.resize(1);
    const size_t need = kElementBytes + key.size() + value.size();
    if (!levels[0].elements.empty() && levels[0].bytes + need > page_size) FlushLevel(0);
    levels[0].bytes += need;
    levels[0].elements.push_back({std::string(key), std::string(value), flags, 0});
  }

  // Ends the tree being built; returns its root page.
  uint64_t CloseTree() {
    if (levels.empty()) levels.resize(1);
    if (!levels[0].elements.empty() || pages_in_bucket == 0) FlushLevel(0);
    for (size_t i = 1;; ++i) {
      if (i + 1 == levels.size() && levels[i].elements.size() == 1) {
        const uint64_t root = levels[i].elements[0].child;
        levels.clear();
        pages_in_bucket = 0;
        return root;
      }
      FlushLevel(i);
    }
  }

  void CloseBucket() {
    if (!in_bucket) return;
    buckets.emplace_back(bucket, CloseTree());
    in_bucket = false;
  }

  // Meta 0, meta 1 and the (empty) freelist: the file's first three pages.
  std::string Head(Layout layout) const {
    std::string head = Meta(0, layout, 0) + Meta(1, layout, 1);
    std::string freelist(page_size, '\0');
    Put64(&freelist, 0, 2);
    Put16(&freelist, 8, kFreelistPage);
    return head + freelist;
  }

  std::string Meta(uint64_t page_id, Layout layout, uint64_t txid) const {
    std::string page(page_size, '\0');
    Put64(&page, 0, page_id);
    Put16(&page, 8, kMetaPage);
    const size_t m = kPageHeaderBytes;
    Put32(&page, m, kMagic);
    Put32(&page, m + 4, kVersion);
    Put32(&page, m + 8, page_size);
    Put32(&page, m + 12, 0);
    Put64(&page, m + 16, layout.root);
    Put64(&page, m + 24, 0);  // the root bucket's sequence
    Put64(&page, m + 32, 2);  // freelist page
    Put64(&page, m + 40, layout.pages);
    Put64(&page, m + 48, txid);
    Put64(&page, m + 56, Fnv64a(reinterpret_cast<const uint8_t*>(page.data() + m), 56));
    return page;
  }
};

BoltWriter::BoltWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BoltWriter::~BoltWriter() = default;

Result<std::unique_ptr<BoltWriter>> BoltWriter::Create(const std::string& path, uint32_t page_size) {
  if (page_size < 512 || (page_size & (page_size - 1)) != 0) {
    return Status(Code::kInvalidArgument, "page size must be a power of two of at least 512");
  }
  auto impl = std::make_unique<Impl>();
  impl->page_size = page_size;
  impl->fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (impl->fd < 0) return Status(Code::kInternal, "cannot create " + path + ": " + ErrnoText());
  return std::unique_ptr<BoltWriter>(new BoltWriter(std::move(impl)));
}

std::unique_ptr<BoltWriter> BoltWriter::Plan(uint32_t page_size) {
  auto impl = std::make_unique<Impl>();
  impl->mode = Impl::Mode::kPlan;
  impl->page_size = page_size;
  return std::unique_ptr<BoltWriter>(new BoltWriter(std::move(impl)));
}

std::unique_ptr<BoltWriter> BoltWriter::Stream(Layout layout, Sink sink, uint32_t page_size) {
  auto impl = std::make_unique<Impl>();
  impl->mode = Impl::Mode::kStream;
  impl->page_size = page_size;
  impl->sink = std::move(sink);
  impl->planned = layout;
  impl->buffer = impl->Head(layout);
  impl->buffer_page = 0;
  return std::unique_ptr<BoltWriter>(new BoltWriter(std::move(impl)));
}

Status BoltWriter::BeginBucket(std::string_view name) {
  Impl& w = *impl_;
  if (w.finished) return Status(Code::kFailedPrecondition, "the bolt file is finished");
  if (name.empty()) return Status(Code::kInvalidArgument, "empty bucket name");
  if (!w.buckets.empty() || w.in_bucket) {
    const std::string& previous = w.in_bucket ? w.bucket : w.buckets.back().first;
    if (name <= previous) return Status(Code::kInvalidArgument, "buckets out of order");
  }
  w.CloseBucket();
  w.in_bucket = true;
  w.bucket = std::string(name);
  w.have_key = false;
  return w.error;
}

Status BoltWriter::Put(std::string_view key, std::string_view value) {
  Impl& w = *impl_;
  if (w.finished || !w.in_bucket) return Status(Code::kFailedPrecondition, "no bucket is open");
  if (key.empty()) return Status(Code::kInvalidArgument, "empty key");
  if (w.have_key && key <= w.last_key) return Status(Code::kInvalidArgument, "keys out of order");
  if (key.size() > UINT32_MAX || value.size() > UINT32_MAX) return Status(Code::kInvalidArgument, "key or value too large");
  w.last_key = std::string(key);
  w.have_key = true;
  w.AddLeaf(key, value, 0);
  return w.error;
}

Result<Layout> BoltWriter::Finish() {
  Impl& w = *impl_;
  if (w.finished) return Status(Code::kFailedPrecondition, "the bolt file is finished");
  w.CloseBucket();
  // The root bucket: one entry per bucket, its value the bucket's header.
  for (const auto& [name, root] : w.buckets) {
    std::string header(kBucketHeaderBytes, '\0');
    Put64(&header, 0, root);
    w.AddLeaf(name, header, kBucketLeafFlag);
  }
  const Layout layout{w.CloseTree(), w.next_page};
  w.finished = true;
  if (!w.error.ok()) return w.error;
  if (w.mode == Impl::Mode::kStream && !(layout == w.planned)) {
    return Status(Code::kInternal, "bolt: the data streamed is not the data planned (root " +
                                       std::to_string(layout.root) + " of " + std::to_string(layout.pages) +
                                       " pages, planned " + std::to_string(w.planned.root) + " of " +
                                       std::to_string(w.planned.pages) + ")");
  }
  if (Status s = w.FlushBuffer(); !s.ok()) return s;
  if (w.mode != Impl::Mode::kFile) return layout;
  w.buffer = w.Head(layout);
  w.buffer_page = 0;
  if (Status s = w.FlushBuffer(); !s.ok()) return s;
  if (::fsync(w.fd) != 0) return Status(Code::kInternal, "syncing the snapshot file: " + ErrnoText());
  if (::close(w.fd) != 0) {
    w.fd = -1;
    return Status(Code::kInternal, "closing the snapshot file: " + ErrnoText());
  }
  w.fd = -1;
  return layout;
}

uint64_t BoltWriter::size() const { return impl_->next_page * impl_->page_size; }

struct BoltReader::Impl {
  int fd = -1;
  const uint8_t* base = nullptr;
  size_t mapped = 0;
  size_t size = 0;  // the database's bytes (<= mapped)
  uint32_t page_size = 0;
  uint64_t root = 0;
  uint64_t pages = 0;
  uint64_t txid = 0;

  ~Impl() {
    if (base != nullptr) ::munmap(const_cast<uint8_t*>(base), mapped);
    if (fd >= 0) ::close(fd);
  }

  static Status Corrupt(const std::string& what) {
    return Status(Code::kDataLoss, "invalid bolt database: " + what);
  }

  // The meta at `offset`, if valid.
  bool ReadMeta(size_t offset, uint32_t* page_size_out, uint64_t* root_out, uint64_t* pages_out,
                uint64_t* txid_out) const {
    if (offset + kPageHeaderBytes + kMetaBytes > size) return false;
    const uint8_t* m = base + offset + kPageHeaderBytes;
    if (Get32(m) != kMagic || Get32(m + 4) != kVersion) return false;
    if (Get64(m + 56) != Fnv64a(m, 56)) return false;
    *page_size_out = Get32(m + 8);
    *root_out = Get64(m + 16);
    *pages_out = Get64(m + 40);
    *txid_out = Get64(m + 48);
    return true;
  }

  // [begin, end) of page `id` with its overflow.
  Status PageAt(uint64_t id, const uint8_t** begin, const uint8_t** end) const {
    if (id < 2 || id >= pages) return Corrupt("page " + std::to_string(id) + " out of range");
    const size_t at = id * page_size;
    if (at + kPageHeaderBytes > size) return Corrupt("page " + std::to_string(id) + " beyond the end of the file");
    const uint64_t span = (static_cast<uint64_t>(Get32(base + at + 12)) + 1) * page_size;
    if (span > size - at) return Corrupt("page " + std::to_string(id) + " beyond the end of the file");
    *begin = base + at;
    *end = base + at + span;
    return Status::Ok();
  }

  using Visit = std::function<Status(uint32_t flags, std::string_view key, std::string_view value)>;

  // Every leaf element under the node at [begin, end), in order.
  Status Walk(const uint8_t* begin, const uint8_t* end, int depth, const Visit& visit) const {
    if (depth > kMaxDepth) return Corrupt("tree too deep");
    if (end - begin < static_cast<ptrdiff_t>(kPageHeaderBytes)) return Corrupt("short page");
    const uint16_t flags = Get16(begin + 8);
    const uint16_t count = Get16(begin + 10);
    const size_t room = static_cast<size_t>(end - begin);
    if (kPageHeaderBytes + static_cast<size_t>(count) * kElementBytes > room) return Corrupt("page elements overflow");
    for (uint16_t i = 0; i < count; ++i) {
      const size_t at = kPageHeaderBytes + static_cast<size_t>(i) * kElementBytes;
      const uint8_t* e = begin + at;
      if (flags & kLeafPage) {
        const uint64_t pos = Get32(e + 4), ksize = Get32(e + 8), vsize = Get32(e + 12);
        if (at + pos + ksize + vsize > room) return Corrupt("leaf element beyond its page");
        const char* k = reinterpret_cast<const char*>(e + pos);
        if (Status s = visit(Get32(e), std::string_view(k, ksize), std::string_view(k + ksize, vsize)); !s.ok()) {
          return s;
        }
      } else if (flags & kBranchPage) {
        const uint64_t pos = Get32(e), ksize = Get32(e + 4);
        if (at + pos + ksize > room) return Corrupt("branch element beyond its page");
        const uint8_t *child_begin, *child_end;
        if (Status s = PageAt(Get64(e + 8), &child_begin, &child_end); !s.ok()) return s;
        if (Status s = Walk(child_begin, child_end, depth + 1, visit); !s.ok()) return s;
      } else {
        return Corrupt("a page that is neither leaf nor branch in a bucket");
      }
    }
    return Status::Ok();
  }

  Status WalkPage(uint64_t id, const Visit& visit) const {
    const uint8_t *begin, *end;
    if (Status s = PageAt(id, &begin, &end); !s.ok()) return s;
    return Walk(begin, end, 0, visit);
  }

  // The elements of a bucket given its header (and inline page).
  Status WalkBucket(std::string_view header, const Visit& visit) const {
    if (header.size() < kBucketHeaderBytes) return Corrupt("short bucket header");
    const auto* h = reinterpret_cast<const uint8_t*>(header.data());
    const uint64_t bucket_root = Get64(h);
    if (bucket_root == 0) return Walk(h + kBucketHeaderBytes, h + header.size(), 0, visit);
    return WalkPage(bucket_root, visit);
  }
};

BoltReader::BoltReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BoltReader::~BoltReader() = default;

Result<std::unique_ptr<BoltReader>> BoltReader::Open(const std::string& path, int64_t size) {
  auto impl = std::make_unique<Impl>();
  impl->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (impl->fd < 0) return Status(Code::kNotFound, "cannot open " + path + ": " + ErrnoText());
  struct stat st = {};
  if (::fstat(impl->fd, &st) != 0) return Status(Code::kInternal, "cannot stat " + path + ": " + ErrnoText());
  impl->mapped = static_cast<size_t>(st.st_size);
  impl->size = size < 0 ? impl->mapped : std::min(impl->mapped, static_cast<size_t>(size));
  if (impl->size < 2 * 512) return Impl::Corrupt("file too small");
  void* p = ::mmap(nullptr, impl->mapped, PROT_READ, MAP_SHARED, impl->fd, 0);
  if (p == MAP_FAILED) return Status(Code::kInternal, "cannot map " + path + ": " + ErrnoText());
  impl->base = static_cast<const uint8_t*>(p);

  // Meta 0 gives the page size, hence where meta 1 is; bbolt takes the
  // valid meta with the larger transaction id.
  uint32_t ps0 = 0, ps1 = 0;
  uint64_t root0 = 0, root1 = 0, pages0 = 0, pages1 = 0, tx0 = 0, tx1 = 0;
  const bool ok0 = impl->ReadMeta(0, &ps0, &root0, &pages0, &tx0);
  const uint32_t guess = ok0 ? ps0 : kDefaultPageSize;
  const bool ok1 = guess >= 512 && impl->ReadMeta(guess, &ps1, &root1, &pages1, &tx1) && ps1 == guess;
  if (!ok0 && !ok1) return Impl::Corrupt("no valid meta page");
  const bool use1 = ok1 && (!ok0 || tx1 > tx0);
  impl->page_size = use1 ? ps1 : ps0;
  impl->root = use1 ? root1 : root0;
  impl->pages = use1 ? pages1 : pages0;
  impl->txid = use1 ? tx1 : tx0;
  if (impl->page_size < 512 || (impl->page_size & (impl->page_size - 1)) != 0) return Impl::Corrupt("bad page size");
  if (impl->pages > impl->size / impl->page_size) {
    return Impl::Corrupt("the file is shorter than its " + std::to_string(impl->pages) + " pages (truncated?)");
  }
  return std::unique_ptr<BoltReader>(new BoltReader(std::move(impl)));
}

Result<std::pair<uint32_t, uint64_t>> BoltReader::PagesOf(const std::string& path) {
  auto r = Open(path, -1);
  if (r.ok()) return std::make_pair((*r)->impl_->page_size, (*r)->impl_->pages);
  // Open refuses a short file after choosing its meta: read the metas alone.
  std::string head(2 * 65536 + kPageHeaderBytes + kMetaBytes, '\0');
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status(Code::kNotFound, "cannot open " + path + ": " + ErrnoText());
  ssize_t n = ::pread(fd, head.data(), head.size(), 0);
  ::close(fd);
  if (n <= 0) return Impl::Corrupt("no valid meta page");
  Impl probe;
  probe.base = reinterpret_cast<const uint8_t*>(head.data());
  probe.size = static_cast<size_t>(n);
  uint32_t ps = 0, ps1 = 0;
  uint64_t root = 0, pages = 0, tx = 0, pages1 = 0, tx1 = 0;
  const bool ok0 = probe.ReadMeta(0, &ps, &root, &pages, &tx);
  const uint32_t guess = ok0 ? ps : kDefaultPageSize;
  const bool ok1 = guess >= 512 && guess <= 65536 && probe.ReadMeta(guess, &ps1, &root, &pages1, &tx1);
  probe.base = nullptr;  // not ours to unmap
  if (!ok0 && !ok1) return Impl::Corrupt("no valid meta page");
  if (ok1 && (!ok0 || tx1 > tx)) return std::make_pair(ps1, pages1);
  return std::make_pair(ps, pages);
}

Result<std::vector<std::string>> BoltReader::Buckets() const {
  std::vector<std::string> names;
  Status s = impl_->WalkPage(impl_->root, [&](uint32_t flags, std::string_view key, std::string_view) {
    if (flags & kBucketLeafFlag) names.emplace_back(key);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return names;
}

Status BoltReader::ForEach(std::string_view bucket,
                           const std::function<Status(std::string_view key, std::string_view value)>& fn) const {
  bool found = false;
  Status s = impl_->WalkPage(impl_->root, [&](uint32_t flags, std::string_view key, std::string_view value) {
    if (!(flags & kBucketLeafFlag) || key != bucket) return Status::Ok();
    found = true;
    return impl_->WalkBucket(value, [&](uint32_t f, std::string_view k, std::string_view v) {
      if (f & kBucketLeafFlag) return Status::Ok();  // nested buckets: not etcd's
      return fn(k, v);
    });
  });
  if (!s.ok()) return s;
  if (!found) return Status(Code::kNotFound, "no bucket " + std::string(bucket));
  return Status::Ok();
}

uint32_t BoltReader::page_size() const { return impl_->page_size; }
uint64_t BoltReader::txid() const { return impl_->txid; }

bool LooksLikeBolt(std::string_view prefix) {
  if (prefix.size() < kPageHeaderBytes + 8) return false;
  const auto* m = reinterpret_cast<const uint8_t*>(prefix.data()) + kPageHeaderBytes;
  return Get32(m) == kMagic && Get32(m + 4) == kVersion;
}

}  // namespace cairn::bolt
