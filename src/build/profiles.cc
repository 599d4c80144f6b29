#include "build/profiles.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace kiln::build {
namespace {

Expected<std::vector<int64_t>> ParseDims(const std::string& text, const std::string& entry) {
  std::vector<int64_t> dims;
  if (text.empty()) return InvalidArgument("shape entry '" + entry + "' has an empty shape");
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t x = text.find('x', pos);
    if (x == std::string::npos) x = text.size();
    const std::string part = text.substr(pos, x - pos);
    if (part.empty() || part.size() > 15 ||
        !std::all_of(part.begin(), part.end(), [](unsigned char c) { return std::isdigit(c); })) {
      return InvalidArgument("shape entry '" + entry + "': '" + part +
                             "' is not a size (write e.g. 1x3x224x224)");
    }
    dims.push_back(std::stoll(part));
    pos = x + 1;
    if (x == text.size()) break;
  }
  return dims;
}

}  // namespace

std::string DimsToString(const std::vector<int64_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "x" : "") + std::to_string(dims[i]);
  return s.empty() ? "scalar" : s;
}

Expected<std::vector<plan::Profile>> ResolveProfiles(const Graph& graph,
                                                     const std::vector<OptimizationProfile>& requested) {
  std::vector<OptimizationProfile> profiles = requested;
  if (profiles.empty()) profiles.emplace_back();
  std::vector<plan::Profile> out;
  for (size_t p = 0; p < profiles.size(); ++p) {
    const std::string where = profiles.size() > 1 ? "profile " + std::to_string(p) + ": " : "";
    std::set<std::string> used;
    plan::Profile resolved;
    for (const Value* in : graph.inputs()) {
      if (in->is_constant()) continue;
      plan::InputRange r;
      r.name = in->name();
      auto it = profiles[p].inputs.find(in->name());
      if (it != profiles[p].inputs.end()) {
        used.insert(in->name());
        const InputProfile& ip = it->second;
        r.min = ip.min;
        r.opt = ip.opt;
        r.max = ip.max;
        if (r.min.size() != r.opt.size() || r.opt.size() != r.max.size()) {
          return InvalidArgument(where + "input '" + r.name +
                                 "': min, opt and max shapes have different ranks");
        }
        if (in->shape() && in->shape()->rank() != r.min.size()) {
          return InvalidArgument(where + "input '" + r.name + "' has shape " + in->shape()->ToString() +
                                 " (rank " + std::to_string(in->shape()->rank()) +
                                 "), the profile gives rank " + std::to_string(r.min.size()));
        }
        for (size_t d = 0; d < r.min.size(); ++d) {
          if (r.min[d] < 0 || r.min[d] > r.opt[d] || r.opt[d] > r.max[d]) {
            return InvalidArgument(where + "input '" + r.name + "' dim " + std::to_string(d) +
                                   ": the profile needs 0 <= min <= opt <= max, got " +
                                   std::to_string(r.min[d]) + ".." + std::to_string(r.opt[d]) + ".." +
                                   std::to_string(r.max[d]));
          }
          if (!in->shape()) continue;
          const Dim& dim = (*in->shape())[d];
          if (dim.is_static() && (r.min[d] != dim.value() || r.max[d] != dim.value())) {
            return InvalidArgument(where + "input '" + r.name + "' dim " + std::to_string(d) +
                                   " is fixed at " + std::to_string(dim.value()) +
                                   " in the model; the profile asks for " + std::to_string(r.min[d]) + ".." +
                                   std::to_string(r.max[d]));
          }
        }
      } else {
        if (!in->shape()) {
          return InvalidArgument(where + "input '" + r.name +
                                 "' has unknown rank: give its shape (e.g. --shapes " + r.name +
                                 ":1x3x224x224)");
        }
        for (size_t d = 0; d < in->shape()->rank(); ++d) {
          const Dim& dim = (*in->shape())[d];
          if (dim.is_static()) {
            r.min.push_back(dim.value());
            r.opt.push_back(dim.value());
            r.max.push_back(dim.value());
          } else if (d == 0) {
            r.min.push_back(kDefaultBatchMin);
            r.opt.push_back(kDefaultBatchOpt);
            r.max.push_back(kDefaultBatchMax);
          } else {
            return InvalidArgument(where + "input '" + r.name + "' has shape " + in->shape()->ToString() +
                                   ": dim " + std::to_string(d) + " ('" + dim.ToString() +
                                   "') is dynamic and only a leading batch dim has a default range; give it "
                                   "with --shapes " +
                                   r.name + ":MIN..OPT..MAX");
          }
        }
      }
      resolved.inputs.push_back(std::move(r));
    }
    for (const auto& [name, ip] : profiles[p].inputs) {
      if (!used.count(name)) {
        std::string names;
        for (const Value* in : graph.inputs()) {
          if (!in->is_constant()) names += (names.empty() ? "" : ", ") + in->name();
        }
        return InvalidArgument(where + "the model has no input '" + name + "' (its inputs: " + names + ")");
      }
    }
    out.push_back(std::move(resolved));
  }
  return out;
}

