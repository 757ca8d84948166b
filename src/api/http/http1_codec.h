// HTTP/1.x framing for the client listener, driven by bytes rather than by a
// socket so the listener's event loop can feed it whatever has arrived and
// never block: Http1RequestReader turns received bytes into HttpRequests
// (Beast's parser underneath), SerializeResponse turns an HttpResponse into
// the bytes to send.
//
// Thread-safety: an Http1RequestReader is used by one thread at a time.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "api/http/http_message.h"

namespace cairn::http {

class Http1RequestReader {
 public:
  enum class State {
    kNeedMore,  // the request is incomplete; Feed() more
    kDone,      // a whole request is ready: TakeRequest()
    kError,     // unreadable: send error_response() if any, then close
  };

  // Limits on the request line plus headers and on the body; both > 0.
  Http1RequestReader(size_t max_header_bytes, size_t max_body_bytes);
  ~Http1RequestReader();
  Http1RequestReader(const Http1RequestReader&) = delete;
  Http1RequestReader& operator=(const Http1RequestReader&) = delete;

  // Appends bytes received from the peer and parses as far as they go.
  // Bytes past the end of a complete request stay buffered for the next one
  // (pipelining). Memory held is bounded by about max_header_bytes plus the
  // body plus the last `bytes`. REQUIRES: state() is kNeedMore.
  State Feed(std::string_view bytes);
  // The peer closed its side. kError (nothing to answer) unless a request
  // is complete.
  State FeedEof();
  State state() const { return state_; }

  // True once the current request has sent any byte: a connection waiting
  // for its next request with started() false is idle.
  bool started() const;
  // True exactly once per request: its headers are complete, it is HTTP/1.1
  // with "Expect: 100-continue" and its body has not arrived; the caller
  // should send kContinueResponse (curl waits a second for it otherwise).
  bool TakeContinueRequest();

  // REQUIRES: state() is kDone. Moves the request out; `keep_alive` and
  // `version` and `head` describe how to answer it. Then call Next().
  HttpRequest TakeRequest(std::string remote_address);
  bool keep_alive() const { return keep_alive_; }
  unsigned version() const { return version_; }
  bool head() const { return head_; }

  // Starts the next request on the same connection and parses any buffered
  // pipelined bytes. REQUIRES: state() is kDone.
  State Next();

  // REQUIRES: state() is kError. The response owed for the failure (413,
  // 431, 400), or none when the peer just went away.
  const std::optional<HttpResponse>& error_response() const { return error_response_; }

 private:
  struct Parser;
  State Parse();

  const size_t max_header_bytes_;
  const size_t max_body_bytes_;
  std::unique_ptr<Parser> parser_;
  std::string pending_;  // received, not yet consumed by the parser
  State state_ = State::kNeedMore;
  bool continue_checked_ = false;
  bool keep_alive_ = false;
  unsigned version_ = 11;
  bool head_ = false;
  std::optional<HttpResponse> error_response_;
};

inline constexpr std::string_view kContinueResponse = "HTTP/1.1 100 Continue\r\n\r\n";

// The bytes of `response` with Content-Length, Connection and `defaults`
// (set first, so the handler's own headers win). A HEAD answer gets the
// headers only. Header values with line breaks are dropped so a handler
// cannot split the response.
std::string SerializeResponse(const HttpResponse& response, const HeaderList& defaults,
                              unsigned version, bool keep_alive, bool head_only);

// The head of a streamed response: `Transfer-Encoding: chunked` on HTTP/1.1;
// on HTTP/1.0 neither length nor chunks (the body ends when the connection
// closes, so keep_alive is ignored).
std::string SerializeStreamHead(const HttpResponse& head, const HeaderList& defaults, unsigned version,
                                bool keep_alive);
// One chunk of `bytes` (nothing for empty bytes, which would end the body),
// and the last chunk.
std::string SerializeChunk(std::string_view bytes);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

}  // namespace cairn::http
