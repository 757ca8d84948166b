#include "storage/snapshot_stream.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>

namespace cairn::storage {

namespace {
constexpr char kMagic[] = "CAIRNSNAP1\n";
constexpr size_t kMagicLen = sizeof(kMagic) - 1;
constexpr uint8_t kEndMarker = 0xfe;
constexpr size_t kAlign = 512;
constexpr size_t kHashLen = 32;

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; i++) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
}  // namespace

struct SnapshotReader::Hasher {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  Hasher() { EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr); }
  ~Hasher() { EVP_MD_CTX_free(ctx); }
  void Update(const std::string& s, size_t from) {
    EVP_DigestUpdate(ctx, s.data() + from, s.size() - from);
  }
  std::string Final() {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    return std::string(reinterpret_cast<char*>(md), len);
  }
};

SnapshotReader::SnapshotReader(Engine* engine, std::shared_ptr<const Snapshot> snapshot)
    : engine_(engine), snapshot_(std::move(snapshot)), hasher_(std::make_unique<Hasher>()) {}
SnapshotReader::~SnapshotReader() = default;

Result<bool> SnapshotReader::NextChunk(std::string* out, size_t max_bytes) {
  if (done_) return false;
  size_t start = out->size();
  if (!header_done_) {
    out->append(kMagic, kMagicLen);
    header_done_ = true;
  }
  while (out->size() - start < max_bytes) {
    if (column_ >= static_cast<int>(Column::kCount)) {
      out->push_back(static_cast<char>(kEndMarker));
      total_bytes_ += out->size() - start;
      size_t pad = (kAlign - total_bytes_ % kAlign) % kAlign;
      out->append(pad, '\0');
      hasher_->Update(*out, start);
      out->append(hasher_->Final());
      done_ = true;
      return true;
    }
    if (static_cast<Column>(column_) == Column::kLog) {
      column_++;
      continue;
    }
    if (!it_) {
      it_ = engine_->NewIterator(static_cast<Column>(column_), snapshot_.get());
      it_->SeekToFirst();
    }
    if (!it_->Valid()) {
      Status s = it_->status();
      if (!s.ok()) return s;
      it_.reset();
      column_++;
      continue;
    }
    out->push_back(static_cast<char>(column_));
    PutU32(out, static_cast<uint32_t>(it_->key().size()));
    out->append(it_->key());
    PutU32(out, static_cast<uint32_t>(it_->value().size()));
    out->append(it_->value());
    it_->Next();
  }
  hasher_->Update(*out, start);
  total_bytes_ += out->size() - start;
  return true;
}

namespace {
// Why a file that starts like a cairn snapshot does not have a snapshot's
// size: walks its records to say where it breaks off. The format has no
// length field, so the expected size is what the records imply.
Status DescribeBadSize(const std::string& path, const std::string& data) {
  const std::string what = "restore: " + path + " is truncated or corrupt: ";
  const size_t size = data.size();
  size_t pos = kMagicLen;
  while (true) {
    const size_t record = pos;
    if (pos >= size) {
      return Status(Code::kDataLoss, what + "the file ends at byte " + std::to_string(size) +
                                         " before the records' end marker");
    }
    const int column = static_cast<uint8_t>(data[pos++]);
    if (column == kEndMarker) break;
    if (column >= static_cast<int>(Column::kCount)) {
      return Status(Code::kDataLoss, what + "no record starts at byte offset " +
                                         std::to_string(record) + " (column " +
                                         std::to_string(column) + "), file size " +
                                         std::to_string(size));
    }
    // u32 key length, key, u32 value length, value; size_t arithmetic.
    size_t need = 4;
    if (size - pos >= 4) {
      need += GetU32(&data[pos]);
      if (size - pos >= need + 4) need += 4 + GetU32(&data[pos + need]);
      else need += 4;
    }
    if (size - pos < need) {
      return Status(Code::kDataLoss, what + "the record at byte offset " + std::to_string(record) +
                                         " needs " + std::to_string(need + 1) +
                                         " bytes, the file ends at byte " + std::to_string(size));
    }
    pos += need;
  }
  const size_t expected = (pos + kAlign - 1) / kAlign * kAlign + kHashLen;
  return Status(Code::kDataLoss, what + "its records end at byte " + std::to_string(pos) +
                                     ", so it should have " + std::to_string(expected) +
                                     " bytes, it has " + std::to_string(size));
}
// The whole file, once it starts with the magic, has a snapshot's size and
// its SHA-256 trailer matches (errors say what is wrong and where).
Result<std::string> ReadVerified(const std::string& snapshot_path) {
  std::ifstream in(snapshot_path, std::ios::binary);
  if (!in) return Status(Code::kNotFound, "restore: cannot open " + snapshot_path);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t magic_seen = std::min(data.size(), kMagicLen);
  if (data.compare(0, magic_seen, kMagic, magic_seen) != 0 || data.empty()) {
    return Status(Code::kInvalidArgument, "restore: " + snapshot_path + " is not a cairn snapshot");
  }
  if (data.size() < kMagicLen + 1 + kHashLen || data.size() % kAlign != kHashLen) {
    return DescribeBadSize(snapshot_path, data);
  }
  size_t hashed_end = data.size() - kHashLen;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, data.data(), hashed_end);
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  if (std::memcmp(md, data.data() + hashed_end, kHashLen) != 0) {
    // One hash over the whole file: where it changed cannot be known.
    return Status(Code::kDataLoss, "restore: " + snapshot_path +
                                       " is corrupt: snapshot checksum mismatch (the SHA-256 of its "
                                       "first " + std::to_string(hashed_end) +
                                       " bytes is not the one in its last 32 bytes)");
  }
  return data;
}

