// kiln_node_tests: runs the ONNX backend node tests (onnx/backend/test/data/node/<case>/) through Kiln's
// importer and reference executor and prints per-operator pass counts. See docs/CONFORMANCE.md.
//
// Each case runs in a forked child so that a crash or a hang in one kernel is reported against its case
// instead of ending the whole run.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "conformance/node_case.h"
#include "ir/op_kind.h"
#include "ops/registry.h"

#ifndef KILN_ONNX_NODE_TEST_DIR
#define KILN_ONNX_NODE_TEST_DIR ""
#endif
#ifndef KILN_KNOWN_FAILURES_FILE
#define KILN_KNOWN_FAILURES_FILE ""
#endif

namespace kiln::conformance {
namespace {

namespace fs = std::filesystem;

struct Options {
  std::string data_dir = KILN_ONNX_NODE_TEST_DIR;
  std::string known_failures = KILN_KNOWN_FAILURES_FILE;
  std::string filter;
  bool verbose = false;
  bool list_unclaimed = false;
  bool fork = true;
  int timeout_s = 60;
  RunMode mode = RunMode::kReference;
};

constexpr const char* kUsage =
    "usage: kiln_node_tests [--data-dir DIR] [--filter SUBSTRING] [--verbose] [--list-unclaimed]\n"
    "                       [--known-failures FILE] [--timeout SECONDS] [--no-fork] [--engine]\n"
    "Runs the ONNX backend node tests in DIR (onnx/backend/test/data/node) through Kiln's reference\n"
    "executor, or with --engine through build, serialize, load and the plan executor. Exits 1 if a case whose ops Kiln claims fails and is not in the known-failures file.\n";

bool ParseArgs(int argc, char** argv, Options& opt) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) {
        std::cerr << "kiln_node_tests: " << a << " needs a value\n";
        return false;
      }
      out = argv[++i];
      return true;
    };
    std::string v;
    if (a == "--data-dir") {
      if (!value(opt.data_dir)) return false;
    } else if (a == "--filter") {
      if (!value(opt.filter)) return false;
    } else if (a == "--known-failures") {
      if (!value(opt.known_failures)) return false;
    } else if (a == "--timeout") {
      if (!value(v)) return false;
      opt.timeout_s = std::atoi(v.c_str());
      if (opt.timeout_s <= 0) {
        std::cerr << "kiln_node_tests: --timeout must be a positive number of seconds\n";
        return false;
      }
    } else if (a == "--verbose" || a == "-v") {
      opt.verbose = true;
    } else if (a == "--list-unclaimed") {
      opt.list_unclaimed = true;
    } else if (a == "--engine") {
      opt.mode = RunMode::kEngine;
    } else if (a == "--no-fork") {
      opt.fork = false;
    } else if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else {
      std::cerr << "kiln_node_tests: unknown argument '" << a << "'\n" << kUsage;
      return false;
    }
  }
  return true;
}

// "case_name  reason..." per line; '#' starts a comment. A case listed without a reason is an error.
bool ReadKnownFailures(const std::string& path, std::map<std::string, std::string>& out) {
  if (path.empty()) return true;
  std::ifstream in(path);
  if (!in) {
    std::cerr << "kiln_node_tests: cannot open known-failures file " << path << "\n";
    return false;
  }
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    line = line.substr(0, line.find('#'));
    const size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos) continue;
    const size_t name_end = line.find_first_of(" \t", start);
    const size_t reason = name_end == std::string::npos ? name_end : line.find_first_not_of(" \t", name_end);
    if (reason == std::string::npos) {
      std::cerr << path << ":" << line_no << ": a known failure needs a reason after the case name\n";
      return false;
    }
    out[line.substr(start, name_end - start)] = line.substr(reason);
  }
  return true;
}

std::string SignalName(int sig) {
  const char* s = strsignal(sig);
  return std::to_string(sig) + (s ? std::string(" (") + s + ")" : "");
}

constexpr char kDetailSeparator = '\x1f';

