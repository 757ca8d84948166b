#include "api/http/tls_terminator.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "common/logging.h"
#include "common/thread_name.h"

namespace cairn::http {
namespace {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

constexpr uint64_t kWakeId = 0;
constexpr int kMaxEvents = 64;
constexpr auto kMaxWait = std::chrono::milliseconds(200);
constexpr auto kLogEvery = std::chrono::seconds(10);
// After the server side closed and close_notify went out, how long the
// client may take to close its side before the connection is dropped.
constexpr auto kLinger = std::chrono::seconds(5);

uint64_t InodeOf(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

}  // namespace

struct TlsTerminator::Conn {
  uint64_t id = 0;
  int net_fd = -1;    // the TLS connection
  int app_fd = -1;    // our end of the socketpair, after the handshake
  int given_fd = -1;  // the end given to on_plaintext (not ours; for identities)
  uint64_t given_inode = 0;
  SSL* ssl = nullptr;
  std::string remote, source;
  bool handshaking = true;
  TimePoint deadline;
  // net -> app: decrypted bytes not yet written to the app end.
  std::vector<char> to_app;
  size_t to_app_off = 0, to_app_len = 0;
  // app -> net: bytes read from the app end not yet taken by SSL_write.
  std::vector<char> to_net;
  size_t to_net_off = 0, to_net_len = 0;
  bool net_eof = false, app_eof = false;    // nothing more will come from that side
  bool app_shut = false, net_shut = false;  // we told that side nothing more comes
  bool ssl_wants_write = false;             // the last SSL call needs the socket writable
  uint32_t net_events = 0, app_events = 0;
};

TlsTerminator::TlsTerminator(Options options) : options_(std::move(options)) {}

TlsTerminator::~TlsTerminator() { Stop(); }

Status TlsTerminator::Start() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) return Status(Code::kInternal, std::string("tls: ") + std::strerror(errno));
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeId;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    return Status(Code::kInternal, std::string("tls: epoll_ctl: ") + std::strerror(errno));
  }
  started_ = true;
  thread_ = std::thread([this] {
    SetThreadName("cairn-tls");
    Run();
  });
  return Status::Ok();
}

void TlsTerminator::Stop() {
  {
    std::lock_guard<std::mutex> lock(adopt_mu_);
    accepting_ = false;
  }
  if (started_) {
    stop_.store(true);
    uint64_t one = 1;
    ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
    (void)ignored;
    if (thread_.joinable()) thread_.join();
    started_ = false;
  }
  std::lock_guard<std::mutex> lock(adopt_mu_);
  for (auto& a : adopted_) ::close(a.fd);
  adopted_.clear();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
  epoll_fd_ = wake_fd_ = -1;
}

void TlsTerminator::Adopt(int fd, std::string remote, std::string source) {
  {
    std::lock_guard<std::mutex> lock(adopt_mu_);
    if (accepting_) {
      adopted_.push_back({fd, std::move(remote), std::move(source)});
      fd = -1;
    }
  }
  if (fd >= 0) {
    ::close(fd);
    return;
  }
  uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
  (void)ignored;
}

std::string TlsTerminator::PeerCommonName(int plaintext_fd) const {
  std::lock_guard<std::mutex> lock(identity_mu_);
  auto it = identities_.find(plaintext_fd);
  if (it == identities_.end() || InodeOf(plaintext_fd) != it->second.inode) return "";
  return it->second.common_name;
}

TlsTerminator::Stats TlsTerminator::stats() const {
  Stats s;
  s.handshakes = handshakes_.load();
  s.handshake_failures = handshake_failures_.load();
  s.connections = connections_.load();
  return s;
}

void TlsTerminator::Run() {
  struct epoll_event events[kMaxEvents];
  while (!stop_.load()) {
    TimePoint now = SteadyClock::now();
    TimePoint until = now + kMaxWait;
    for (const auto& [id, c] : conns_) {
      if ((c->handshaking || c->net_shut) && c->deadline < until) until = c->deadline;
    }
    const int wait_ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1);
    const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, wait_ms);
    if (n < 0 && errno != EINTR) {
      CAIRN_LOG(kError) << "tls: epoll_wait: " << std::strerror(errno);
      break;
    }
    now = SteadyClock::now();
    for (int i = 0; i < n; ++i) {
      const uint64_t key = events[i].data.u64;
      if (key == kWakeId) {
        uint64_t count;
        ssize_t ignored = ::read(wake_fd_, &count, sizeof(count));
        (void)ignored;
        continue;
      }
      auto it = conns_.find(key >> 1);
      if (it == conns_.end()) continue;
      Conn& c = *it->second;
      if (c.handshaking) {
        Handshake(c);
      } else {
        Pump(c);
      }
    }
    TakeAdopted(now);
    // Handshakes past their deadline, and closed connections the client
    // does not close.
    for (auto it = conns_.begin(); it != conns_.end();) {
      Conn& c = *(it++)->second;
      if (c.handshaking && now >= c.deadline) {
        handshake_failures_.fetch_add(1);
        LogFailure(c, "TLS handshake timeout");
        Close(c);
      } else if (c.net_shut && now >= c.deadline) {
        Close(c);
      }
    }
  }
  while (!conns_.empty()) Close(*conns_.begin()->second);
}

