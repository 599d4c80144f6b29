#include "build/arena_layout.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "build/memory_planner.h"

namespace kiln::build {
namespace {

// A set of values sharing one block: member offsets are relative to the block's start.
struct Group {
  uint64_t size = 0;
  int first = 0;
  int last = 0;
  std::vector<const Value*> members;
  bool has_concat = false;  // the block is a Concat output (its members are slices)
  bool merged = false;      // moved into another group
};

struct Member {
  int group = -1;
  uint64_t offset = 0;  // within the group
  uint64_t size = 0;
  SlotKind kind = SlotKind::kOwn;
};

std::optional<uint64_t> StaticBytes(const Value* v) {
  if (!v->shape()) return std::nullopt;
  const std::optional<int64_t> numel = v->shape()->numel();
  const uint64_t elem = DTypeSize(v->dtype());
  if (!numel || *numel < 0 || elem == 0 ||
      static_cast<uint64_t>(*numel) > std::numeric_limits<uint64_t>::max() / elem) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(*numel) * elem;
}

// Whether a Concat's inputs are contiguous slices of its output: every dim before the axis is 1.
bool ContiguousConcat(const Node& n) {
  const Value* out = n.output(0);
  if (!out || !out->shape()) return false;
  const auto rank = static_cast<int64_t>(out->shape()->rank());
  int64_t axis = n.attrs().GetInt("axis", 0);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) return false;
  for (int64_t d = 0; d < axis; ++d) {
    const Dim& dim = (*out->shape())[static_cast<size_t>(d)];
    if (!dim.is_static() || dim.value() != 1) return false;
  }
  return true;
}

class Planner {
 public:
  Planner(const std::vector<const Node*>& schedule, const ArenaOptions& options)
      : schedule_(schedule), options_(options), end_(static_cast<int>(schedule.size())) {}

  Expected<ArenaLayout> Run() {
    // Last reads are needed up front: running in place at step s is safe only if no member of the block
    // is read after s, including through views made later.
    for (int step = 0; step < end_; ++step) {
      for (const Value* v : schedule_[step]->inputs()) {
        if (v) last_use_[v] = step;
      }
    }
    for (int step = 0; step < end_; ++step) {
      const Node* n = schedule_[step];
      if (options_.concat_elimination && n->op() == OpKind::kConcat && TryConcat(*n, step)) continue;
      for (size_t i = 0; i < n->num_outputs(); ++i) Define(*n, i, step);
    }
    return Pack();
  }

 private:
  int NewGroup(uint64_t size, int step) {
    groups_.push_back({size, step, step, {}, false, false});
    parent_.push_back(-1);
    return static_cast<int>(groups_.size()) - 1;
  }

  // Adds v to `group`, whose block then lives until v's last read (or to the end for outputs).
  void Join(const Value* v, int group, uint64_t offset, uint64_t size, SlotKind kind) {
    members_[v] = {group, offset, size, kind};
    groups_[group].members.push_back(v);
    auto it = last_use_.find(v);
    const int last = v->is_graph_output() ? end_ : (it == last_use_.end() ? -1 : it->second);
    groups_[group].last = std::max(groups_[group].last, last);
  }

  bool Placeable(const Value* v) const {
    return v && !v->is_constant() && !v->is_graph_input() && !v->is_graph_output();
  }

  // The group v belongs to and v's offset in it, if v is in the arena.
  std::optional<std::pair<int, uint64_t>> Where(const Value* v) const {
    auto it = v ? members_.find(v) : members_.end();
    if (it == members_.end()) return std::nullopt;
    int g = it->second.group;
    uint64_t offset = it->second.offset;
    while (groups_[g].merged) {
      offset += merge_offset_[g];
      g = parent_[g];
    }
    return std::make_pair(g, offset);
  }

  void Define(const Node& n, size_t index, int step) {
    const Value* o = n.output(index);
    if (!Placeable(o)) return;
    const std::optional<uint64_t> bytes = StaticBytes(o);
    if (!bytes) {
      ++layout_.dynamic;
      return;
    }
    naive_ += AlignUp(*bytes);
    if (index == 0 && options_.views && IsViewOp(n.op()) && n.num_inputs() > 0) {
      if (auto w = Where(n.input(0)); w && members_.at(n.input(0)).size == *bytes) {
        Join(o, w->first, w->second, *bytes, SlotKind::kView);
        ++layout_.views;
        return;
      }
    }
    if (index == 0 && options_.in_place && RunsInPlace(n.op())) {
      const size_t candidates = (n.op() == OpKind::kAdd || n.op() == OpKind::kSub || n.op() == OpKind::kMul ||
                                 n.op() == OpKind::kDiv)
                                    ? n.num_inputs()
                                    : std::min<size_t>(1, n.num_inputs());
      for (size_t i = 0; i < candidates; ++i) {
        const Value* x = n.input(i);
        auto w = Where(x);
        if (!w || members_.at(x).size != *bytes || x->dtype() != o->dtype()) continue;
        if (!x->shape() || !o->shape() || x->shape()->ToString() != o->shape()->ToString()) continue;
        // Safe only if nothing in x's block is read after this step.
        if (groups_[w->first].last > step) continue;
        Join(o, w->first, w->second, *bytes, SlotKind::kInPlace);
        ++layout_.in_place;
        return;
      }
    }
    const int g = NewGroup(*bytes, step);
    Join(o, g, 0, *bytes, SlotKind::kOwn);
  }

