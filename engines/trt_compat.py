"""What TensorRT's ONNX parser will accept, checked on CPU before any GPU sees the file.

The operator set is the ONNX-TensorRT support matrix (onnx-tensorrt ``docs/operators.md``) for
TensorRT 8.6, the oldest release we support (JetPack 6.0), restricted to the operators an ML-SAN
export can contain; later releases only add operators. Restrictions checked: opset range,
``axes`` of Slice/Squeeze/Unsqueeze given as constants, float Range only from constants, and for
explicitly quantized (Q/DQ) graphs: INT8 with zero-point 0 (symmetric) and constant scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Supported by ONNX-TensorRT 8.6 (and later); a superset of what the exporter emits for ML-SAN.
TRT86_OPS = frozenset(
    """Abs Add And ArgMax ArgMin Cast Ceil Clip Concat Constant ConstantOfShape DequantizeLinear Div
    Einsum Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm Greater
    GreaterOrEqual Identity If LayerNormalization Less LessOrEqual Log LogSoftmax MatMul Max Mean
    Min Mul Neg Not Or Pad Pow QuantizeLinear Range ReduceL2 ReduceMax ReduceMean ReduceMin
    ReduceSum Relu Reshape Shape Sigmoid Sign Slice Softmax Split Sqrt Squeeze Sub Sum Tanh Tile
    Transpose Trilu Unsqueeze Where Xor""".split()
)
MIN_OPSET, MAX_OPSET = 9, 17  # TensorRT 8.6 parses opsets 9..17


@dataclass(frozen=True)
class CompatReport:
    opset: int
    ops: tuple[str, ...]
    problems: tuple[str, ...]  # empty: TensorRT 8.6+ should parse the graph

    @property
    def ok(self) -> bool:
        return not self.problems


def _constants(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def check_tensorrt_compat(model) -> CompatReport:
    """Check an onnx.ModelProto (or a path) against TensorRT 8.6's ONNX parser rules."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    problems = []
    if not MIN_OPSET <= opset <= MAX_OPSET:
        problems.append(f"opset {opset} outside TensorRT 8.6's {MIN_OPSET}..{MAX_OPSET}")
    consts = _constants(model)
    ops = sorted({n.op_type for n in model.graph.node})
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{node.name}: custom-domain op {node.domain}::{node.op_type}")
            continue
        if node.op_type not in TRT86_OPS:
            problems.append(f"{node.name}: {node.op_type} is not in TensorRT 8.6's ONNX op set")
        if node.op_type in ("Slice", "Squeeze", "Unsqueeze"):
            axes_index = 3 if node.op_type == "Slice" else 1
            if (
                len(node.input) > axes_index
                and node.input[axes_index]
                and node.input[axes_index] not in consts
            ):
                problems.append(f"{node.name}: {node.op_type} axes must be a constant")
        if node.op_type == "Range":
            start = consts.get(node.input[0])
            if start is not None and np.issubdtype(start.dtype, np.floating):
                if not all(i in consts for i in node.input):
                    problems.append(f"{node.name}: float Range needs constant inputs")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            scale = consts.get(node.input[1])
            if scale is None:
                problems.append(f"{node.name}: Q/DQ scale must be a constant")
            elif np.any(scale <= 0):
                problems.append(f"{node.name}: Q/DQ scale must be positive")
            zero = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if zero is not None:
                if zero.dtype != np.int8:
                    problems.append(f"{node.name}: Q/DQ type {zero.dtype}, TensorRT needs int8")
                elif np.any(zero != 0):
                    problems.append(f"{node.name}: Q/DQ zero point must be 0 (symmetric)")
    return CompatReport(opset=opset, ops=tuple(ops), problems=tuple(problems))