// Runs the case in a child process, so crashes and hangs become failures of this case.
CaseResult RunIsolated(const CaseInfo& info, int timeout_s, RunMode mode) {
  int fds[2];
  if (pipe(fds) != 0) return Failed("pipe failed: " + std::string(std::strerror(errno)));
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return Failed("fork failed: " + std::string(std::strerror(errno)));
  }
  if (pid == 0) {
    close(fds[0]);
    const CaseResult r = RunCase(info, mode);
    const std::string msg =
        std::to_string(static_cast<int>(r.outcome)) + r.message + kDetailSeparator + r.detail;
    size_t done = 0;
    while (done < msg.size()) {
      const ssize_t n = write(fds[1], msg.data() + done, msg.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    close(fds[1]);
    // exit, not _exit: LeakSanitizer checks for leaks at exit in the sanitizer build.
    std::exit(0);
  }
  close(fds[1]);
  std::string data;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                            std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buf[4096];
    const ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return Failed("timed out after " + std::to_string(timeout_s) + " s");
  if (WIFSIGNALED(status)) return Failed("crashed: signal " + SignalName(WTERMSIG(status)));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || data.empty()) {
    return Failed("the case's process exited with status " + std::to_string(WEXITSTATUS(status)) +
                  (data.empty() ? " without a result" : " after its result") +
                  " (a sanitizer report? see its stderr above)");
  }
  const int outcome = data[0] - '0';
  if (outcome < 0 || outcome > static_cast<int>(Outcome::kSkip)) {
    return Failed("garbled result from the case's process");
  }
  const size_t sep = data.find(kDetailSeparator);
  if (sep == std::string::npos) return Failed("garbled result from the case's process");
  return {static_cast<Outcome>(outcome), data.substr(1, sep - 1), data.substr(sep + 1)};
}

struct OpStats {
  int passed = 0;
  int run = 0;  // run and not skipped
  std::map<std::string, int> skipped;  // reason -> cases
};

std::string Shorten(const std::string& s, size_t max_len) {
  return s.size() <= max_len ? s : s.substr(0, max_len) + "...";
}

