// kiln: the command-line front end. Every failure ends as one line "kiln: error: <message>" on stderr with
// exit code 1 (2 for a usage error); nothing escapes as an exception or a crash.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "cli_common.h"
#include "cmd_build.h"
#include "cmd_plan.h"
#include "commands.h"

int main(int argc, char** argv) {
  using namespace kiln::cli;
  CLI::App app{"Kiln: a deep-learning inference engine for ONNX models", "kiln"};
  app.require_subcommand(1);
  app.set_version_flag("--version", KILN_VERSION);
  app.footer("Run 'kiln COMMAND --help' for a command's options.\n");

  int exit_code = kExitOk;
  AddInfoCommand(app, exit_code);
  AddRunCommand(app, exit_code);
  AddClassifyCommand(app, exit_code);
  AddBuildCommand(app, exit_code);
  AddInspectCommand(app, exit_code);
  AddBenchCommand(app, exit_code);
  AddServeCommand(app, exit_code);

  // CLI11 would report an unknown command as a missing one; name it instead.
  std::string command;
  if (argc > 1 && argv[1][0] != '-') {
    command = argv[1];
    bool known = false;
    std::string names;
    for (const CLI::App* sub : app.get_subcommands({})) {
      known = known || sub->get_name() == command;
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "kiln: error: unknown command '%s' (commands: %s)\nRun 'kiln --help' for usage.\n",
                   command.c_str(), names.c_str());
      return kExitUsage;
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const std::string help = command.empty() ? "kiln --help" : "kiln " + command + " --help";
    std::fprintf(stderr, "kiln: error: %s\nRun '%s' for usage.\n", e.what(), help.c_str());
    return kExitUsage;
  } catch (const std::bad_alloc&) {
    return Fail("out of memory");
  } catch (const std::exception& e) {
    return Fail(std::string("internal error: ") + e.what());
  }
  return exit_code;
}
