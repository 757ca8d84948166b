// The listener behind etcd's client URL: one TCP port that carries both gRPC
// (HTTP/2) and plain HTTP/1.x (/health, /metrics, /version, the JSON gateway),
// so `curl http://127.0.0.1:2379/metrics` and gRPC clients share one address,
// exactly as etcd's cmux does.
//
// Each accepted connection is classified by peeking (recv MSG_PEEK, nothing is
// consumed) at its first bytes: the 24-byte HTTP/2 client preface goes to
// `on_grpc_connection` with every byte still unread, so gRPC sees an untouched
// stream; anything else is served here as HTTP/1.x with Boost.Beast from a
// handler table. TLS is not handled here (a TLS ClientHello is neither, and is
// treated as a bad HTTP/1 request).
//
// Threads: this class owns its threads, an allowed exception to "only
// src/server/ creates threads": one accept thread, plus one short-lived thread
// per connection (at most `max_connections` at once) that classifies it and,
// for HTTP/1.x, serves it synchronously until it closes. gRPC connections
// leave that thread as soon as they are handed off.
//
// Thread-safety: Handle() may be called at any time from any thread; Start()
// and Stop() from the owner's thread. Handlers and `on_grpc_connection` run on
// listener threads, possibly concurrently with each other; they must return
// (a handler that blocks forever blocks Stop()). None runs after Stop()
// returns.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"

namespace cairn::http {

// The HTTP/2 connection preface every gRPC client sends first (RFC 9113 3.4).
inline constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET"
  std::string target;  // as sent: "/health?exclude=NOSPACE"
  std::string path;    // "/health" (not percent-decoded)
  std::string query;   // "exclude=NOSPACE" (raw, without '?')
  HeaderList headers;  // in arrival order, names as sent
  std::string body;
  std::string remote_address;  // "127.0.0.1:53122"

  // The first header named `name` (ASCII case-insensitive), or "" if none.
  std::string_view Header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  HeaderList headers;  // extra headers; Content-Length and Connection are set here
};

using Handler = std::function<HttpResponse(const HttpRequest&)>;

class ClientListener {
 public:
  struct Options {
    // Address to bind: an IP literal or a name ("localhost"); "" or "0.0.0.0"
    // for all IPv4 interfaces, "::" for all. Default: "127.0.0.1".
    std::string host = "127.0.0.1";
    // 0 picks an ephemeral port; read it back with port(). Default: 2379.
    uint16_t port = 2379;
    // Connections being classified or served as HTTP/1.x at once; more are
    // closed right after accept. Handed-off gRPC connections do not count.
    // Default: 512.
    size_t max_connections = 512;
    // Request line plus headers. Default: 1 MiB (Go's DefaultMaxHeaderBytes).
    size_t max_header_bytes = 1 << 20;
    // Request body; larger requests get 413. Default: 2 MiB (etcd's 1.5 MiB
    // --max-request-bytes plus its 512 KiB gRPC overhead).
    size_t max_body_bytes = 2 << 20;
    // Bound on the whole read of one request, from the moment the listener
    // starts waiting for it (so it also bounds keep-alive idle time and the
    // protocol sniff). Default: 30 s.
    std::chrono::milliseconds read_timeout{30000};
    // Bound on writing one response. Default: 30 s.
    std::chrono::milliseconds write_timeout{30000};
    // For --listen-metrics-urls: serve only HTTP/1.x and close any connection
    // that opens with the HTTP/2 preface. Default: false.
    bool http_only = false;
    // Receives each HTTP/2 connection, preface unread. The fd is non-blocking,
    // close-on-exec, TCP_NODELAY; the callback takes ownership of it (the
    // server passes it to grpc::AddInsecureChannelFromFd). If empty, HTTP/2
    // connections are closed. Called on a listener thread.
    std::function<void(int fd)> on_grpc_connection;
    // Added to every HTTP response, including 404s (etcd adds CORS headers on
    // its client URL). Default: none.
    HeaderList default_headers;

    Status Validate() const;
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
  // Responses are buffered whole; streaming bodies are not supported.
  void Handle(std::string method, std::string path, Handler handler);

  // Binds (SO_REUSEADDR), listens and starts the accept thread.
  // REQUIRES: called at most once.
  Status Start();

  // The bound port. REQUIRES: Start() returned ok.
  uint16_t port() const { return bound_port_; }

  // Connections being classified or served as HTTP/1.x right now.
  size_t active_connections() const;

  // Closes the listening socket, ends idle HTTP/1.x connections (a request
  // being handled finishes and gets its response first) and joins every
  // thread. Idempotent.
  void Stop();

 private:
  enum class Protocol { kHttp1, kHttp2, kClosed };
  struct Route {
    std::map<std::string, Handler> by_method;
  };
  struct Connection {
    int fd = -1;  // -1 once closed or handed off: Stop() must not touch it
    std::thread thread;
  };

  void AcceptLoop();
  void ReapFinished();
  void ServeConnection(uint64_t id, int fd, std::string remote_address);
  Protocol DetectProtocol(int fd);
  void ServeHttp1(int fd, const std::string& remote_address);
  HttpResponse Dispatch(const HttpRequest& request);
  // Drops the connection from the set Stop() shuts down; false if stopping.
  bool ReleaseConnection(uint64_t id);
  void FinishConnection(uint64_t id);

  const Options options_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd that ends AcceptLoop's poll
  uint16_t bound_port_ = 0;
  std::thread accept_thread_;
  std::atomic<bool> stopping_{false};
  bool started_ = false;  // owner thread only

  std::shared_mutex routes_mu_;
  std::map<std::string, Route> routes_;  // GUARDED_BY(routes_mu_), key: path

  mutable std::mutex mu_;
  uint64_t next_connection_id_ = 1;             // GUARDED_BY(mu_)
  std::map<uint64_t, Connection> connections_;  // GUARDED_BY(mu_)
  std::vector<uint64_t> finished_;              // GUARDED_BY(mu_), to join
  size_t live_connections_ = 0;                 // GUARDED_BY(mu_)
};

}  // namespace cairn::http
