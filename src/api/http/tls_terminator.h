// Terminates TLS for a ClientListener on an https:// client URL.
//
// Design. The listener classifies a connection by its first bytes; one that
// opens with a TLS ClientHello is handed here (Adopt). The terminator does
// the handshake without blocking, then makes a socketpair and hands one end
// (`on_plaintext`) back to the listener, which serves it exactly like a
// plain connection: classifies its decrypted bytes, serves HTTP/1.x itself or
// hands HTTP/2 to gRPC (AddInsecureChannelFromFd). The terminator pumps bytes
// between the TLS connection and its end of the pair. So gRPC, /health,
// /metrics and the JSON gateway share one TLS port, as etcd's cmux does,
// and nothing above this layer knows about TLS.
//
// Bounds: `max_handshakes` connections in a handshake at once (past it the
// oldest one is dropped, as the listener drops its oldest unidentified
// connection), each within `handshake_timeout`; `buffer_bytes` per direction
// per connection, and a direction reads nothing more until its buffer is
// delivered, so a slow reader on either side stalls only its own connection.
// EOF and half-close are passed through in both directions (close_notify on
// the TLS side, shutdown(SHUT_WR) on the plaintext side).
//
// Identity. PeerCommonName(fd) gives the verified client certificate's CN of
// the connection whose plaintext end is `fd`, for auth (etcd's CN-as-user
// rule). The end's inode is checked too, so a descriptor number reused after
// the connection closed never inherits an identity.
//
// Threads: one, started by Start() and joined by Stop(). `on_plaintext` runs
// on it and must be quick. Adopt() and PeerCommonName() may be called from
// any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "api/http/tls_context.h"
#include "common/status.h"

namespace cairn::http {

class TlsTerminator {
 public:
  struct Options {
    std::shared_ptr<TlsContext> context;
    std::chrono::milliseconds handshake_timeout{10000};
    size_t max_handshakes = 1024;
    size_t buffer_bytes = 32 << 10;
    // After a handshake: the plaintext end (non-blocking, close-on-exec;
    // ownership passes), the client's "ip:port" and its per-source key.
    std::function<void(int fd, const std::string& remote, const std::string& source)> on_plaintext;
  };
  struct Stats {
    uint64_t handshakes = 0;          // completed
    uint64_t handshake_failures = 0;  // refused certificates, bad hellos, timeouts
    size_t connections = 0;           // handshaking or pumping now
  };

  explicit TlsTerminator(Options options);
  ~TlsTerminator();  // calls Stop()
  TlsTerminator(const TlsTerminator&) = delete;
  TlsTerminator& operator=(const TlsTerminator&) = delete;

  Status Start();
  // Closes every connection and joins the thread. Idempotent.
  void Stop();

  // Takes `fd`: a non-blocking TCP connection whose unread first bytes are a
  // TLS handshake record. Any thread; closes it if stopped.
  void Adopt(int fd, std::string remote, std::string source);

  // See "Identity" above; "" when `fd` is not an open plaintext end or its
  // client sent no certificate.
  std::string PeerCommonName(int plaintext_fd) const;

  Stats stats() const;

 private:
  struct Conn;
  void Run();
  void TakeAdopted(std::chrono::steady_clock::time_point now);
  void Handshake(Conn& c);
  void Pump(Conn& c);
  void UpdateInterest(Conn& c);
  void Close(Conn& c);
  void LogFailure(const Conn& c, const std::string& why);

  const Options options_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool started_ = false;

  std::mutex adopt_mu_;
  struct Adopted {
    int fd;
    std::string remote, source;
  };
  std::vector<Adopted> adopted_;  // GUARDED_BY(adopt_mu_)
  bool accepting_ = true;         // GUARDED_BY(adopt_mu_)

  // Loop thread only.
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;  // by id: begin() is the oldest
  size_t handshaking_ = 0;
  std::chrono::steady_clock::time_point last_log_{};
  uint64_t suppressed_logs_ = 0;

  struct Identity {
    uint64_t inode;
    std::string common_name;
  };
  mutable std::mutex identity_mu_;
  std::unordered_map<int, Identity> identities_;  // GUARDED_BY(identity_mu_), by plaintext fd

  std::atomic<uint64_t> handshakes_{0}, handshake_failures_{0};
  std::atomic<size_t> connections_{0};
};

}  // namespace cairn::http
