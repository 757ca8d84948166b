#include "api/http/client_listener.h"
#include "api/http/tls_terminator.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <system_error>
#include <unordered_map>

#include "api/http/http1_codec.h"
#include "common/check.h"
#include "common/logging.h"
#include "common/thread_name.h"

namespace cairn::http {
namespace {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

// epoll_event.data.u64 of the two descriptors that are not connections;
// connection ids start above them and are never reused, so an event for a
// connection closed earlier in the same batch is recognized and skipped.
constexpr uint64_t kListenId = 0;
constexpr uint64_t kWakeId = 1;
constexpr uint64_t kFirstConnectionId = 2;
// Events taken per epoll_wait.
constexpr int kMaxEvents = 256;
// Connections accepted per wake-up before other sockets get their turn.
constexpr int kAcceptBatch = 64;
// recv() calls per readable HTTP/1.x connection per wake-up, so one fast
// sender cannot starve the others (level-triggered: the rest comes next turn).
constexpr int kReadsPerWakeup = 4;
constexpr size_t kReadChunkBytes = 16 * 1024;
// Back-off after accept() fails for lack of descriptors with nothing left to
// evict (Go's net/http starts at 5 ms); pending connections wait in the backlog.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(50);
// The loop wakes at least this often even with no deadline due.
constexpr auto kMaxWait = std::chrono::milliseconds(1000);
// At most one log line per reason per interval; the next one says how many
// were not logged.
constexpr auto kRejectLogInterval = std::chrono::seconds(10);

// strerror() in Go's style ("address already in use"), which is what etcd
// prints and what operators search for.
std::string ErrnoText(int error) {
  std::string text = std::strerror(error);
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z')
    text[0] = static_cast<char>(text[0] - 'A' + 'a');
  return text;
}

// "1.2.3.4:5" and "1.2.3.4", or "[::1]:5" and "::1".
std::pair<std::string, std::string> FormatAddress(const struct sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const struct sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return {std::string(host) + ":" + std::to_string(ntohs(in->sin_port)), host};
  }
  if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return {"[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port)), host};
  }
  return {"", ""};
}

void SetReceiveLowWatermark(int fd, int bytes) {
  ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes));
}

const char* RejectReasonText(RejectReason reason) {
  switch (reason) {
    case RejectReason::kPerSourceLimit:
      return "its source address reached max_connections_per_source";
    case RejectReason::kTotalLimit:
      return "the listener reached max_connections or ran out of descriptors";
    case RejectReason::kFirstBytesTimeout:
      return "it did not identify its protocol within first_bytes_timeout";
    case RejectReason::kReadTimeout:
      return "its HTTP/1.x request was not read within read_timeout";
  }
  return "";
}

}  // namespace

std::string_view RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kPerSourceLimit:
      return "per_source_limit";
    case RejectReason::kTotalLimit:
      return "total_limit";
    case RejectReason::kFirstBytesTimeout:
      return "first_bytes_timeout";
    case RejectReason::kReadTimeout:
      return "read_timeout";
  }
  return "unknown";
}

struct ClientListener::Connection {
  enum class Phase {
    kClassifying,  // nothing consumed yet; peeking
    kReading,      // HTTP/1.x: waiting for (the rest of) a request
    kHandling,     // HTTP/1.x: the request is with a handler thread
    kStreaming,    // HTTP/1.x: a streamed response has begun and not ended
    kWriting,      // HTTP/1.x: sending the (end of the) response
  };

  uint64_t id = 0;
  int fd = -1;
  std::string remote_address;  // "ip:port", for handlers and logs
  std::string source;          // "ip", the per-source key
  bool from_tls = false;       // the plaintext end of a TLS connection
  Phase phase = Phase::kClassifying;
  size_t peeked = 0;  // bytes seen while classifying
  std::unique_ptr<Http1RequestReader> reader;
  std::string out;  // bytes to send: a 100 Continue or a response
  size_t out_offset = 0;
  bool close_after_write = false;
  std::shared_ptr<Writer> writer;  // of the request being answered
  bool async = false;              // its handler is an AsyncHandler
  uint32_t registered_events = 0;
  TimePoint deadline = TimePoint::max();  // also in EventLoop::deadlines_
};

// What a Writer hands to the loop.
struct Completion {
  enum class Kind {
    kWhole,  // a whole response
    kAsync,  // the request went to an AsyncHandler: watch for the client leaving
    kPart,   // the head or a chunk of a streamed response
    kEnd,    // the end of a streamed response
  };
  uint64_t id;
  Kind kind;
  std::string bytes;
  bool keep_alive = false;  // kWhole, kEnd
};

// Everything the loop thread touches. Only Push(), RequestStop() and the
// atomics are used from other threads.
class ClientListener::EventLoop {
 public:
  EventLoop(ClientListener* owner, int listen_fd) : owner_(owner), options_(owner->options_),
                                                    listen_fd_(listen_fd) {}
  ~EventLoop() {
    for (auto& p : plaintext_) ::close(p.fd);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  Status Init() {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return Status(Code::kInternal, "epoll_create1: " + ErrnoText(errno));
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) return Status(Code::kInternal, "eventfd: " + ErrnoText(errno));
    if (!Register(wake_fd_, kWakeId, EPOLLIN) || !Register(listen_fd_, kListenId, EPOLLIN)) {
      return Status(Code::kInternal, "epoll_ctl: " + ErrnoText(errno));
    }
    return Status::Ok();
  }

