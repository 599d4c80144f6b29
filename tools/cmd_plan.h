// `kiln inspect` and `kiln bench` (the plan and runtime commands). Like the other commands, each
// registers its options with CLI11 and sets `exit_code` when it runs.
#pragma once

namespace CLI {
class App;
}

namespace kiln::cli {

void AddInspectCommand(CLI::App& app, int& exit_code);
void AddBenchCommand(CLI::App& app, int& exit_code);

}  // namespace kiln::cli