// Calls fn(column, key, value) for each record of a verified snapshot, in
// order; stops at the first error fn returns or a malformed record.
Status ForEachRecord(const std::string& data,
                     const std::function<Status(Column, std::string_view, std::string_view)>& fn) {
  const size_t body_end = data.size() - kHashLen;
  size_t pos = kMagicLen;
  while (true) {
    if (pos >= body_end) return Status(Code::kDataLoss, "restore: snapshot has no end marker");
    if (data[pos] != static_cast<char>(kEndMarker) && body_end - pos < 9) {
      return Status(Code::kDataLoss, "restore: malformed record");
    }
    int column = static_cast<uint8_t>(data[pos++]);
    if (column == kEndMarker) return Status::Ok();
    if (column >= static_cast<int>(Column::kCount)) {
      return Status(Code::kDataLoss, "restore: unknown column");
    }
    size_t klen = GetU32(&data[pos]);
    pos += 4;
    // size_t arithmetic: a length near 2^32 must not wrap the check.
    if (body_end - pos < klen + 4) return Status(Code::kDataLoss, "restore: malformed record");
    std::string_view key(&data[pos], klen);
    pos += klen;
    size_t vlen = GetU32(&data[pos]);
    pos += 4;
    if (body_end - pos < vlen) return Status(Code::kDataLoss, "restore: malformed record");
    std::string_view value(&data[pos], vlen);
    pos += vlen;
    Status s = fn(static_cast<Column>(column), key, value);
    if (!s.ok()) return s;
  }
}

// Puts and deletes written in batches of about 16 MiB.
class BatchedWriter {
 public:
  explicit BatchedWriter(Engine* engine) : engine_(engine), batch_(engine) {}
  Status Put(Column c, std::string_view key, std::string_view value) {
    batch_.Put(c, key, value);
    return MaybeFlush();
  }
  Status Delete(Column c, std::string_view key) {
    batch_.Delete(c, key);
    return MaybeFlush();
  }
  Status Flush(bool sync) {
    Status s = engine_->Write(batch_, sync);
    batch_.Clear();
    return s;
  }

 private:
  Status MaybeFlush() { return batch_.ByteSize() > (16 << 20) ? Flush(false) : Status::Ok(); }
  Engine* engine_;
  WriteBatch batch_;
};
}  // namespace


Status RestoreSnapshot(const std::string& snapshot_path, const std::string& db_path,
                       const RestoreFilter& keep) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(db_path, ec) && !fs::is_empty(db_path, ec)) {
    return Status(Code::kAlreadyExists, "restore: " + db_path + " already exists and is not empty");
  }
  auto data = ReadVerified(snapshot_path);
  if (!data.ok()) return data.status();
  // Nothing is written before the whole file checked out; whatever is
  // written is removed again if the body turns out malformed.
  Status s;
  {  // the database is closed before a failed restore removes it
    EngineOptions eo;
    eo.path = db_path;
    auto engine = Engine::Open(eo);
    if (!engine.ok()) return engine.status();
    BatchedWriter out(engine->get());
    s = ForEachRecord(*data, [&](Column column, std::string_view key, std::string_view value) {
      return keep && !keep(column, key) ? Status::Ok() : out.Put(column, key, value);
    });
    if (s.ok()) s = out.Flush(/*sync=*/true);
  }
  if (!s.ok()) fs::remove_all(db_path, ec);
  return s;
}

Status VerifySnapshotFile(const std::string& snapshot_path) {
  auto data = ReadVerified(snapshot_path);
  return data.ok() ? Status::Ok() : data.status();
}

Status ReplaceWithSnapshot(Engine* engine, const std::string& snapshot_path, const RestoreFilter& local) {
  auto data = ReadVerified(snapshot_path);
  if (!data.ok()) return data.status();
  BatchedWriter out(engine);
  for (int c = 0; c < static_cast<int>(Column::kCount); c++) {
    const Column column = static_cast<Column>(c);
    auto it = engine->NewIterator(column);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (local(column, it->key())) continue;
      Status s = out.Delete(column, it->key());
      if (!s.ok()) return s;
    }
    if (!it->status().ok()) return it->status();
  }
  Status s = ForEachRecord(*data, [&](Column column, std::string_view key, std::string_view value) {
    return local(column, key) ? Status::Ok() : out.Put(column, key, value);
  });
  return s.ok() ? out.Flush(/*sync=*/false) : s;
}

}  // namespace cairn::storage