void TlsTerminator::TakeAdopted(TimePoint now) {
  std::vector<Adopted> batch;
  {
    std::lock_guard<std::mutex> lock(adopt_mu_);
    batch.swap(adopted_);
  }
  for (auto& a : batch) {
    if (handshaking_ >= options_.max_handshakes) {
      for (auto& [id, c] : conns_) {
        if (c->handshaking) {
          handshake_failures_.fetch_add(1);
          LogFailure(*c, "too many TLS handshakes at once; dropped the oldest");
          Close(*c);
          break;
        }
      }
    }
    auto conn = std::make_unique<Conn>();
    conn->id = next_id_++;
    conn->net_fd = a.fd;
    conn->remote = std::move(a.remote);
    conn->source = std::move(a.source);
    conn->deadline = now + options_.handshake_timeout;
    conn->ssl = options_.context->NewSsl();
    if (conn->ssl == nullptr || SSL_set_fd(conn->ssl, a.fd) != 1) {
      CAIRN_LOG(kError) << "tls: cannot set up a connection: " << OpenSslErrors();
      if (conn->ssl != nullptr) SSL_free(conn->ssl);
      ::close(a.fd);
      continue;
    }
    struct epoll_event ev = {};
    conn->net_events = EPOLLIN;
    ev.events = conn->net_events;
    ev.data.u64 = conn->id << 1;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, a.fd, &ev) != 0) {
      SSL_free(conn->ssl);
      ::close(a.fd);
      continue;
    }
    Conn& c = *conn;
    conns_.emplace(c.id, std::move(conn));
    handshaking_++;
    connections_.fetch_add(1);
    Handshake(c);  // the ClientHello is usually there already
  }
}

void TlsTerminator::Handshake(Conn& c) {
  ERR_clear_error();
  const int r = SSL_accept(c.ssl);
  if (r != 1) {
    const int error = SSL_get_error(c.ssl, r);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
      c.ssl_wants_write = error == SSL_ERROR_WANT_WRITE;
      UpdateInterest(c);
      return;
    }
    std::string why;
    const long verify = SSL_get_verify_result(c.ssl);
    if (verify != X509_V_OK) {
      why = std::string("bad certificate: ") + X509_verify_cert_error_string(verify);
    } else if (error == SSL_ERROR_SYSCALL) {
      why = ERR_peek_error() != 0 ? OpenSslErrors() : "the client closed the connection during the handshake";
    } else {
      why = OpenSslErrors();
    }
    handshake_failures_.fetch_add(1);
    LogFailure(c, why);
    Close(c);
    return;
  }
  // etcd's tlsListener check: a certificate the CRL lists ends the connection.
  if (const std::string& crl = options_.context->options().crl_file; !crl.empty()) {
    if (Status revoked = http::CheckRevoked(crl, http::PeerCertificates(c.ssl)); !revoked.ok()) {
      handshake_failures_.fetch_add(1);
      LogFailure(c, revoked.message());
      Close(c);
      return;
    }
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) {
    CAIRN_LOG(kWarn) << "tls: socketpair: " << std::strerror(errno);
    Close(c);
    return;
  }
  c.handshaking = false;
  handshaking_--;
  handshakes_.fetch_add(1);
  c.app_fd = pair[0];
  c.given_fd = pair[1];
  c.given_inode = InodeOf(pair[1]);
  c.to_app.resize(options_.buffer_bytes);
  c.to_net.resize(options_.buffer_bytes);
  {
    std::lock_guard<std::mutex> lock(identity_mu_);
    identities_[pair[1]] = Identity{c.given_inode, http::PeerCommonName(c.ssl)};
  }
  struct epoll_event ev = {};
  ev.events = 0;
  ev.data.u64 = (c.id << 1) | 1;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.app_fd, &ev);
  options_.on_plaintext(pair[1], c.remote, c.source);
  Pump(c);  // bytes that came with the last handshake flight
}