  void Run();

  // From a Writer, on any thread.
  void Push(Completion completion) {
    {
      std::lock_guard<std::mutex> lock(completed_mu_);
      completed_.push_back(std::move(completion));
    }
    Wake();
  }

  // From the TLS terminator's thread: a decrypted connection to serve.
  void PushPlaintext(int fd, const std::string& remote, const std::string& source) {
    {
      std::lock_guard<std::mutex> lock(completed_mu_);
      if (!plaintext_closed_) {
        plaintext_.push_back({fd, remote, source});
        fd = -1;
      }
    }
    if (fd >= 0) {
      ::close(fd);
      return;
    }
    Wake();
  }

  void RequestStop() {
    stop_requested_.store(true);
    Wake();
  }
  bool stopping() const { return stop_requested_.load(); }

  Stats stats() const {
    Stats s;
    s.unidentified = unidentified_.load();
    s.http1 = http1_.load();
    for (int i = 0; i < kRejectReasonCount; ++i) s.rejected[i] = rejected_[i].load();
    return s;
  }

 private:
  using Phase = Connection::Phase;

  void Wake() {
    uint64_t one = 1;
    ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
    (void)ignored;
  }
  bool Register(int fd, uint64_t id, uint32_t events) {
    struct epoll_event ev = {};
    ev.events = events;
    ev.data.u64 = id;
    return ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0;
  }

  void AcceptBatch(TimePoint now);
  bool Admit(int fd, const std::string& remote, const std::string& source, TimePoint now,
             bool from_tls = false);
  void TakePlaintext(TimePoint now);
  bool EvictOldest(const std::string* source, RejectReason reason);
  void OnEvent(Connection& c, uint32_t events, TimePoint now);
  void Classify(Connection& c, TimePoint now);
  void ReadHttp1(Connection& c, TimePoint now);
  void AfterRead(Connection& c, Http1RequestReader::State state, TimePoint now);
  void Flush(Connection& c, TimePoint now);
  // A streaming connection's unsent bytes, to its writer; the write deadline.
  void ReportUnsent(Connection& c, TimePoint now);
  void TakeCompletions(TimePoint now);
  void ExpireDeadlines(TimePoint now);
  void BeginStop(TimePoint now);
  void SetDeadline(Connection& c, TimePoint deadline);
  void UpdateInterest(Connection& c);
  void Close(Connection& c);
  void Reject(Connection& c, RejectReason reason);
  void CountRejected(RejectReason reason, const std::string& remote);
  void FlushRejectLogs(TimePoint now);
  void SetUnidentified(int delta);
  int WaitMs(TimePoint now) const;

  ClientListener* const owner_;
  const Options& options_;
  const int listen_fd_;  // owned by ClientListener
  int epoll_fd_ = -1;
  int wake_fd_ = -1;

  uint64_t next_id_ = kFirstConnectionId;
  // Ordered by id, which is accept order: begin() is the oldest.
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::set<std::pair<TimePoint, uint64_t>> deadlines_;
  std::unordered_map<std::string, size_t> per_source_;
  TimePoint accept_paused_until_ = TimePoint::min();
  bool accept_paused_ = false;
  bool stopping_ = false;
  TimePoint stop_deadline_ = TimePoint::max();
  struct LogState {
    TimePoint last = TimePoint::min();
    uint64_t suppressed = 0;
  };
  LogState reject_log_[kRejectReasonCount];

  std::atomic<bool> stop_requested_{false};
  std::atomic<size_t> unidentified_{0};
  std::atomic<size_t> http1_{0};
  std::atomic<uint64_t> rejected_[kRejectReasonCount] = {};

  std::mutex completed_mu_;
  struct Plaintext {
    int fd;
    std::string remote, source;
  };
  std::vector<Plaintext> plaintext_;  // GUARDED_BY(completed_mu_)
  bool plaintext_closed_ = false;     // GUARDED_BY(completed_mu_)
  // GUARDED_BY(completed_mu_). Bounded: a handling connection has one
  // kWhole, a streaming one parts up to max_stream_buffer_bytes.
  std::vector<Completion> completed_;
};

// The ResponseWriter of one request. Serializes on the caller's thread and
// hands the bytes to the loop; the loop detaches it (Detach) when the
// connection closes or the response is over, so a writer kept by a handler
// never touches a loop that is gone.
class ClientListener::Writer final : public ResponseWriter {
 public:
  Writer(EventLoop* loop, uint64_t id, const Options& options, unsigned version, bool keep_alive,
         bool head)
      : loop_(loop), id_(id), options_(options), version_(version), keep_alive_(keep_alive),
        head_(head) {}

  ~Writer() override {
    // The connection must not wait for ever on a handler that forgot it.
    if (state_ == State::kNew) Send(TextResponse(500, "Internal Server Error\n"));
    if (state_ == State::kStreaming) End();
  }

