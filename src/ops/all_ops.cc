#include "ops/all_ops.h"

#include "ops/registry.h"

namespace kiln {

void RegisterAllOps(OpRegistry& r) {
  RegisterElementwiseOps(r);
  RegisterActivationOps(r);
  RegisterNnOps(r);
  RegisterReduceOps(r);
  RegisterTensorOps(r);
  RegisterSequenceOps(r);
  RegisterDetectionQuantOps(r);
  RegisterFusedOps(r);
  RegisterChannelsLastOps(r);
  RegisterQuantizedOps(r);
}

}  // namespace kiln