void TlsTerminator::Pump(Conn& c) {
  bool progress = true;
  bool failed = false;
  c.ssl_wants_write = false;
  while (progress && !failed) {
    progress = false;
    // TLS -> plaintext end.
    if (!c.net_eof && c.to_app_len == 0) {
      ERR_clear_error();
      const int n = SSL_read(c.ssl, c.to_app.data(), static_cast<int>(c.to_app.size()));
      if (n > 0) {
        c.to_app_off = 0;
        c.to_app_len = static_cast<size_t>(n);
        progress = true;
      } else {
        const int error = SSL_get_error(c.ssl, n);
        if (error == SSL_ERROR_WANT_WRITE) {
          c.ssl_wants_write = true;
        } else if (error == SSL_ERROR_ZERO_RETURN ||
                   (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
          c.net_eof = true;  // close_notify, or a plain TCP close
          progress = true;
        } else if (error != SSL_ERROR_WANT_READ) {
          failed = true;
        }
      }
    }
    if (c.to_app_len > 0) {
      const ssize_t w = ::send(c.app_fd, c.to_app.data() + c.to_app_off, c.to_app_len, MSG_NOSIGNAL);
      if (w > 0) {
        c.to_app_off += static_cast<size_t>(w);
        c.to_app_len -= static_cast<size_t>(w);
        progress = true;
      } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        failed = true;  // the server side closed: nobody reads
      }
    }
    if (c.net_eof && c.to_app_len == 0 && !c.app_shut) {
      ::shutdown(c.app_fd, SHUT_WR);
      c.app_shut = true;
    }
    // Plaintext end -> TLS.
    if (!c.app_eof && c.to_net_len == 0) {
      const ssize_t r = ::recv(c.app_fd, c.to_net.data(), c.to_net.size(), MSG_DONTWAIT);
      if (r > 0) {
        c.to_net_off = 0;
        c.to_net_len = static_cast<size_t>(r);
        progress = true;
      } else if (r == 0) {
        c.app_eof = true;
        progress = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        c.app_eof = true;
        progress = true;
      }
    }
    if (c.to_net_len > 0) {
      ERR_clear_error();
      const int n = SSL_write(c.ssl, c.to_net.data() + c.to_net_off, static_cast<int>(c.to_net_len));
      if (n > 0) {
        c.to_net_off += static_cast<size_t>(n);
        c.to_net_len -= static_cast<size_t>(n);
        progress = true;
      } else {
        const int error = SSL_get_error(c.ssl, n);
        if (error == SSL_ERROR_WANT_WRITE) {
          c.ssl_wants_write = true;
        } else if (error != SSL_ERROR_WANT_READ) {
          failed = true;  // the client is gone
        }
      }
    }
    if (c.app_eof && c.to_net_len == 0 && !c.net_shut) {
      ERR_clear_error();
      SSL_shutdown(c.ssl);  // close_notify, best effort
      ::shutdown(c.net_fd, SHUT_WR);
      c.net_shut = true;
      c.deadline = SteadyClock::now() + kLinger;
    }
  }
  if (failed || (c.app_shut && c.net_shut)) {
    Close(c);
    return;
  }
  UpdateInterest(c);
}

void TlsTerminator::UpdateInterest(Conn& c) {
  uint32_t net = 0, app = 0;
  if (c.handshaking) {
    net = c.ssl_wants_write ? EPOLLOUT : EPOLLIN;
  } else {
    if (!c.net_eof && c.to_app_len == 0) net |= EPOLLIN;
    if (c.ssl_wants_write) net |= EPOLLOUT;
    if (!c.app_eof && c.to_net_len == 0) app |= EPOLLIN;
    if (c.to_app_len > 0) app |= EPOLLOUT;
    // A stalled SSL_write waits for the client to read; nothing else to do.
  }
  if (net != c.net_events) {
    struct epoll_event ev = {};
    ev.events = net;
    ev.data.u64 = c.id << 1;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.net_fd, &ev);
    c.net_events = net;
  }
  if (c.app_fd >= 0 && app != c.app_events) {
    struct epoll_event ev = {};
    ev.events = app;
    ev.data.u64 = (c.id << 1) | 1;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.app_fd, &ev);
    c.app_events = app;
  }
}

void TlsTerminator::Close(Conn& c) {
  if (c.handshaking) handshaking_--;
  if (c.given_fd >= 0) {
    std::lock_guard<std::mutex> lock(identity_mu_);
    auto it = identities_.find(c.given_fd);
    if (it != identities_.end() && it->second.inode == c.given_inode) identities_.erase(it);
  }
  if (c.ssl != nullptr) SSL_free(c.ssl);
  if (c.net_fd >= 0) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.net_fd, nullptr);
    ::close(c.net_fd);
  }
  if (c.app_fd >= 0) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.app_fd, nullptr);
    ::close(c.app_fd);
  }
  connections_.fetch_sub(1);
  conns_.erase(c.id);
}

void TlsTerminator::LogFailure(const Conn& c, const std::string& why) {
  const TimePoint now = SteadyClock::now();
  if (now - last_log_ < kLogEvery) {
    suppressed_logs_++;
    return;
  }
  std::string more;
  if (suppressed_logs_ > 0) more = " (" + std::to_string(suppressed_logs_) + " more since the last such line)";
  last_log_ = now;
  suppressed_logs_ = 0;
  CAIRN_LOG(kWarn) << "rejected connection from \"" << c.remote << "\": TLS handshake failed: " << why << more;
}

}  // namespace cairn::http
