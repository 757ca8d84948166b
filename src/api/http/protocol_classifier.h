// Decides what a client-port connection speaks from its first bytes, as
// etcd's cmux matchers do, without consuming them: the listener peeks and
// calls ClassifyPrefix() each time more bytes have arrived.
//
// The order of the checks is the order a future TLS layer needs: a TLS
// ClientHello is recognized first (record type 0x16, version major 3), so the
// listener can terminate TLS there and classify the decrypted stream with the
// same function. Until that layer exists the listener serves kTls as HTTP/1,
// which answers it with 400 as before.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string_view>

namespace cairn::http {

// The HTTP/2 connection preface every gRPC client sends first (RFC 9113 3.4).
inline constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// What a cairn member writes first on a raw peer stream (src/peer/
// peer_stream.h) to another member's plain http:// peer port. It starts with
// a NUL byte: no HTTP method, TLS record or HTTP/2 preface does.
inline constexpr std::string_view kPeerStreamMagic("\0CAIRNP1", 8);

// The most bytes ClassifyPrefix() ever needs to decide.
inline constexpr size_t kMaxClassifyBytes = kHttp2Preface.size();

enum class ConnectionProtocol {
  kNeedMore,  // every byte so far is a prefix of the HTTP/2 preface
  kHttp2,     // the whole 24-byte preface
  kHttp1,     // anything else
  kTls,       // starts like a TLS handshake record (RFC 8446 5.1)
  kPeerStream,  // the whole kPeerStreamMagic (a cairn member's raft stream)
};

// `first_bytes`: the connection's first bytes as peeked, at least one.
ConnectionProtocol ClassifyPrefix(std::string_view first_bytes);

}  // namespace cairn::http
