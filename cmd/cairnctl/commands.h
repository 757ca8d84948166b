// cairnctl: the offline administration tool of cairn, the counterpart of
// etcdutl (and of etcdctl's offline commands). Online commands belong to the
// real etcdctl, which talks to cairn as to etcd.
//
// Each command lives in its own file and adds itself to the CLI11 app through
// one Add*Command function listed in main.cc; flags are parsed into a plain
// options struct and the work runs in a Run* function that returns the exit
// code. Output follows etcdctl: -w/--write-out picks simple, table or json;
// errors go to stderr as "Error: <message>".
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace cairn::ctl {

// cairnctl's release and the etcd API level cairn serves (api_context.h).
inline constexpr char kCairnctlVersion[] = "0.1.0";
inline constexpr char kApiVersion[] = "3.5";

// Exit codes as etcdctl's (ctlv3/command/error.go).
inline constexpr int kExitSuccess = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitBadArgs = 128;

// Flags every command accepts.
struct GlobalOptions {
  // -w, --write-out: "simple", "table" or "json". Default: simple.
  std::string write_out = "simple";
};

// Adds a command (and its subcommands) to `app`. `global` is filled by the
// parse before any callback runs; a callback stores its exit code in
// *exit_code.
using AddCommandFn = void (*)(CLI::App& app, const GlobalOptions& global, int* exit_code);

void AddSnapshotCommand(CLI::App& app, const GlobalOptions& global, int* exit_code);
void AddVersionCommand(CLI::App& app, const GlobalOptions& global, int* exit_code);

// Prints "Error: <message>" on stderr, as etcdctl does; returns `code`.
int ExitWithError(int code, const std::string& message);

}  // namespace cairn::ctl