  // Places the Concat's output in a new group and moves each input's group into its slice, when the
  // slices are contiguous and each input is a whole, unshared block produced earlier.
  bool TryConcat(const Node& n, int step) {
    const Value* out = n.output(0);
    if (!Placeable(out) || !ContiguousConcat(n)) return false;
    const std::optional<uint64_t> bytes = StaticBytes(out);
    if (!bytes) return false;
    std::vector<std::pair<int, uint64_t>> moves;  // group, offset in the output
    uint64_t offset = 0;
    for (const Value* in : n.inputs()) {
      if (!in) return false;
      const std::optional<uint64_t> in_bytes = StaticBytes(in);
      if (!in_bytes) return false;
      auto it = members_.find(in);
      // Each input must own its whole group (not a view or slice of something else, not used twice here).
      if (it != members_.end() && it->second.kind == SlotKind::kOwn && it->second.offset == 0 &&
          !groups_[it->second.group].merged && groups_[it->second.group].size == *in_bytes &&
          groups_[it->second.group].members.size() == 1 &&
          std::none_of(moves.begin(), moves.end(), [&](const auto& m) { return m.first == it->second.group; })) {
        moves.emplace_back(it->second.group, offset);
      }
      offset += *in_bytes;
    }
    if (moves.empty() || offset != *bytes) return false;
    naive_ += AlignUp(*bytes);
    const int g = NewGroup(*bytes, step);
    merge_offset_.resize(groups_.size(), 0);
    for (const auto& [src, at] : moves) {
      Group& s = groups_[src];
      groups_[g].first = std::min(groups_[g].first, s.first);
      groups_[g].last = std::max(groups_[g].last, s.last);
      s.merged = true;
      parent_[src] = g;
      merge_offset_[src] = at;
    }
    groups_[g].has_concat = true;
    Join(out, g, 0, *bytes, SlotKind::kConcat);
    ++layout_.concats_eliminated;
    return true;
  }

  uint64_t AlignUp(uint64_t v) const { return (v + options_.alignment - 1) / options_.alignment * options_.alignment; }

  Expected<ArenaLayout> Pack() {
    merge_offset_.resize(groups_.size(), 0);
    std::vector<TensorLifetime> lifetimes;
    std::vector<int> group_of;
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (groups_[g].merged) continue;
      lifetimes.push_back({static_cast<int>(g), groups_[g].size, groups_[g].first, groups_[g].last});
      group_of.push_back(static_cast<int>(g));
    }
    KILN_ASSIGN_OR_RETURN(MemoryPlan packed, PackLifetimes(lifetimes, options_.alignment));
    std::vector<uint64_t> base(groups_.size(), 0);
    for (size_t i = 0; i < packed.blocks.size(); ++i) base[group_of[i]] = packed.blocks[i].offset;
    for (const auto& [v, m] : members_) {
      auto w = Where(v);
      layout_.slots[v] = {m.kind, base[w->first] + w->second, m.size};
    }
    layout_.arena_size = packed.arena_size;
    layout_.naive_size = naive_;
    return std::move(layout_);
  }

  const std::vector<const Node*>& schedule_;
  const ArenaOptions& options_;
  const int end_;
  std::vector<Group> groups_;
  std::vector<int> parent_;             // for merged groups: the group they moved into
  std::vector<uint64_t> merge_offset_;  // for merged groups: their offset in the parent
  std::unordered_map<const Value*, Member> members_;
  std::unordered_map<const Value*, int> last_use_;
  ArenaLayout layout_;
  uint64_t naive_ = 0;
};

}  // namespace

bool RunsInPlace(OpKind op) {
  switch (op) {
    case OpKind::kAdd: case OpKind::kSub: case OpKind::kMul: case OpKind::kDiv:
    case OpKind::kNeg: case OpKind::kAbs: case OpKind::kSqrt: case OpKind::kExp: case OpKind::kLog:
    case OpKind::kReciprocal: case OpKind::kFloor: case OpKind::kCeil: case OpKind::kErf:
    case OpKind::kRelu: case OpKind::kLeakyRelu: case OpKind::kSigmoid: case OpKind::kTanh:
    case OpKind::kHardSigmoid: case OpKind::kHardSwish: case OpKind::kElu: case OpKind::kSelu:
    case OpKind::kGelu: case OpKind::kClip: case OpKind::kSoftplus: case OpKind::kMish:
      return true;
    default:
      return false;
  }
}

bool IsViewOp(OpKind op) {
  switch (op) {
    case OpKind::kReshape: case OpKind::kFlatten: case OpKind::kSqueeze: case OpKind::kUnsqueeze:
    case OpKind::kIdentity: case OpKind::kDropout:
      return true;
    default:
      return false;
  }
}

Expected<ArenaLayout> LayOutArena(const std::vector<const Node*>& schedule, const ArenaOptions& options) {
  if (options.alignment == 0) return InvalidArgument("arena alignment must be positive");
  return Planner(schedule, options).Run();
}

}  // namespace kiln::build
