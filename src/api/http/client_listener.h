// The listener behind etcd's client URL: one TCP port that carries both gRPC
// (HTTP/2) and plain HTTP/1.x (/health, /metrics, /version, the JSON gateway),
// so `curl http://127.0.0.1:2379/metrics` and gRPC clients share one address,
// exactly as etcd's cmux does.
//
// Design. One event-loop thread (epoll, level-triggered) accepts connections,
// classifies them and serves HTTP/1.x; a connection that has not identified
// itself, or an HTTP/1.x connection waiting for (the rest of) a request, costs
// a descriptor and a few hundred bytes, never a thread. So sockets that send
// nothing, half a request or one byte a second cannot starve other clients.
//
//  - Classification peeks (recv MSG_PEEK, nothing is consumed) at the first
//    bytes and asks ClassifyPrefix() (protocol_classifier.h). SO_RCVLOWAT is
//    raised to one byte more than already seen, so epoll only reports the
//    socket again when something new arrived. The 24-byte HTTP/2 preface goes
//    to `on_grpc_connection` with every byte still unread; anything else is
//    HTTP/1.x. On an https:// URL (Options::tls) a TLS ClientHello goes to
//    the TlsTerminator (tls_terminator.h), which hands the decrypted stream
//    back as a new connection that is classified and served the same way;
//    plaintext HTTP there gets Go's 400 "Client sent an HTTP request to an
//    HTTPS server.", a plaintext HTTP/2 preface is closed. Without `tls` a
//    ClientHello is served as HTTP/1 (400).
//  - A connection must be classified within `first_bytes_timeout` (cmux-like,
//    a few seconds), else it is closed and counted.
//  - Limits never lock well-behaved clients out: when a source address holds
//    `max_connections_per_source` connections, or the listener holds
//    `max_connections`, a new connection is still accepted and the OLDEST
//    evictable connection (unidentified first, then idle or half-read
//    HTTP/1.x) of that source, or overall, is closed instead. An attacker
//    thus only churns its own sockets, while a real client, which sends its
//    preface within milliseconds, is classified long before it becomes the
//    oldest. Only when nothing is evictable (every connection is inside a
//    handler or writing) is the new connection refused. Running out of
//    descriptors (EMFILE) evicts the same way. Each of these is counted
//    through `on_rejected` and logged: the first for a reason at once, then
//    at most one summary line (with the count) per 10 s per reason.
//  - HTTP/1.x requests are parsed as bytes arrive (http1_codec.h); a complete
//    request is handed to a pool of `handler_threads` threads (a handler may
//    take milliseconds, e.g. /metrics; it must not block the loop), and the
//    response is written by the loop without blocking. A connection has at
//    most one request in a handler and reads nothing meanwhile, so the
//    handler queue is bounded by max_connections and each read buffer by the
//    header and body limits.
//
// Threads: this class owns its threads, an allowed exception to "only
// src/server/ creates threads": the event loop and `handler_threads` handler
// threads, all started by Start() and joined by Stop().
//
// Thread-safety: Handle() may be called at any time from any thread; Start()
// and Stop() from the owner's thread; stats() from any thread. Handlers run on
// handler threads, possibly concurrently with each other; `on_grpc_connection`
// and `on_rejected`/`on_unidentified_change` run on the event loop and must
// be quick (they delay every connection of this listener). All must return (a
// handler that blocks forever blocks Stop()). None runs after Stop() returns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "api/http/http_message.h"
#include "api/http/protocol_classifier.h"
#include "api/http/tls_context.h"
#include "common/status.h"

namespace cairn::http {

// Why the listener closed a connection it did not want, as a metric label.
enum class RejectReason {
  kPerSourceLimit,     // its source address held max_connections_per_source
  kTotalLimit,         // the listener held max_connections, or ran out of fds
  kFirstBytesTimeout,  // not classified within first_bytes_timeout
  kReadTimeout,        // an HTTP/1.x request not read within read_timeout
};
inline constexpr int kRejectReasonCount = 4;
// "per_source_limit", "total_limit", "first_bytes_timeout", "read_timeout".
std::string_view RejectReasonName(RejectReason reason);

class ClientListener {
 public:
  struct Options {
    // Address to bind: an IP literal or a name ("localhost"); "" or "0.0.0.0"
    // for all IPv4 interfaces, "::" for all. Default: "127.0.0.1".
    std::string host = "127.0.0.1";
    // 0 picks an ephemeral port; read it back with port(). Default: 2379.
    uint16_t port = 2379;
    // Connections the listener holds at once: unidentified plus HTTP/1.x.
    // Handed-off gRPC connections do not count. Past it the oldest evictable
    // one is closed (see the top of this file). Default: 4096.
    size_t max_connections = 4096;
    // The same, per source IP address. Default: 1024.
    size_t max_connections_per_source = 1024;
    // From accept until the protocol is known. Default: 5 s.
    std::chrono::milliseconds first_bytes_timeout{5000};
    // Request line plus headers. Default: 1 MiB (Go's DefaultMaxHeaderBytes).
    size_t max_header_bytes = 1 << 20;
    // Request body; larger requests get 413. Default: 2 MiB (etcd's 1.5 MiB
    // --max-request-bytes plus its 512 KiB gRPC overhead).
    size_t max_body_bytes = 2 << 20;
    // Bound on the whole read of one HTTP/1.x request, from the moment the
    // listener starts waiting for it (so it also bounds keep-alive idle time).
    // Default: 30 s.
    std::chrono::milliseconds read_timeout{30000};
    // Bound on writing one response. Default: 30 s.
    std::chrono::milliseconds write_timeout{30000};
    // Threads running HTTP handlers. Default: 2.
    size_t handler_threads = 2;
    // For --listen-metrics-urls: serve only HTTP/1.x and close any connection
    // that opens with the HTTP/2 preface. Default: false.
    bool http_only = false;
    // Receives each HTTP/2 connection, preface unread. The fd is non-blocking,
    // close-on-exec, TCP_NODELAY; the callback takes ownership of it (the
    // server passes it to grpc::AddInsecureChannelFromFd). If empty, HTTP/2
    // connections are closed. Called on the event loop.
    std::function<void(int fd)> on_grpc_connection;
    // Receives each connection that opens with kPeerStreamMagic (a cairn
    // member's raft stream, on a peer URL), magic unread, with the same fd
    // flags as on_grpc_connection; the callback takes ownership. If empty,
    // such a connection is served as HTTP/1 (400). Called on the event loop.
    std::function<void(int fd)> on_peer_stream;
    // Metrics hooks, called on the event loop; may be empty.
    // Each connection closed for `reason`.
    std::function<void(RejectReason reason)> on_rejected;
    // +1 when a connection starts waiting for classification, -1 when it is
    // classified or closed (a gauge: connections awaiting classification).
    std::function<void(int delta)> on_unidentified_change;
    // Added to every HTTP response, including 404s (etcd adds CORS headers on
    // its client URL). Default: none.
    HeaderList default_headers;
    // Answer OPTIONS on every path with an empty 200 (a CORS preflight, as
    // etcd's client URL does). Default: false (405 as any other method).
    bool answer_options = false;
    // Bytes of a streamed response given to a ResponseWriter and not yet
    // sent; past it Write() refuses (the client is not reading). Default: 8 MiB.
    size_t max_stream_buffer_bytes = 8 << 20;
    // An https:// URL: every connection must speak TLS with this context.
    // Default: none (plain http://).
    std::shared_ptr<TlsContext> tls;