Status CheckInProfile(const plan::InputRange& range, const std::vector<int64_t>& dims, int profile_index) {
  auto describe = [&] {
    return "profile " + std::to_string(profile_index) + " accepts " + DimsToString(range.min) + " to " +
           DimsToString(range.max);
  };
  if (dims.size() != range.min.size()) {
    return InvalidArgument("input '" + range.name + "' shape " + DimsToString(dims) + " has rank " +
                           std::to_string(dims.size()) + ", expected " + std::to_string(range.min.size()) +
                           " (" + describe() + ")");
  }
  for (size_t d = 0; d < dims.size(); ++d) {
    if (dims[d] < range.min[d] || dims[d] > range.max[d]) {
      return OutOfRange("input '" + range.name + "' shape " + DimsToString(dims) +
                        " is outside the profile: dim " + std::to_string(d) + " is " +
                        std::to_string(dims[d]) + ", allowed " + std::to_string(range.min[d]) + ".." +
                        std::to_string(range.max[d]) + " (" + describe() + ")");
    }
  }
  return Status::Ok();
}

}  // namespace kiln::build

namespace kiln {

Expected<OptimizationProfile> ParseShapesOption(const std::string& text) {
  OptimizationProfile profile;
  std::string normalized = text;
  for (char& c : normalized) {
    if (c == ',' || c == ' ' || c == '\t' || c == ';') c = ' ';
  }
  size_t pos = 0;
  while (pos < normalized.size()) {
    if (normalized[pos] == ' ') {
      ++pos;
      continue;
    }
    size_t end = normalized.find(' ', pos);
    if (end == std::string::npos) end = normalized.size();
    const std::string entry = normalized.substr(pos, end - pos);
    pos = end;
    const size_t colon = entry.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == entry.size()) {
      return InvalidArgument("shape entry '" + entry +
                             "' is not NAME:SHAPE (e.g. input:1x3x224x224 or "
                             "input:1x3x224x224..8x3x224x224..32x3x224x224)");
    }
    const std::string name = entry.substr(0, colon);
    const std::string spec = entry.substr(colon + 1);
    std::vector<std::string> parts;
    size_t p = 0;
    while (true) {
      const size_t dots = spec.find("..", p);
      parts.push_back(spec.substr(p, dots == std::string::npos ? std::string::npos : dots - p));
      if (dots == std::string::npos) break;
      p = dots + 2;
    }
    if (parts.size() > 3) return InvalidArgument("shape entry '" + entry + "' has more than MIN..OPT..MAX");
    std::vector<std::vector<int64_t>> shapes;
    for (const std::string& part : parts) {
      auto dims = build::ParseDims(part, entry);
      if (!dims.ok()) return dims.status();
      if (!shapes.empty() && dims->size() != shapes[0].size()) {
        return InvalidArgument("shape entry '" + entry + "': the shapes have different ranks");
      }
      shapes.push_back(std::move(*dims));
    }
    InputProfile ip;
    ip.min = shapes[0];
    ip.opt = shapes.size() == 3 ? shapes[1] : shapes[0];
    ip.max = shapes.back();
    for (size_t d = 0; d < ip.min.size(); ++d) {
      if (ip.min[d] > ip.opt[d] || ip.opt[d] > ip.max[d]) {
        return InvalidArgument("shape entry '" + entry + "': dim " + std::to_string(d) +
                               " is not min <= opt <= max");
      }
    }
    if (profile.inputs.count(name))
      return InvalidArgument("input '" + name + "' is given twice in the shapes");
    profile.inputs[name] = std::move(ip);
  }
  if (profile.inputs.empty()) return InvalidArgument("empty shapes option");
  return profile;
}

}  // namespace kiln
