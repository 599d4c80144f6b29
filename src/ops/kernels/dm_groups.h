// The data-movement and shape op groups (src/ops/kernels/dm_*.cc), registered together by RegisterTensorOps
// (src/ops/tensor_ops.cc).
#pragma once

namespace kiln {

class OpRegistry;

// Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Shape, Size, Constant, ConstantOfShape, Range
void RegisterDmShapeOps(OpRegistry& r);
// Concat, Split, Slice, Gather, Transpose, Expand, Tile
void RegisterDmIndexOps(OpRegistry& r);
// Pad, DepthToSpace, SpaceToDepth, Trilu
void RegisterDmPadOps(OpRegistry& r);
// GatherElements, GatherND, ScatterND, ScatterElements, NonZero, OneHot
void RegisterDmScatterOps(OpRegistry& r);
// Resize
void RegisterDmResizeOps(OpRegistry& r);

}  // namespace kiln
