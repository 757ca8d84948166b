// `cairnctl version`, worded as `etcdctl version`.
#include <iostream>

#include "commands.h"

namespace cairn::ctl {

void AddVersionCommand(CLI::App& app, const GlobalOptions& global, int* exit_code) {
  CLI::App* cmd = app.add_subcommand("version", "Prints the version of cairnctl");
  cmd->callback([exit_code] {
    std::cout << "cairnctl version: " << kCairnctlVersion << "\n"
              << "API version: " << kApiVersion << std::endl;
    *exit_code = kExitSuccess;
  });
  app.set_version_flag("--version", std::string("cairnctl version: ") + kCairnctlVersion);
}

}  // namespace cairn::ctl
