#include "api/parsed_request.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

namespace cairn::api {

namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::internal::WireFormatLite;

// The deepest nesting of messages in `input` read as `type`, or -1 if the
// wire format breaks before `cap` levels are seen. Walks with an explicit
// stack rather than recursion: it runs on bytes nested too deep to parse.
int NestingDepth(google::protobuf::io::CodedInputStream* input, const Descriptor* type, int cap) {
  struct Frame {
    const Descriptor* type;
    google::protobuf::io::CodedInputStream::Limit limit;
  };
  std::vector<Frame> stack;
  const Descriptor* current = type;
  int deepest = 0;
  while (true) {
    const uint32_t tag = input->ReadTag();
    if (tag == 0) {  // the end of the innermost message, or bytes that are no tag
      if (stack.empty()) return deepest;
      if (input->BytesUntilLimit() != 0) return -1;
      input->PopLimit(stack.back().limit);
      stack.pop_back();
      current = stack.empty() ? type : stack.back().type;
      continue;
    }
    const FieldDescriptor* field = current->FindFieldByNumber(static_cast<int>(tag >> 3));
    if (field != nullptr && field->type() == FieldDescriptor::TYPE_MESSAGE &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      uint32_t length = 0;
      if (!input->ReadVarint32(&length)) return -1;
      if (length > static_cast<uint32_t>(input->BytesUntilTotalBytesLimit())) return -1;
      stack.push_back({field->message_type(), input->PushLimit(static_cast<int>(length))});
      current = field->message_type();
      deepest = std::max(deepest, static_cast<int>(stack.size()));
      if (deepest > cap) return deepest;
      continue;
    }
    if (!WireFormatLite::SkipField(input, tag)) return -1;
  }
}

}  // namespace

bool ParsedRequest::ParseInto(int recursion_limit, google::protobuf::Message* out,
                              ParseError* error) const {
  bool ok = false;
  {
    // Reads the slices in place: a request may be MiBs.
    grpc::ProtoBufferReader reader(&bytes_);
    if (!reader.status().ok()) {
      error->reason = reader.status().error_message();
      return false;
    }
    google::protobuf::io::CodedInputStream input(&reader);
    input.SetRecursionLimit(recursion_limit);
    ok = out->ParseFromCodedStream(&input) && input.ConsumedEntireMessage();
  }
  if (!ok) {
    // Protobuf C++ gives no reason, so find out whether it was the nesting;
    // grpc-go's decoder's reasons ("unexpected EOF", "proto: wrong wireType
    // ...") cannot be reproduced.
    grpc::ProtoBufferReader reader(&bytes_);
    google::protobuf::io::CodedInputStream input(&reader);
    error->too_deep = NestingDepth(&input, out->GetDescriptor(), recursion_limit) > recursion_limit;
    error->reason = error->too_deep
                        ? "proto: " + out->GetDescriptor()->full_name() + " nested deeper than " +
                              std::to_string(recursion_limit) + " messages"
                        : "proto: cannot parse invalid wire-format data as " +
                              out->GetDescriptor()->full_name();
  }
  bytes_.Clear();
  return ok;
}

grpc::Status UnmarshalError(const std::string& reason) {
  return grpc::Status(grpc::StatusCode::INTERNAL, "grpc: error unmarshalling request: " + reason);
}

grpc::Status StreamUnmarshalError(const std::string& reason) {
  return grpc::Status(grpc::StatusCode::INTERNAL,
                      "grpc: failed to unmarshal the received message " + reason);
}

}  // namespace cairn::api
