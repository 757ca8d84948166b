// The plain request / response values HTTP/1.x handlers see on the client
// port. Values only: no I/O, no Beast types.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cairn::http {

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

// The way back to the client for a response given later, from any thread:
// whole (Send) or as a stream of parts (Begin, Write..., End), written with
// chunked transfer encoding. The first of Send or Begin wins; calls after
// the response is over, or after the connection closed, do nothing. A
// writer dropped before answering answers 500.
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  virtual void Send(HttpResponse response) = 0;
  // Starts a streamed response with `head`'s status, content type and headers
  // (its body is ignored). False if the connection is gone.
  virtual bool Begin(const HttpResponse& head) = 0;
  // One part. False if the connection is gone, or when the client reads so
  // slowly that the listener's bound on unsent bytes would be passed (the
  // part is then dropped): the caller gives up and Ends.
  virtual bool Write(std::string_view bytes) = 0;
  virtual void End() = 0;
  // `callback` runs once when the connection closes before the response is
  // over (the client went away, a write timed out, the listener stopped);
  // at once if that already happened. It runs on the listener's event loop
  // (or the caller's thread) and must be quick: cancel work, nothing more.
  virtual void OnClose(std::function<void()> callback) = 0;
};

// A handler that answers through `writer`, now or later; it must return
// quickly (it runs on a handler thread).
using AsyncHandler = std::function<void(const HttpRequest&, std::shared_ptr<ResponseWriter> writer)>;

// A plain-text response as Go's http.Error writes it.
HttpResponse TextResponse(int status, std::string body);

}  // namespace cairn::http