  void Send(HttpResponse response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kNew || loop_ == nullptr) return;
    state_ = State::kDone;
    const bool keep_alive = keep_alive_ && !loop_->stopping();
    loop_->Push({id_, Completion::Kind::kWhole,
                 SerializeResponse(response, options_.default_headers, version_, keep_alive, head_),
                 keep_alive});
  }

  bool Begin(const HttpResponse& head) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kNew || loop_ == nullptr) return false;
    state_ = State::kStreaming;
    std::string bytes = SerializeStreamHead(head, options_.default_headers, version_, keep_alive_);
    queued_ += bytes.size();
    loop_->Push({id_, Completion::Kind::kPart, std::move(bytes)});
    return true;
  }

  bool Write(std::string_view bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kStreaming || loop_ == nullptr) return false;
    if (head_ || bytes.empty()) return true;
    std::string chunk = version_ == 10 ? std::string(bytes) : SerializeChunk(bytes);
    if (queued_ + unsent_ + chunk.size() > options_.max_stream_buffer_bytes) return false;
    queued_ += chunk.size();
    loop_->Push({id_, Completion::Kind::kPart, std::move(chunk)});
    return true;
  }

  void End() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kStreaming) return;
    state_ = State::kDone;
    if (loop_ == nullptr) return;
    const bool chunked = version_ != 10;
    loop_->Push({id_, Completion::Kind::kEnd, chunked && !head_ ? std::string(kLastChunk) : "",
                 chunked && keep_alive_ && !loop_->stopping()});
  }

  void OnClose(std::function<void()> callback) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!closed_) {
        on_close_ = std::move(callback);
        return;
      }
    }
    callback();
  }

  // From a handler thread, before an AsyncHandler runs.
  void MarkAsync() {
    std::lock_guard<std::mutex> lock(mu_);
    if (loop_ != nullptr && state_ == State::kNew) loop_->Push({id_, Completion::Kind::kAsync, ""});
  }

  // From the loop.
  void Detach() {
    std::function<void()> callback;
    {
      std::lock_guard<std::mutex> lock(mu_);
      loop_ = nullptr;
      if (state_ != State::kDone && !closed_) callback = std::move(on_close_);
      closed_ = true;
      on_close_ = nullptr;
    }
    if (callback) callback();
  }
  void Moved(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    queued_ -= std::min(queued_, bytes);
  }
  void SetUnsent(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    unsent_ = bytes;
  }

 private:
  enum class State { kNew, kStreaming, kDone };

  std::mutex mu_;
  EventLoop* loop_;  // GUARDED_BY(mu_); null once detached
  const uint64_t id_;
  const Options& options_;  // the listener's, which outlives the loop
  const unsigned version_;
  const bool keep_alive_;
  const bool head_;
  State state_ = State::kNew;         // GUARDED_BY(mu_)
  bool closed_ = false;               // GUARDED_BY(mu_)
  std::function<void()> on_close_;    // GUARDED_BY(mu_)
  size_t queued_ = 0;                 // GUARDED_BY(mu_); pushed, not yet in the connection's buffer
  size_t unsent_ = 0;                 // GUARDED_BY(mu_); in the buffer, not yet sent
};

void ClientListener::EventLoop::Run() {
  struct epoll_event events[kMaxEvents];
  for (;;) {
    const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, WaitMs(SteadyClock::now()));
    if (n < 0 && errno != EINTR) {
      CAIRN_LOG(kError) << "client listener: epoll_wait: " << ErrnoText(errno);
      break;
    }
    TimePoint now = SteadyClock::now();
    for (int i = 0; i < n; ++i) {
      const uint64_t id = events[i].data.u64;
      if (id == kWakeId) {
        uint64_t count;
        ssize_t ignored = ::read(wake_fd_, &count, sizeof(count));
        (void)ignored;
      } else if (id == kListenId) {
        if (!stopping_) AcceptBatch(now);
      } else if (auto it = connections_.find(id); it != connections_.end()) {
        OnEvent(*it->second, events[i].events, now);
      }
    }
    TakeCompletions(now);
    TakePlaintext(now);
    now = SteadyClock::now();
    ExpireDeadlines(now);
    FlushRejectLogs(now);
    if (accept_paused_ && now >= accept_paused_until_ && !stopping_) {
      struct epoll_event ev = {};
      ev.events = EPOLLIN;
      ev.data.u64 = kListenId;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
      accept_paused_ = false;
    }
    if (stop_requested_.load() && !stopping_) BeginStop(now);
    if (stopping_ && (connections_.empty() || now >= stop_deadline_)) break;
  }
  while (!connections_.empty()) Close(*connections_.begin()->second);
  std::lock_guard<std::mutex> lock(completed_mu_);
  plaintext_closed_ = true;
  for (auto& p : plaintext_) ::close(p.fd);
  plaintext_.clear();
}

void ClientListener::EventLoop::TakePlaintext(TimePoint now) {
  std::vector<Plaintext> batch;
  {
    std::lock_guard<std::mutex> lock(completed_mu_);
    batch.swap(plaintext_);
  }
  for (auto& p : batch) {
    if (stopping_ || !Admit(p.fd, p.remote, p.source, now, /*from_tls=*/true)) ::close(p.fd);
  }
}