int Main(int argc, char** argv) {
  Options opt;
  if (!ParseArgs(argc, argv, opt)) return 2;
  if (opt.data_dir.empty() || !fs::is_directory(opt.data_dir)) {
    std::cerr << "kiln_node_tests: node-test directory '" << opt.data_dir
              << "' not found; pass --data-dir (onnx/backend/test/data/node of the onnx pip package)\n";
    return 2;
  }
  std::map<std::string, std::string> known;
  if (!ReadKnownFailures(opt.known_failures, known)) return 2;

  std::set<std::string> claimed;
  for (OpKind op : OpRegistry::Global().RegisteredOps()) claimed.insert(std::string(OpKindName(op)));

  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(opt.data_dir)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || !fs::exists(e.path() / "model.onnx")) continue;
    if (!opt.filter.empty() && name.find(opt.filter) == std::string::npos) continue;
    dirs.push_back(e.path().string());
  }
  std::sort(dirs.begin(), dirs.end());

  std::map<std::string, OpStats> stats;           // by owning op
  std::map<std::string, int> unclaimed;           // op -> cases it keeps from running
  std::vector<std::pair<std::string, std::string>> failures, known_failed;
  std::vector<std::string> unexpected_passes;
  int not_run = 0, passed = 0, run = 0, skipped = 0;

  for (const std::string& dir : dirs) {
    const std::string name = fs::path(dir).filename().string();
    auto info = InspectCase(dir);
    if (!info.ok()) {
      failures.emplace_back(name, "cannot read the case: " + info.status().ToString());
      ++run;
      continue;
    }
    bool all_claimed = !info->ops.empty();
    for (const std::string& op : info->ops) {
      if (!claimed.count(op)) {
        all_claimed = false;
        ++unclaimed[op];
      }
    }
    if (!all_claimed) {
      ++not_run;
      if (opt.verbose) std::cout << "NOT RUN " << name << "\n";
      continue;
    }
    CaseResult r = opt.fork ? RunIsolated(*info, opt.timeout_s, opt.mode) : RunCase(*info, opt.mode);
    // Paths inside the case's folder are named relative to it: "model.onnx", not the whole path.
    for (std::string* text : {&r.message, &r.detail}) {
      for (size_t at; (at = text->find(dir + "/")) != std::string::npos;) text->erase(at, dir.size() + 1);
    }
    OpStats& s = stats[info->owner];
    const auto k = known.find(name);
    switch (r.outcome) {
      case Outcome::kSkip:
        ++s.skipped[r.message];
        ++skipped;
        if (opt.verbose) std::cout << "SKIP    " << name << ": " << r.message << " [" << r.detail << "]\n";
        break;
      case Outcome::kPass:
        ++s.passed;
        ++s.run;
        ++passed;
        ++run;
        if (k != known.end()) unexpected_passes.push_back(name);
        if (opt.verbose) std::cout << "PASS    " << name << "\n";
        break;
      case Outcome::kFail:
        ++s.run;
        ++run;
        (k != known.end() ? known_failed : failures).emplace_back(name, r.message);
        if (opt.verbose) std::cout << "FAIL    " << name << ": " << r.message << "\n";
        break;
    }
  }

  // Claimed ops with no node test still get a line, so a gap in coverage is visible.
  if (opt.filter.empty()) {
    for (const std::string& op : claimed) {
      if (op.rfind("kiln.", 0) != 0) stats[op];
    }
  }
  std::cout << "\nPer-operator results (passed/run; skipped cases are not run):\n";
  auto print_op = [&](const std::string& op, const OpStats& s) {
    std::cout << "  " << op << ": " << s.passed << "/" << s.run;
    if (s.run == 0 && s.skipped.empty()) std::cout << " (no node tests)";
    if (!s.skipped.empty()) {
      int n = 0;
      for (const auto& [reason, count] : s.skipped) n += count;
      std::cout << ", skipped " << n << " (";
      bool first = true;
      for (const auto& [reason, count] : s.skipped) {
        std::cout << (first ? "" : "; ") << reason << ": " << count;
        first = false;
      }
      std::cout << ")";
    }
    std::cout << "\n";
  };
  for (const auto& [op, s] : stats) {
    if (op != kCompositeOwner) print_op(op, s);
  }
  if (stats.count(kCompositeOwner)) print_op(kCompositeOwner, stats[kCompositeOwner]);

  if (opt.list_unclaimed) {
    std::vector<std::pair<int, std::string>> by_count;
    for (const auto& [op, n] : unclaimed) by_count.emplace_back(-n, op);
    std::sort(by_count.begin(), by_count.end());
    std::cout << "\nOps in the test data that Kiln does not claim (" << by_count.size()
              << "), with the cases each keeps from running:\n";
    for (const auto& [neg, op] : by_count) std::cout << "  " << op << ": " << -neg << "\n";
  }

  std::cout << "\nOverall: " << passed << "/" << run << " passed, " << failures.size() << " failed ("
            << known_failed.size() << " more known), " << skipped << " skipped, " << not_run
            << " not run (they use an op Kiln does not claim), " << dirs.size() << " cases in all\n";
  if (!failures.empty()) {
    std::cout << "\nFailing cases (" << failures.size() << "):\n";
    for (const auto& [name, msg] : failures) {
      std::cout << "  " << name << ": " << Shorten(msg, opt.verbose ? 100000 : 300) << "\n";
    }
  }
  if (!known_failed.empty()) {
    std::cout << "\nKnown failures (" << known_failed.size() << ", listed in " << opt.known_failures
              << "):\n";
    for (const auto& [name, msg] : known_failed) {
      std::cout << "  " << name << " [" << known[name] << "]: " << Shorten(msg, opt.verbose ? 100000 : 300)
                << "\n";
    }
  }
  if (!unexpected_passes.empty()) {
    std::cout << "\nListed as known failures but passing now (remove them from the list):\n";
    for (const std::string& name : unexpected_passes) std::cout << "  " << name << "\n";
  }
  return failures.empty() ? 0 : 1;
}

}  // namespace
}  // namespace kiln::conformance

int main(int argc, char** argv) { return kiln::conformance::Main(argc, argv); }
