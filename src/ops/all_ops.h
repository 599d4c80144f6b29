// The one list of op groups. Each group lives in its own file under src/ops/.
#pragma once

namespace kiln {

class OpRegistry;

void RegisterElementwiseOps(OpRegistry& r);   // elementwise.cc: arithmetic, comparison, logic, math, Cast, Where
void RegisterActivationOps(OpRegistry& r);    // activation.cc: Relu ... Mish, Clip
void RegisterNnOps(OpRegistry& r);            // conv.cc, pool.cc, norm.cc, matmul.cc, softmax.cc
void RegisterReduceOps(OpRegistry& r);        // reduce.cc: Reduce*, ArgMax/ArgMin, CumSum, TopK
void RegisterTensorOps(OpRegistry& r);        // tensor.cc, shape_ops.cc: data movement and shape ops
void RegisterSequenceOps(OpRegistry& r);      // rnn.cc: LSTM, GRU, RNN
void RegisterDetectionQuantOps(OpRegistry& r);  // nms.cc, quant.cc: NonMaxSuppression, Q/DQ
void RegisterFusedOps(OpRegistry& r);         // fused.cc: kiln.FusedConv, kiln.FusedGemm, kiln.Swish, ...
void RegisterChannelsLastOps(OpRegistry& r);  // channels_last.cc: kiln.ConvNhwc, kiln.PoolNhwc
void RegisterQuantizedOps(OpRegistry& r);     // quantized.cc: kiln.QConv, kiln.QAdd

// Registers every group, in the order above.
void RegisterAllOps(OpRegistry& r);

}  // namespace kiln