int ClientListener::EventLoop::WaitMs(TimePoint now) const {
  TimePoint until = now + kMaxWait;
  if (!deadlines_.empty()) until = std::min(until, deadlines_.begin()->first);
  if (accept_paused_) until = std::min(until, accept_paused_until_);
  if (stopping_) until = std::min(until, stop_deadline_);
  if (until <= now) return 0;
  // Rounded up, so the loop never wakes just before a deadline and spins.
  return static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1);
}

void ClientListener::EventLoop::AcceptBatch(TimePoint now) {
  for (int i = 0; i < kAcceptBatch; ++i) {
    struct sockaddr_storage peer = {};
    socklen_t peer_len = sizeof(peer);
    int fd = ::accept4(listen_fd_, reinterpret_cast<struct sockaddr*>(&peer), &peer_len,
                       SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      const int error = errno;
      if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
        // A descriptor held by a silent peer is worth less than one for a
        // client that is waiting in the backlog.
        if (EvictOldest(nullptr, RejectReason::kTotalLimit)) continue;
        CAIRN_LOG(kWarn) << "client listener: accept: " << ErrnoText(error) << "; retrying in "
                         << kAcceptBackoff.count() << "ms";
        struct epoll_event ev = {};
        ev.data.u64 = kListenId;
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);  // no events until resumed
        accept_paused_ = true;
        accept_paused_until_ = now + kAcceptBackoff;
        return;
      }
      if (error == EAGAIN || error == EWOULDBLOCK) return;
      continue;  // ECONNABORTED, EINTR, EPROTO...: try the next one
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto [remote, source] = FormatAddress(peer);
    if (!Admit(fd, remote, source, now)) ::close(fd);
  }
}

// Makes room under both limits by evicting, never by refusing a newcomer
// unless nothing is evictable; see the top of client_listener.h.
bool ClientListener::EventLoop::Admit(int fd, const std::string& remote, const std::string& source,
                                      TimePoint now, bool from_tls) {
  auto count = per_source_.find(source);
  if (count != per_source_.end() && count->second >= options_.max_connections_per_source &&
      !EvictOldest(&source, RejectReason::kPerSourceLimit)) {
    CountRejected(RejectReason::kPerSourceLimit, remote);
    return false;
  }
  if (connections_.size() >= options_.max_connections &&
      !EvictOldest(nullptr, RejectReason::kTotalLimit)) {
    CountRejected(RejectReason::kTotalLimit, remote);
    return false;
  }
  auto conn = std::make_unique<Connection>();
  conn->id = next_id_++;
  conn->fd = fd;
  conn->remote_address = remote;
  conn->source = source;
  conn->from_tls = from_tls;
  conn->registered_events = EPOLLIN | EPOLLRDHUP;
  if (!Register(fd, conn->id, conn->registered_events)) {
    CAIRN_LOG(kWarn) << "client listener: epoll_ctl: " << ErrnoText(errno);
    return false;
  }
  Connection& c = *conn;
  connections_.emplace(c.id, std::move(conn));
  ++per_source_[source];
  SetUnidentified(+1);
  SetDeadline(c, now + options_.first_bytes_timeout);
  return true;
}

bool ClientListener::EventLoop::EvictOldest(const std::string* source, RejectReason reason) {
  // Unidentified connections first: they have not shown they are clients.
  for (int pass = 0; pass < 2; ++pass) {
    const Phase wanted = pass == 0 ? Phase::kClassifying : Phase::kReading;
    for (auto& [id, conn] : connections_) {
      if (conn->phase != wanted || (source != nullptr && conn->source != *source)) continue;
      Reject(*conn, reason);
      return true;
    }
  }
  return false;
}

void ClientListener::EventLoop::OnEvent(Connection& c, uint32_t events, TimePoint now) {
  if (events & EPOLLERR) {
    Close(c);
    return;
  }
  if (c.phase == Phase::kClassifying) {
    Classify(c, now);
    return;
  }
  if ((events & EPOLLOUT) && c.out_offset < c.out.size()) {
    const uint64_t id = c.id;
    Flush(c, now);
    if (connections_.find(id) == connections_.end()) return;
  }
  if (c.phase == Phase::kReading && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) {
    ReadHttp1(c, now);
  } else if (c.async && (c.phase == Phase::kHandling || c.phase == Phase::kStreaming) &&
             (events & (EPOLLRDHUP | EPOLLHUP))) {
    Close(c);  // the client went away: the handler's OnClose cancels its work
  } else if (events & EPOLLHUP) {
    Close(c);  // both directions gone: nobody to answer
  }
}

