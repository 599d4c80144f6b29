// kiln build: imports a model, runs the optimizer pipeline (src/passes/pipeline.h) and, with --report,
// prints what each pass changed; the last line of the report is `layers: BEFORE -> AFTER`.
#pragma once

namespace CLI {
class App;
}

namespace kiln::cli {

// Registers `kiln build`; sets `exit_code` when it runs (same contract as the other Add*Command).
void AddBuildCommand(CLI::App& app, int& exit_code);

}  // namespace kiln::cli
