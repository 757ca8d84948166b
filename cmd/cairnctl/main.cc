// cairnctl: offline administration of cairn data (see commands.h).
#include <CLI/CLI.hpp>
#include <iostream>

#include "commands.h"

namespace cairn::ctl {

int ExitWithError(int code, const std::string& message) {
  std::cerr << "Error: " << message << std::endl;
  return code;
}

}  // namespace cairn::ctl

int main(int argc, char** argv) {
  using namespace cairn::ctl;
  CLI::App app{"cairnctl: offline administration of cairn data directories and snapshots"};
  app.require_subcommand(1);
  // Global flags may follow the subcommand (`cairnctl snapshot status f -w json`).
  app.fallthrough();
  GlobalOptions global;
  app.add_option("-w,--write-out", global.write_out, "Output format: simple, table or json")
      ->check(CLI::IsMember({"simple", "table", "json"}))
      ->capture_default_str();

  // Every command of the tool; a new one is a file with its Add function.
  static constexpr AddCommandFn kCommands[] = {
      AddSnapshotCommand,
      AddVersionCommand,
  };
  int exit_code = kExitSuccess;
  for (AddCommandFn add : kCommands) add(app, global, &exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end the parse with a "success" code.
    int rc = app.exit(e);
    return rc == 0 ? kExitSuccess : kExitBadArgs;
  }
  return exit_code;
}