// Peeks until ClassifyPrefix() decides. Nothing is consumed. SO_RCVLOWAT is
// raised to one byte more than already seen so epoll stays quiet until new
// bytes arrive instead of reporting the buffered ones again; it is put back
// to 1 for whoever reads the socket next.
void ClientListener::EventLoop::Classify(Connection& c, TimePoint now) {
  char peeked[kMaxClassifyBytes];
  ssize_t n = ::recv(c.fd, peeked, sizeof(peeked), MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  // n == 0: closed before saying anything; n == peeked: woken without new
  // bytes, so the peer half-closed in the middle of the preface.
  if (n <= 0 || static_cast<size_t>(n) <= c.peeked) {
    Close(c);
    return;
  }
  const ConnectionProtocol protocol =
      ClassifyPrefix(std::string_view(peeked, static_cast<size_t>(n)));
  if (protocol == ConnectionProtocol::kNeedMore) {
    c.peeked = static_cast<size_t>(n);
    SetReceiveLowWatermark(c.fd, static_cast<int>(n) + 1);
    return;
  }
  if (c.peeked > 0) SetReceiveLowWatermark(c.fd, 1);
  if (options_.tls && !c.from_tls) {
    // An https URL: TLS, or Go's answer to plaintext HTTP.
    if (protocol == ConnectionProtocol::kTls) {
      const int fd = c.fd;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      c.fd = -1;
      const std::string remote = c.remote_address, source = c.source;
      Close(c);
      owner_->tls_->Adopt(fd, remote, source);
      return;
    }
    if (protocol == ConnectionProtocol::kHttp2 || protocol == ConnectionProtocol::kPeerStream) {
      Close(c);
      return;
    }
    SetUnidentified(-1);
    http1_.fetch_add(1);
    c.phase = Phase::kWriting;
    c.out = "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
    c.close_after_write = true;
    SetDeadline(c, now + options_.write_timeout);
    Flush(c, now);
    return;
  }
  if (protocol == ConnectionProtocol::kTls && c.from_tls) {
    Close(c);  // TLS inside TLS
    return;
  }
  if (protocol == ConnectionProtocol::kHttp2) {
    if (options_.http_only || !options_.on_grpc_connection) {
      Close(c);
      return;
    }
    // Hand off: untrack without closing; the callback owns the descriptor.
    const int fd = c.fd;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    c.fd = -1;
    Close(c);
    options_.on_grpc_connection(fd);
    return;
  }
  if (protocol == ConnectionProtocol::kPeerStream && options_.on_peer_stream && !options_.http_only) {
    const int fd = c.fd;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    c.fd = -1;
    Close(c);
    options_.on_peer_stream(fd);
    return;
  }
  // kHttp1, kPeerStream without a taker, and kTls until a TLS layer
  // terminates it here.
  SetUnidentified(-1);
  http1_.fetch_add(1);
  c.phase = Phase::kReading;
  c.reader = std::make_unique<Http1RequestReader>(options_.max_header_bytes,
                                                  options_.max_body_bytes);
  SetDeadline(c, now + options_.read_timeout);
  ReadHttp1(c, now);
}

void ClientListener::EventLoop::ReadHttp1(Connection& c, TimePoint now) {
  char buffer[kReadChunkBytes];
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    ssize_t n = ::recv(c.fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      Close(c);
      return;
    }
    Http1RequestReader::State state =
        n == 0 ? c.reader->FeedEof()
               : c.reader->Feed(std::string_view(buffer, static_cast<size_t>(n)));
    if (n == 0 && state == Http1RequestReader::State::kNeedMore) {
      state = Http1RequestReader::State::kError;  // not reachable; FeedEof decides
    }
    if (c.reader->TakeContinueRequest()) c.out.append(kContinueResponse);
    const uint64_t id = c.id;
    AfterRead(c, state, now);
    if (connections_.find(id) == connections_.end() || c.phase != Phase::kReading) return;
    if (n == 0) return;
  }
}

void ClientListener::EventLoop::AfterRead(Connection& c, Http1RequestReader::State state,
                                          TimePoint now) {
  using State = Http1RequestReader::State;
  if (state == State::kNeedMore) {
    if (c.out_offset < c.out.size()) Flush(c, now);  // a 100 Continue
    return;
  }
  if (state == State::kError) {
    if (!c.reader->error_response()) {
      Close(c);
      return;
    }
    c.out += SerializeResponse(*c.reader->error_response(), options_.default_headers, 11,
                               /*keep_alive=*/false, /*head_only=*/false);
    c.close_after_write = true;
    c.phase = Phase::kWriting;
    SetDeadline(c, now + options_.write_timeout);
    Flush(c, now);
    return;
  }
  // kDone. Nothing more is read until the response is out: that bounds the
  // buffer, and HTTP/1.x answers in order anyway.
  c.phase = Phase::kHandling;
  SetDeadline(c, TimePoint::max());
  HttpRequest request = c.reader->TakeRequest(c.remote_address);
  c.async = false;
  c.writer = std::make_shared<Writer>(this, c.id, options_, c.reader->version(),
                                      c.reader->keep_alive(), c.reader->head());
  owner_->SubmitRequest(c.writer, std::move(request));
  UpdateInterest(c);
}

