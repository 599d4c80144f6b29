#include "ops/kernels/nn_groups.h"
#include "ops/registry.h"

namespace kiln {

void RegisterNnOps(OpRegistry& r) {
  RegisterNnConvOps(r);
  RegisterNnPoolOps(r);
  RegisterNnNormOps(r);
  RegisterNnMatMulOps(r);
  RegisterNnSoftmaxOps(r);
  RegisterNnEinsumOps(r);
}

}  // namespace kiln
