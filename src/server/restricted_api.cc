#include "server/restricted_api.h"

#include <algorithm>
#include <cctype>

namespace kiln::server {
namespace {

constexpr std::array<const char*, kApiCategoryCount> kCategoryNames = {
    "health", "metadata", "inference", "shared-memory", "model-config", "model-repository", "statistics", "trace",
    "logging"};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

Status RestrictedApis::Add(const std::string& rule) {
  const size_t colon = rule.find(':');
  const size_t equals = rule.find('=', colon == std::string::npos ? 0 : colon);
  if (colon == std::string::npos || equals == std::string::npos || colon == 0 || equals == colon + 1) {
    return InvalidArgument("restricted API '" + rule + "': expected <category>[,<category>...]:<key>=<value>");
  }
  Rule r{Lower(rule.substr(colon + 1, equals - colon - 1)), rule.substr(equals + 1)};
  size_t begin = 0;
  const std::string categories = rule.substr(0, colon);
  while (begin <= categories.size()) {
    const size_t end = std::min(categories.find(',', begin), categories.size());
    const std::string name = categories.substr(begin, end - begin);
    auto it = std::find(kCategoryNames.begin(), kCategoryNames.end(), name);
    if (it == kCategoryNames.end()) {
      std::string known;
      for (const char* n : kCategoryNames) known += std::string(known.empty() ? "" : ", ") + n;
      return InvalidArgument("restricted API '" + rule + "': unknown category '" + name + "' (" + known + ")");
    }
    auto& slot = rules_[static_cast<size_t>(it - kCategoryNames.begin())];
    if (slot) return InvalidArgument("restricted API '" + rule + "': category '" + name + "' is restricted twice");
    slot = r;
    begin = end + 1;
  }
  return Status::Ok();
}

std::optional<std::string> RestrictedApis::Denied(
    ApiCategory category, const std::function<std::string(const std::string&)>& header) const {
  const auto& rule = rules_[static_cast<size_t>(category)];
  if (!rule || header(rule->key) == rule->value) return std::nullopt;
  return "this API is restricted: the '" + std::string(kCategoryNames[static_cast<size_t>(category)]) +
         "' endpoints need header '" + rule->key + "' with the configured value";
}

bool RestrictedApis::empty() const {
  return std::none_of(rules_.begin(), rules_.end(), [](const auto& r) { return r.has_value(); });
}

}  // namespace kiln::server