    Status Validate() const;
  };

  struct Stats {
    size_t unidentified = 0;     // awaiting classification
    size_t http1 = 0;            // HTTP/1.x connections held
    uint64_t rejected[kRejectReasonCount] = {};  // by RejectReason
    uint64_t tls_handshakes = 0;          // completed (https only)
    uint64_t tls_handshake_failures = 0;  // refused or timed out (https only)
  };

  explicit ClientListener(Options options);
  // Calls Stop().
  ~ClientListener();
  ClientListener(const ClientListener&) = delete;
  ClientListener& operator=(const ClientListener&) = delete;

  // Routes requests for `path` with `method` ("GET", "POST", ...) to
  // `handler`, replacing an earlier one. As Go's ServeMux: a path ending in
  // "/" also matches everything below it (longest pattern wins), so "/"
  // matches every path. Unknown paths get 404 "404 page not found\n"; a known
  // path with another method gets 405 with an Allow header. Methods match
  // exactly: to answer HEAD, register "HEAD" too (only headers are sent).
  void Handle(std::string method, std::string path, Handler handler);
  // The same for a handler that answers later or in parts (ResponseWriter).
  // While it has not answered, the connection is watched for the client
  // going away (the writer's OnClose), and Stop() closes a streaming
  // response at once rather than waiting for its end.
  void HandleAsync(std::string method, std::string path, AsyncHandler handler);

  // Binds (SO_REUSEADDR), listens and starts the threads.
  // REQUIRES: called at most once.
  Status Start();

  // The bound port. REQUIRES: Start() returned ok.
  uint16_t port() const { return bound_port_; }

  // Connections being classified or served as HTTP/1.x right now.
  size_t active_connections() const;
  Stats stats() const;

  // For a connection handed to on_grpc_connection as `fd`, on an https URL:
  // the subject CN of the client's verified certificate, while that
  // connection is open; "" otherwise (see TlsTerminator::PeerCommonName).
  std::string PeerCommonName(int fd) const;

  // Closes the listening socket and every connection that is not inside a
  // handler or writing; those get their response first (bounded by
  // write_timeout), then close. Joins every thread. Idempotent.
  void Stop();

 private:
  struct Target {
    Handler handler;        // one of the two
    AsyncHandler async;
  };
  struct Route {
    std::map<std::string, Target> by_method;
  };
  struct Connection;
  class EventLoop;
  class Writer;

  void RunHandlers();
  // Answers `request` through `writer`, now or (async handlers) later.
  void Dispatch(const HttpRequest& request, const std::shared_ptr<Writer>& writer);
  // Queues a request for the handler threads. Called by the loop.
  void SubmitRequest(std::shared_ptr<Writer> writer, HttpRequest request);

  const Options options_;
  int listen_fd_ = -1;
  uint16_t bound_port_ = 0;
  bool started_ = false;  // owner thread only
  bool stopped_ = false;  // owner thread only
  std::unique_ptr<EventLoop> loop_;
  std::thread loop_thread_;
  std::unique_ptr<class TlsTerminator> tls_;  // https only

  std::shared_mutex routes_mu_;
  std::map<std::string, Route> routes_;  // GUARDED_BY(routes_mu_), key: path

  // Handler work: requests in, serialized responses out (to the loop, which
  // the handler wakes). Bounded: one entry per HTTP/1.x connection at most.
  struct Work {
    std::shared_ptr<Writer> writer;  // the way back to the connection
    HttpRequest request;
  };
  std::mutex work_mu_;
  std::condition_variable work_cv_;
  std::deque<Work> work_;            // GUARDED_BY(work_mu_)
  bool handlers_stopping_ = false;   // GUARDED_BY(work_mu_)
  std::vector<std::thread> handler_threads_;
};

}  // namespace cairn::http
