#include "peer/peer_stream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/logging.h"
#include "common/thread_name.h"
#include "wal/record.h"

namespace cairn::peer {

namespace {
void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
// The accepted side's own 8 bytes of magic, consumed before the frames.
constexpr size_t kMagicBytes = 8;

// One log line per kind every 10 s (a misbehaving peer retries for ever).
bool ShouldLog(std::atomic<int64_t>* last_ms) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t last = last_ms->load();
  return now - last >= 10000 && last_ms->compare_exchange_strong(last, now);
}
std::atomic<int64_t> last_bad_frame_log_ms{-100000};
std::atomic<int64_t> last_full_log_ms{-100000};

std::string RemoteOf(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "fd:" + std::to_string(fd);
  char host[64] = {0};
  uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}
}  // namespace

void AppendFrame(FrameKind kind, const google::protobuf::MessageLite& message, std::string* out) {
  const size_t start = out->size();
  out->resize(start + kFrameHeaderBytes);
  message.AppendToString(out);
  char* header = out->data() + start;
  PutU32(header, static_cast<uint32_t>(out->size() - start - kFrameHeaderBytes));
  PutU32(header + 4, static_cast<uint32_t>(kind));
  PutU32(header + 8, wal::Crc32c(std::string_view(header, 8)));
}

void FrameDecoder::Feed(std::string_view bytes) {
  if (pos_ > 0 && pos_ >= buffer_.size() / 2) {
    buffer_.erase(0, pos_);
    pos_ = 0;
  }
  buffer_.append(bytes.data(), bytes.size());
}

FrameDecoder::Result FrameDecoder::Next(FrameKind* kind, std::string_view* payload, std::string* error) {
  const size_t available = buffer_.size() - pos_;
  if (available < kFrameHeaderBytes) return Result::kNeedMore;
  const char* header = buffer_.data() + pos_;
  if (GetU32(header + 8) != wal::Crc32c(std::string_view(header, 8))) {
    *error = "bad frame header checksum";
    return Result::kBad;
  }
  const size_t length = GetU32(header);
  if (length > max_payload_bytes_) {
    *error = "frame of " + std::to_string(length) + " bytes, more than " + std::to_string(max_payload_bytes_);
    return Result::kBad;
  }
  if (available < kFrameHeaderBytes + length) return Result::kNeedMore;
  *kind = static_cast<FrameKind>(GetU32(header + 4));
  *payload = std::string_view(header + kFrameHeaderBytes, length);
  pos_ += kFrameHeaderBytes + length;
  return Result::kFrame;
}

PeerStreamReceiver::PeerStreamReceiver(Deliver deliver, size_t max_frame_bytes, size_t max_connections)
    : deliver_(std::move(deliver)), max_frame_bytes_(max_frame_bytes), max_connections_(max_connections) {}

PeerStreamReceiver::~PeerStreamReceiver() { Stop(); }

void PeerStreamReceiver::ReapLocked(std::vector<std::thread>* finished) {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->done) {
      finished->push_back(std::move((*it)->thread));
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void PeerStreamReceiver::Adopt(int fd) {
  std::vector<std::thread> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ReapLocked(&finished);
    if (stopped_ || connections_.size() >= max_connections_) {
      if (!stopped_ && ShouldLog(&last_full_log_ms)) {
        CAIRN_LOG(kWarn) << "peer stream from " << RemoteOf(fd) << " closed: " << max_connections_
                         << " peer streams are open";
      }
      ::close(fd);
    } else {
      // Blocking reads on this connection's own thread.
      const int flags = ::fcntl(fd, F_GETFL);
      if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
      const int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
      auto c = std::make_unique<Connection>();
      c->fd = fd;
      c->remote = RemoteOf(fd);
      Connection* raw = c.get();
      connections_.push_back(std::move(c));
      raw->thread = std::thread([this, raw] {
        SetThreadName("cairn-peer-recv");
        Serve(raw);
        // Closed under mu_, so no shutdown() meant for it meets a reused fd.
        std::lock_guard<std::mutex> l(mu_);
        ::shutdown(raw->fd, SHUT_RDWR);
        ::close(raw->fd);
        raw->done = true;
      });
    }
  }
  for (auto& t : finished) t.join();
}

void PeerStreamReceiver::Stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    for (auto& c : connections_) {
      if (!c->done) ::shutdown(c->fd, SHUT_RDWR);
      threads.push_back(std::move(c->thread));
    }
  }
  for (auto& t : threads) {
    if (t.joinable()) t.join();
  }
  std::lock_guard<std::mutex> lock(mu_);
  connections_.clear();
}

void PeerStreamReceiver::Serve(Connection* c) {
  FrameDecoder decoder(max_frame_bytes_);
  std::string buffer(256 << 10, '\0');
  size_t magic_left = kMagicBytes;
  cairnpb::PeerBatch batch;
  std::string end;  // why the stream ended, for the log
  bool ended = false;
  while (!ended) {
    const ssize_t n = ::recv(c->fd, buffer.data(), buffer.size(), 0);
    if (n == 0) break;  // the sender closed it
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // reset, or shut down by Stop or a newer stream
    }
    std::string_view got(buffer.data(), static_cast<size_t>(n));
    if (magic_left > 0) {
      const size_t skip = std::min(magic_left, got.size());
      magic_left -= skip;
      got.remove_prefix(skip);
    }
    decoder.Feed(got);
    while (true) {
      FrameKind kind;
      std::string_view payload;
      std::string error;
      const auto r = decoder.Next(&kind, &payload, &error);
      if (r == FrameDecoder::Result::kNeedMore) break;
      if (r == FrameDecoder::Result::kFrame && kind == FrameKind::kBatch &&
          batch.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
        if (c->from == 0 && batch.from() != 0) {
          // One stream per sending member: a newer one replaces the older.
          std::lock_guard<std::mutex> lock(mu_);
          c->from = batch.from();
          for (auto& other : connections_) {
            if (other.get() != c && !other->done && other->from == c->from) ::shutdown(other->fd, SHUT_RDWR);
          }
        }
        Status s = deliver_(&batch, c->remote);
        batch.Clear();
        if (s.ok()) continue;
        // Refused: say why, then close (the sender logs it and stops or
        // retries as it does for a refused gRPC stream).
        cairnpb::StreamRefusal refusal;
        refusal.set_code(static_cast<int32_t>(s.code()));
        refusal.set_message(s.message());
        std::string out;
        AppendFrame(FrameKind::kRefusal, refusal, &out);
        timeval tv{1, 0};
        ::setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        (void)::send(c->fd, out.data(), out.size(), MSG_NOSIGNAL);
        ended = true;
        break;
      }
      if (r == FrameDecoder::Result::kFrame) error = "malformed frame";
      if (ShouldLog(&last_bad_frame_log_ms)) {
        CAIRN_LOG(kWarn) << "peer stream from " << c->remote << " closed: " << error;
      }
      ended = true;
      break;
    }
  }
}

}  // namespace cairn::peer
