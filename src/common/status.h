// Status and Result<T>: expected failures as values.
//
// Codes are gRPC's canonical codes so that src/api/ can turn a Status into a
// wire error one to one; messages are etcd's exact strings (clients match on
// them). Nothing below src/api/ includes gRPC.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace cairn {

enum class Code : int {
  kOk = 0,
  kCanceled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;
  bool operator==(const Status& o) const { return code_ == o.code_ && message_ == o.message_; }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// Result<T>: a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  const T& value() const& { return std::get<0>(v_); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }
  Status status() const { return ok() ? Status() : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

// etcd's errors (etcdserver/api/v3rpc/rpctypes), with their codes and messages.
namespace errors {
Status EmptyKey();
Status KeyNotFound();
Status ValueProvided();
Status LeaseProvided();
Status TooManyOps();
Status DuplicateKey();
Status Compacted();
Status FutureRev();
Status NoSpace();
Status LeaseNotFound();
Status LeaseExist();
Status LeaseTTLTooLarge();
Status RequestTooLarge();
Status AuthNotEnabled();
// Auth (etcd's rpctypes: the same codes and texts).
Status RootUserNotExist();
Status RootRoleNotExist();
Status UserAlreadyExist();
Status UserEmpty();
Status UserNotFound();
Status RoleAlreadyExist();
Status RoleNotFound();
Status RoleEmpty();
Status AuthFailed();
Status PermissionNotGiven();
Status PermissionDenied();
Status RoleNotGranted();
Status PermissionNotGranted();
Status InvalidAuthToken();
Status InvalidAuthMgmt();
Status AuthOldRevision();
Status NoPasswordUser();  // etcd 3.5: not in rpctypes' map, code Unknown
Status MemberNotFound();
// Membership changes (etcd's rpctypes, same codes and texts).
Status MemberExist();
Status PeerURLExist();
Status MemberBadURLs();
Status NotEnoughStartedMembers();  // code Unknown, as etcd (not in its map)
Status Unhealthy();
Status MemberNotLearner();
Status LearnerNotReady();
Status TooManyLearners();
Status BadLeaderTransferee();
Status LeaderTransferTimeout();  // code Unknown, as etcd
Status Stopped();
Status Timeout();
Status LeaderChanged();
// What etcd answers for a proposal that never reached Raft (no leader until
// the request timeout): grpc-go's context error, code Unknown.
Status ContextDeadlineExceeded();
Status NoLeader();
Status NotLeader();
Status TooManyRequests();
Status Corrupt();
Status NotCapable();
Status Internal(std::string message);
}  // namespace errors

}  // namespace cairn
