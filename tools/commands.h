// The `kiln` subcommands. Each Add*Command registers its options with CLI11 and sets `exit_code` when it
// runs.
#pragma once

namespace CLI {
class App;
}

namespace kiln::cli {

void AddInfoCommand(CLI::App& app, int& exit_code);
void AddRunCommand(CLI::App& app, int& exit_code);
void AddClassifyCommand(CLI::App& app, int& exit_code);
void AddServeCommand(CLI::App& app, int& exit_code);

}  // namespace kiln::cli
