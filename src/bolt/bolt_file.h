// bbolt's file format (go.etcd.io/bbolt, the database etcd's backend and its
// snapshots are), written and read without bbolt: enough to make and read
// etcd snapshot files. Not a database: a BoltWriter writes a new file once,
// from buckets whose keys come in order; a BoltReader reads one file.
//
// The format (bbolt's page.go, node.go, meta.go): pages of `page_size`
// bytes, each with a 16-byte header (u64 id, u16 flags, u16 count,
// u32 overflow: how many more pages it spans), little endian.
//  - pages 0 and 1: meta (flag 0x04): magic 0xED0CDAED, version 2, page
//    size, flags, the root bucket {u64 root page, u64 sequence}, the freelist
//    page, the page count, the transaction id, and an FNV-1a 64 checksum of
//    those; a reader takes the valid one with the larger transaction id;
//  - leaf pages (0x02): `count` elements {u32 flags, u32 pos, u32 ksize,
//    u32 vsize}, pos counted from the element to its key, the value after the
//    key; flag 0x01 marks a sub-bucket, whose value is {u64 root, u64
//    sequence}, root 0 meaning an inline leaf page follows in the value;
//  - branch pages (0x01): elements {u32 pos, u32 ksize, u64 page}, the key
//    being the first key below that page;
//  - a freelist page (0x10): `count` page ids (0xFFFF: the count is the
//    first u64). The writer leaves no page free.
//
// The root bucket holds one entry per top-level bucket; etcd's buckets hold
// no sub-buckets, and neither side here supports nested buckets.
//
// Thread-safety: a writer or reader is used by one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace cairn::bolt {

inline constexpr uint32_t kMagic = 0xED0CDAED;
inline constexpr uint32_t kVersion = 2;
inline constexpr uint32_t kDefaultPageSize = 4096;

// Where a finished tree's pages are: the root bucket's page and the page
// count (both in the meta pages).
struct Layout {
  uint64_t root = 0;
  uint64_t pages = 0;
  bool operator==(const Layout&) const = default;
};

// Writes a new bbolt file: buckets in increasing name order, each bucket's
// keys in increasing byte order (bbolt's order). Pages are written as they
// fill, so memory holds one page per tree level plus one branch entry per
// page written. Three modes:
//  - Create: into a file; the meta pages are written last, by Finish();
//  - Plan: writes nothing, only lays the pages out: Finish() returns the
//    Layout that the same buckets and keys will have;
//  - Stream: the file's bytes in order, meta pages first, to a sink: the
//    meta pages need the Layout, so the same data goes first through Plan
//    (twice over the data, no temporary file).
class BoltWriter {
 public:
  using Sink = std::function<Status(std::string_view bytes)>;

  // Creates (truncates) `path`.
  static Result<std::unique_ptr<BoltWriter>> Create(const std::string& path,
                                                    uint32_t page_size = kDefaultPageSize);
  static std::unique_ptr<BoltWriter> Plan(uint32_t page_size = kDefaultPageSize);
  // `layout`: what Plan's Finish returned for the same data. The sink gets
  // whole pages, in order, in pieces of about 1 MiB.
  static std::unique_ptr<BoltWriter> Stream(Layout layout, Sink sink, uint32_t page_size = kDefaultPageSize);
  ~BoltWriter();

  // Starts the next bucket; the previous one is closed. InvalidArgument if
  // `name` is empty or not greater than the previous bucket's name.
  Status BeginBucket(std::string_view name);
  // InvalidArgument if no bucket is open or `key` is empty or not greater
  // than the previous key of this bucket.
  Status Put(std::string_view key, std::string_view value);
  // Writes what is left and the root bucket (and, for a file, the meta pages,
  // then fsyncs). Stream: Internal if the data did not match the plan.
  // Nothing may be added afterwards.
  Result<Layout> Finish();

  // Bytes of the file so far (all of it after Finish).
  uint64_t size() const;

 private:
  struct Impl;
  explicit BoltWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Reads a bbolt file. Every offset is checked against the file: a truncated
// or corrupt file gives DataLoss, never a crash.
class BoltReader {
 public:
  // Reads the file's first `size` bytes (all of it when size is -1; an etcd
  // snapshot has a 32-byte hash after the database, which is not part of it).
  static Result<std::unique_ptr<BoltReader>> Open(const std::string& path, int64_t size = -1);
  ~BoltReader();

  // The page size and page count the valid meta page of the file names,
  // without reading further (so also of a truncated file); DataLoss if
  // neither meta page is valid.
  static Result<std::pair<uint32_t, uint64_t>> PagesOf(const std::string& path);

  // The top-level bucket names, in order.
  Result<std::vector<std::string>> Buckets() const;
  // Calls `fn` for every key of bucket `name` in order (NotFound if there is
  // no such bucket); stops early with fn's non-ok status.
  Status ForEach(std::string_view bucket,
                 const std::function<Status(std::string_view key, std::string_view value)>& fn) const;

  uint32_t page_size() const;
  uint64_t txid() const;

 private:
  struct Impl;
  explicit BoltReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Whether `prefix` (a file's first bytes, at least 32) starts like a bbolt file.
bool LooksLikeBolt(std::string_view prefix);

}  // namespace cairn::bolt
