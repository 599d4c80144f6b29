// Optimization profiles: resolving the user's (or the default) ranges for every runtime input, and
// checking actual shapes against them.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/engine.h"
#include "kiln/status.h"
#include "plan/plan.h"

namespace kiln::build {

// One resolved profile per requested profile (one default profile if none is requested). Every runtime
// input gets a range: the one the profile names, else its static dims, with a dynamic leading dim set to
// kDefaultBatchMin..kDefaultBatchOpt..kDefaultBatchMax. Any other dynamic dim must be given.
Expected<std::vector<plan::Profile>> ResolveProfiles(const Graph& graph,
                                                     const std::vector<OptimizationProfile>& requested);

// Ok if `dims` lie within `range` (same rank, min <= dim <= max everywhere); else a message saying which
// dim is outside which range.
Status CheckInProfile(const plan::InputRange& range, const std::vector<int64_t>& dims, int profile_index);

// "1x3x224x224"
std::string DimsToString(const std::vector<int64_t>& dims);

}  // namespace kiln::build
