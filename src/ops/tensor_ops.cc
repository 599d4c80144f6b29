// The data-movement and shape ops. Their definitions live in src/ops/kernels/dm_*.cc.
#include "ops/kernels/dm_groups.h"
#include "ops/registry.h"

namespace kiln {

void RegisterTensorOps(OpRegistry& r) {
  RegisterDmShapeOps(r);
  RegisterDmIndexOps(r);
  RegisterDmPadOps(r);
  RegisterDmScatterOps(r);
  RegisterDmResizeOps(r);
}

}  // namespace kiln