void ClientListener::EventLoop::Flush(Connection& c, TimePoint now) {
  while (c.out_offset < c.out.size()) {
    ssize_t n = ::send(c.fd, c.out.data() + c.out_offset, c.out.size() - c.out_offset,
                       MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (c.phase == Phase::kStreaming) ReportUnsent(c, now);
        UpdateInterest(c);
        return;
      }
      Close(c);
      return;
    }
    c.out_offset += static_cast<size_t>(n);
  }
  c.out.clear();
  c.out_offset = 0;
  if (c.phase != Phase::kWriting) {
    if (c.phase == Phase::kStreaming) ReportUnsent(c, now);
    UpdateInterest(c);
    return;
  }
  if (c.close_after_write) {
    Close(c);
    return;
  }
  c.phase = Phase::kReading;
  SetDeadline(c, now + options_.read_timeout);
  const Http1RequestReader::State state = c.reader->Next();  // pipelined bytes, if any
  if (c.reader->TakeContinueRequest()) c.out.append(kContinueResponse);
  const uint64_t id = c.id;
  AfterRead(c, state, now);
  if (auto it = connections_.find(id); it != connections_.end()) UpdateInterest(*it->second);
}

void ClientListener::EventLoop::ReportUnsent(Connection& c, TimePoint now) {
  const size_t unsent = c.out.size() - c.out_offset;
  if (c.writer) c.writer->SetUnsent(unsent);
  // A stream may be quiet for ever (a watch); one the client stops reading is
  // closed after write_timeout.
  SetDeadline(c, unsent > 0 ? std::min(c.deadline, now + options_.write_timeout) : TimePoint::max());
}

void ClientListener::EventLoop::TakeCompletions(TimePoint now) {
  std::vector<Completion> completed;
  {
    std::lock_guard<std::mutex> lock(completed_mu_);
    completed.swap(completed_);
  }
  for (Completion& done : completed) {
    auto it = connections_.find(done.id);
    if (it == connections_.end()) continue;  // closed meanwhile (peer gone, Stop)
    Connection& c = *it->second;
    switch (done.kind) {
      case Completion::Kind::kAsync:
        c.async = true;
        UpdateInterest(c);
        continue;
      case Completion::Kind::kPart:
        if (c.phase != Phase::kHandling && c.phase != Phase::kStreaming) continue;
        if (c.writer) c.writer->Moved(done.bytes.size());
        c.out += done.bytes;
        c.phase = Phase::kStreaming;
        if (stopping_) {
          Close(c);  // a stream has no end to wait for
          continue;
        }
        Flush(c, now);
        continue;
      case Completion::Kind::kWhole:
      case Completion::Kind::kEnd:
        if (c.phase != Phase::kHandling && c.phase != Phase::kStreaming) continue;
        if (c.writer) {
          c.writer->Detach();  // the response is over: no OnClose
          c.writer.reset();
        }
        c.out += done.bytes;
        c.close_after_write = !done.keep_alive || stopping_;
        c.phase = Phase::kWriting;
        SetDeadline(c, now + options_.write_timeout);
        Flush(c, now);
        continue;
    }
  }
}

void ClientListener::EventLoop::ExpireDeadlines(TimePoint now) {
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    auto it = connections_.find(deadlines_.begin()->second);
    if (it == connections_.end()) {
      deadlines_.erase(deadlines_.begin());
      continue;
    }
    Connection& c = *it->second;
    if (c.phase == Phase::kClassifying) {
      Reject(c, RejectReason::kFirstBytesTimeout);
    } else if (c.phase == Phase::kReading && c.reader->started()) {
      Reject(c, RejectReason::kReadTimeout);
    } else {
      Close(c);  // an idle keep-alive connection, or a response nobody reads
    }
  }
}

void ClientListener::EventLoop::BeginStop(TimePoint now) {
  stopping_ = true;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
  // A request being handled finishes and gets its response first.
  stop_deadline_ = now + options_.write_timeout;
  std::vector<Connection*> idle;
  for (auto& [id, conn] : connections_) {
    if (conn->phase == Phase::kClassifying || conn->phase == Phase::kReading ||
        conn->phase == Phase::kStreaming) {
      idle.push_back(conn.get());
    } else {
      conn->close_after_write = true;
    }
  }
  for (Connection* c : idle) Close(*c);
}

void ClientListener::EventLoop::SetDeadline(Connection& c, TimePoint deadline) {
  if (c.deadline != TimePoint::max()) deadlines_.erase({c.deadline, c.id});
  c.deadline = deadline;
  if (deadline != TimePoint::max()) deadlines_.insert({deadline, c.id});
}

void ClientListener::EventLoop::UpdateInterest(Connection& c) {
  uint32_t events = 0;
  if (c.phase == Phase::kClassifying || c.phase == Phase::kReading) events |= EPOLLIN | EPOLLRDHUP;
  if (c.async && (c.phase == Phase::kHandling || c.phase == Phase::kStreaming)) events |= EPOLLRDHUP;
  if (c.out_offset < c.out.size()) events |= EPOLLOUT;
  if (events == c.registered_events) return;
  struct epoll_event ev = {};
  ev.events = events;
  ev.data.u64 = c.id;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
  c.registered_events = events;
}

void ClientListener::EventLoop::Close(Connection& c) {
  if (std::shared_ptr<Writer> writer = std::move(c.writer)) writer->Detach();
  if (c.fd >= 0) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
  }
  SetDeadline(c, TimePoint::max());
  if (auto it = per_source_.find(c.source); it != per_source_.end() && --it->second == 0) {
    per_source_.erase(it);
  }
  if (c.phase == Phase::kClassifying) {
    SetUnidentified(-1);
  } else {
    http1_.fetch_sub(1);
  }
  connections_.erase(c.id);  // destroys c
}

