// The raw peer stream: Raft batches from one member to another on a plain
// TCP connection to an http:// peer URL, without gRPC. A gRPC stream write
// costs ~50 us and a hand-off to the thread that waits for it; here the raft
// thread writes a batch with one non-blocking send() (peer_transport.h), and
// one reader thread per connection hands what arrives to the Raft core.
// https:// peers keep cairnpb.Peer/Stream over gRPC; snapshots, probes and
// Members stay gRPC calls on the same port (the listener tells them apart by
// their first bytes, protocol_classifier.h).
//
// Wire format. The dialing member writes kPeerStreamMagic, then frames:
//
//   u32 LE payload length | u32 LE kind | u32 LE crc32c of the first 8 bytes
//   payload (kind 1: a serialized cairnpb.PeerBatch)
//
// The accepting member writes nothing back unless it refuses the stream:
// then one frame of kind 2 (a cairnpb.StreamRefusal, the same code and
// message as a refused gRPC stream) before it closes. The header's CRC makes
// a stream that lost bytes (a proxy that swallowed some) fail at once
// instead of waiting for a length read from the middle of a payload; TCP
// checks the payload.
//
// Thread-safety: FrameDecoder is not thread-safe. PeerStreamReceiver's
// methods are thread-safe; `deliver` runs on its reader threads, one call at
// a time per connection, and must not block for long.
#pragma once

#include <google/protobuf/message_lite.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cairnpb/peer.pb.h"
#include "common/status.h"

namespace cairn::peer {

inline constexpr size_t kFrameHeaderBytes = 12;
enum class FrameKind : uint32_t { kBatch = 1, kRefusal = 2 };

// Appends one frame holding `message` to `out`.
void AppendFrame(FrameKind kind, const google::protobuf::MessageLite& message, std::string* out);

class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_payload_bytes) : max_payload_bytes_(max_payload_bytes) {}
  void Feed(std::string_view bytes);
  enum class Result { kNeedMore, kFrame, kBad };
  // The next whole frame; `payload` is valid until the next Feed or Next.
  // kBad: a header with a bad CRC or a length over the maximum (`error`
  // says which); the stream is unusable.
  Result Next(FrameKind* kind, std::string_view* payload, std::string* error);

 private:
  size_t max_payload_bytes_;
  std::string buffer_;
  size_t pos_ = 0;
};

// Serves accepted raw peer streams: one reader thread per connection, at
// most `max_connections` at once (more are closed), and one connection per
// sending member (a newer one from the same member closes the older, so a
// connection a dead network left open does not hold a thread for ever).
class PeerStreamReceiver {
 public:
  // Checks and hands on one batch; a non-OK status refuses the stream.
  using Deliver = std::function<Status(cairnpb::PeerBatch* batch, const std::string& remote)>;
  PeerStreamReceiver(Deliver deliver, size_t max_frame_bytes, size_t max_connections = 64);
  ~PeerStreamReceiver();

  // Takes a connection whose kPeerStreamMagic is still unread.
  void Adopt(int fd);
  // Closes every connection and joins the readers; later ones are closed.
  void Stop();

 private:
  struct Connection {
    int fd = -1;
    std::string remote;
    uint64_t from = 0;  // the sending member, once its first batch is read
    bool done = false;  // GUARDED_BY(mu_): the reader returned
    std::thread thread;
  };
  void Serve(Connection* c);
  // Joins readers that returned. Called with mu_ held.
  void ReapLocked(std::vector<std::thread>* finished);

  const Deliver deliver_;
  const size_t max_frame_bytes_;
  const size_t max_connections_;
  std::mutex mu_;
  bool stopped_ = false;                                   // GUARDED_BY(mu_)
  std::vector<std::unique_ptr<Connection>> connections_;  // GUARDED_BY(mu_)
};

}  // namespace cairn::peer
