// libFuzzer target for the plan loader: any bytes must give a plan or a clean error, never a crash, a
// hang or an unbounded allocation. The checksum is skipped on one pass so that mutations reach the parser;
// the target check is skipped so a plan from another machine in the corpus is still parsed.
//
// Seed corpus: plans written by `kiln build` (or the unit tests' plans) in a directory passed to the fuzzer.
#include <cstddef>
#include <cstdint>

#include "plan/plan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::plan::ReadOptions lax;
  lax.verify_checksum = false;
  lax.check_target = false;
  auto plan = kiln::plan::ReadPlanBytes(data, size, lax);
  if (plan.ok()) {
    // What parsed must serialize again.
    auto bytes = kiln::plan::SerializePlan(*plan);
    if (!bytes.ok()) __builtin_trap();
  }
  (void)kiln::plan::ReadPlanBytes(data, size);
  return 0;
}