void ClientListener::EventLoop::Reject(Connection& c, RejectReason reason) {
  CountRejected(reason, c.remote_address);
  Close(c);
}

void ClientListener::EventLoop::CountRejected(RejectReason reason, const std::string& remote) {
  const int index = static_cast<int>(reason);
  rejected_[index].fetch_add(1);
  if (options_.on_rejected) options_.on_rejected(reason);
  LogState& log = reject_log_[index];
  const TimePoint now = SteadyClock::now();
  if (log.last != TimePoint::min() && now - log.last < kRejectLogInterval) {
    ++log.suppressed;
    return;
  }
  CAIRN_LOG(kWarn) << "client listener on port " << owner_->port() << ": closed a connection from "
                   << remote << " because " << RejectReasonText(reason) << " ("
                   << RejectReasonName(reason) << "; at most one such line per "
                   << kRejectLogInterval.count() << "s)";
  log.last = now;
}

// The closures not logged in the last interval, as one line, so a flood is
// visible in the log and not only in the metric.
void ClientListener::EventLoop::FlushRejectLogs(TimePoint now) {
  for (int i = 0; i < kRejectReasonCount; ++i) {
    LogState& log = reject_log_[i];
    if (log.suppressed == 0 || now - log.last < kRejectLogInterval) continue;
    CAIRN_LOG(kWarn) << "client listener on port " << owner_->port() << ": closed "
                     << log.suppressed << " more connection(s) in the last "
                     << kRejectLogInterval.count() << "s because "
                     << RejectReasonText(static_cast<RejectReason>(i)) << " ("
                     << RejectReasonName(static_cast<RejectReason>(i)) << ")";
    log.last = now;
    log.suppressed = 0;
  }
}

void ClientListener::EventLoop::SetUnidentified(int delta) {
  if (delta > 0) {
    unidentified_.fetch_add(1);
  } else {
    unidentified_.fetch_sub(1);
  }
  if (options_.on_unidentified_change) options_.on_unidentified_change(delta);
}

Status ClientListener::Options::Validate() const {
  if (max_connections == 0) return Status(Code::kInvalidArgument, "max_connections must be > 0");
  if (max_connections_per_source == 0) {
    return Status(Code::kInvalidArgument, "max_connections_per_source must be > 0");
  }
  if (max_header_bytes == 0 || max_header_bytes > std::numeric_limits<uint32_t>::max()) {
    return Status(Code::kInvalidArgument, "max_header_bytes must be in (0, 4 GiB)");
  }
  if (max_body_bytes == 0) return Status(Code::kInvalidArgument, "max_body_bytes must be > 0");
  if (first_bytes_timeout.count() <= 0 || read_timeout.count() <= 0 ||
      write_timeout.count() <= 0) {
    return Status(Code::kInvalidArgument,
                  "first_bytes_timeout, read_timeout and write_timeout must be > 0");
  }
  if (handler_threads == 0) return Status(Code::kInvalidArgument, "handler_threads must be > 0");
  return Status::Ok();
}

ClientListener::ClientListener(Options options) : options_(std::move(options)) {}

ClientListener::~ClientListener() { Stop(); }

void ClientListener::Handle(std::string method, std::string path, Handler handler) {
  std::unique_lock<std::shared_mutex> lock(routes_mu_);
  routes_[std::move(path)].by_method[std::move(method)] = Target{std::move(handler), nullptr};
}

void ClientListener::HandleAsync(std::string method, std::string path, AsyncHandler handler) {
  std::unique_lock<std::shared_mutex> lock(routes_mu_);
  routes_[std::move(path)].by_method[std::move(method)] = Target{nullptr, std::move(handler)};
}

Status ClientListener::Start() {
  CHECK(!started_) << "ClientListener::Start called twice";
  if (Status s = options_.Validate(); !s.ok()) return s;
  started_ = true;

  std::string host = options_.host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string address = host + ":" + std::to_string(options_.port);
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* results = nullptr;
  const std::string port = std::to_string(options_.port);
  int gai = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &results);
  if (gai != 0) {
    return Status(Code::kInvalidArgument,
                  "listen tcp " + address + ": lookup: " + ::gai_strerror(gai));
  }
  std::string error = "no usable address";
  for (struct addrinfo* ai = results; ai != nullptr && listen_fd_ < 0; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      error = std::string("socket: ") + ErrnoText(errno);
      continue;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      error = std::string("bind: ") + ErrnoText(errno);
      ::close(fd);
      continue;
    }
    if (::listen(fd, SOMAXCONN) != 0) {
      error = std::string("listen: ") + ErrnoText(errno);
      ::close(fd);
      continue;
    }
    listen_fd_ = fd;
  }
  ::freeaddrinfo(results);
  if (listen_fd_ < 0) return Status(Code::kUnavailable, "listen tcp " + address + ": " + error);

  struct sockaddr_storage bound = {};
  socklen_t bound_len = sizeof(bound);
  ::getsockname(listen_fd_, reinterpret_cast<struct sockaddr*>(&bound), &bound_len);
  bound_port_ = bound.ss_family == AF_INET6
                    ? ntohs(reinterpret_cast<struct sockaddr_in6*>(&bound)->sin6_port)
                    : ntohs(reinterpret_cast<struct sockaddr_in*>(&bound)->sin_port);

  loop_ = std::make_unique<EventLoop>(this, listen_fd_);
  if (Status s = loop_->Init(); !s.ok()) return s;
  if (options_.tls) {
    TlsTerminator::Options to;
    to.context = options_.tls;
    to.max_handshakes = options_.max_connections;
    EventLoop* loop = loop_.get();
    to.on_plaintext = [loop](int fd, const std::string& remote, const std::string& source) {
      loop->PushPlaintext(fd, remote, source);
    };
    tls_ = std::make_unique<TlsTerminator>(std::move(to));
    if (Status s = tls_->Start(); !s.ok()) return s;
  }
  try {
    for (size_t i = 0; i < options_.handler_threads; ++i) {
      handler_threads_.emplace_back([this] {
        SetThreadName("cairn-http");
        RunHandlers();
      });
    }
    loop_thread_ = std::thread([this] {
      SetThreadName("cairn-listen");
      loop_->Run();
    });
  } catch (const std::system_error& e) {
    return Status(Code::kInternal, std::string("starting listener threads: ") + e.what());
  }
  return Status::Ok();
}

size_t ClientListener::active_connections() const {
  if (!loop_) return 0;
  Stats s = loop_->stats();
  return s.unidentified + s.http1;
}

ClientListener::Stats ClientListener::stats() const {
  Stats s = loop_ ? loop_->stats() : Stats{};
  if (tls_) {
    const TlsTerminator::Stats t = tls_->stats();
    s.tls_handshakes = t.handshakes;
    s.tls_handshake_failures = t.handshake_failures;
  }
  return s;
}

std::string ClientListener::PeerCommonName(int fd) const { return tls_ ? tls_->PeerCommonName(fd) : ""; }

void ClientListener::SubmitRequest(std::shared_ptr<Writer> writer, HttpRequest request) {
  {
    std::lock_guard<std::mutex> lock(work_mu_);
    work_.push_back({std::move(writer), std::move(request)});
  }
  work_cv_.notify_one();
}

void ClientListener::RunHandlers() {
  for (;;) {
    Work work;
    {
      std::unique_lock<std::mutex> lock(work_mu_);
      work_cv_.wait(lock, [this] { return handlers_stopping_ || !work_.empty(); });
      if (handlers_stopping_) return;
      work = std::move(work_.front());
      work_.pop_front();
    }
    Dispatch(work.request, work.writer);
  }
}

void ClientListener::Dispatch(const HttpRequest& request, const std::shared_ptr<Writer>& writer) {
  if (options_.answer_options && request.method == "OPTIONS") {
    HttpResponse response;
    response.content_type.clear();
    writer->Send(std::move(response));
    return;
  }
  Target target;
  {
    std::shared_lock<std::shared_mutex> lock(routes_mu_);
    const Route* route = nullptr;
    if (auto it = routes_.find(request.path); it != routes_.end()) {
      route = &it->second;
    } else {
      size_t best = 0;
      for (const auto& [pattern, candidate] : routes_) {
        if (!pattern.empty() && pattern.back() == '/' && pattern.size() > best &&
            request.path.compare(0, pattern.size(), pattern) == 0) {
          best = pattern.size();
          route = &candidate;
        }
      }
    }
    if (route == nullptr) {
      writer->Send(TextResponse(404, "404 page not found\n"));
      return;
    }
    auto it = route->by_method.find(request.method);
    if (it == route->by_method.end()) {
      std::string allow;
      for (const auto& [method, unused] : route->by_method) {
        if (!allow.empty()) allow += ", ";
        allow += method;
      }
      HttpResponse response = TextResponse(405, "Method Not Allowed\n");
      response.headers.emplace_back("Allow", allow);
      writer->Send(std::move(response));
      return;
    }
    target = it->second;
  }
  // Handlers report failures as status codes; an exception escaping one is a
  // bug, but it must not take the listener down with it.
  try {
    if (target.async) {
      writer->MarkAsync();
      target.async(request, writer);
    } else {
      writer->Send(target.handler(request));
    }
    return;
  } catch (const std::exception& e) {
    CAIRN_LOG(kError) << "http handler for " << request.method << " " << request.path
                      << " threw: " << e.what();
  } catch (...) {
    CAIRN_LOG(kError) << "http handler for " << request.method << " " << request.path << " threw";
  }
  writer->Send(TextResponse(500, "Internal Server Error\n"));
}

void ClientListener::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  // TLS first: it hands connections to the loop.
  if (tls_) tls_->Stop();
  // The loop: it waits (bounded by write_timeout) for requests inside
  // handlers, which therefore must still be running.
  if (loop_thread_.joinable()) {
    loop_->RequestStop();
    loop_thread_.join();
  }
  {
    std::lock_guard<std::mutex> lock(work_mu_);
    handlers_stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : handler_threads_) {
    if (t.joinable()) t.join();
  }
  handler_threads_.clear();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

}  // namespace cairn::http
