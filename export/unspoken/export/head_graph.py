"""Write the head (scaler + MLP or linear probe) and the isotonic calibrator as one small ONNX graph.

skl2onnx has no IsotonicRegression converter and its calibrated-classifier path picks the nearest threshold, so the
graph is written in plain ONNX ops and computed in float64 to equal scikit-learn:

    features (float32 [n, h]) -> float64 -> [x / ||x||_2] -> (x - mean) / scale -> [Gemm -> Relu]* -> Gemm -> Sigmoid
      = p  [n]   (the unit-length step only when the head was fit with ``normalize="l2"``)
    p -> clip to [x_0, x_last] -> k = #{x_i <= p among x_0..x_{last-1}} - 1 -> y_k + (p - x_k) * slope_k
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEAD_OPSET = 18


@dataclass
class HeadParams:
    """Plain arrays, independent of scikit-learn's classes."""

    mean: np.ndarray  # [h]
    scale: np.ndarray  # [h]
    weights: list[np.ndarray]  # per layer [in, out]
    biases: list[np.ndarray]  # per layer [out]
    iso_x: np.ndarray  # increasing thresholds
    iso_y: np.ndarray  # calibrated values at the thresholds
    l2_normalize: bool = False  # scale each feature row to unit length before the scaler


def params_from_sklearn(scaler, model, isotonic, *, l2_normalize: bool = False) -> HeadParams:
    """From a fitted StandardScaler, MLPClassifier or LogisticRegression, and IsotonicRegression."""
    if hasattr(model, "coefs_"):
        if model.activation != "relu" or model.out_activation_ != "logistic":
            raise ValueError("only relu MLPs with a logistic output are exported")
        weights, biases = [w.astype(np.float64) for w in model.coefs_], [b.astype(np.float64) for b in model.intercepts_]
    else:
        weights, biases = [model.coef_.T.astype(np.float64)], [model.intercept_.astype(np.float64)]
    scale = scaler.scale_ if scaler.scale_ is not None else np.ones_like(scaler.mean_)
    return HeadParams(
        mean=scaler.mean_.astype(np.float64),
        scale=scale.astype(np.float64),
        weights=weights,
        biases=biases,
        iso_x=np.asarray(isotonic.X_thresholds_, dtype=np.float64),
        iso_y=np.asarray(isotonic.y_thresholds_, dtype=np.float64),
        l2_normalize=l2_normalize,
    )


def build_head_model(params: HeadParams, *, input_name: str = "features", output_name: str = "probability"):
    """The ONNX ModelProto of the head+calibrator."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name, arr):
        return numpy_helper.from_array(np.asarray(arr), name)

    x, y = params.iso_x, params.iso_y
    if len(x) == 1:  # a constant calibrator: add a second point with the same value
        x, y = np.array([x[0], x[0] + 1.0]), np.array([y[0], y[0]])
    slope = np.diff(y) / np.diff(x)
    inits = [
        const("mean", params.mean), const("scale", params.scale),
        const("iso_lo", np.array(x[0])), const("iso_hi", np.array(x[-1])),
        const("iso_starts", x[:-1].reshape(1, -1)), const("iso_x", x[:-1]), const("iso_y", y[:-1]),
        const("iso_slope", slope), const("one", np.array([1], dtype=np.int64)),
        const("axis1", np.array([1], dtype=np.int64)), const("flat", np.array([-1], dtype=np.int64)),
    ]
    nodes = [helper.make_node("Cast", [input_name], ["x64"], to=TensorProto.DOUBLE)]
    x_in = "x64"
    if params.l2_normalize:
        nodes += [
            helper.make_node("ReduceL2", ["x64", "axis1"], ["norm"], keepdims=1),
            helper.make_node("Div", ["x64", "norm"], ["x_unit"]),
        ]
        x_in = "x_unit"
    nodes += [
        helper.make_node("Sub", [x_in, "mean"], ["centered"]),
        helper.make_node("Div", ["centered", "scale"], ["h0"]),
    ]
    h = "h0"
    for i, (w, b) in enumerate(zip(params.weights, params.biases)):
        inits += [const(f"w{i}", w), const(f"b{i}", b)]
        nodes.append(helper.make_node("Gemm", [h, f"w{i}", f"b{i}"], [f"z{i}"]))
        h = f"z{i}"
        if i < len(params.weights) - 1:
            nodes.append(helper.make_node("Relu", [h], [f"a{i}"]))
            h = f"a{i}"
    nodes += [
        helper.make_node("Sigmoid", [h], ["p2d"]),
        helper.make_node("Reshape", ["p2d", "flat"], ["p"]),
        helper.make_node("Max", ["p", "iso_lo"], ["p_lo"]),
        helper.make_node("Min", ["p_lo", "iso_hi"], ["pc"]),
        helper.make_node("Unsqueeze", ["pc", "axis1"], ["pc2d"]),
        helper.make_node("GreaterOrEqual", ["pc2d", "iso_starts"], ["ge"]),
        helper.make_node("Cast", ["ge"], ["ge64"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["ge64", "axis1"], ["count"], keepdims=0),
        helper.make_node("Sub", ["count", "one"], ["k"]),
        helper.make_node("Gather", ["iso_x", "k"], ["xk"]),
        helper.make_node("Gather", ["iso_y", "k"], ["yk"]),
        helper.make_node("Gather", ["iso_slope", "k"], ["sk"]),
        helper.make_node("Sub", ["pc", "xk"], ["dx"]),
        helper.make_node("Mul", ["dx", "sk"], ["dy"]),
        helper.make_node("Add", ["yk", "dy"], [output_name]),
    ]
    hidden = params.mean.shape[0]
    graph = helper.make_graph(
        nodes,
        "unspoken_head",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["n", hidden])],
        [helper.make_tensor_value_info(output_name, TensorProto.DOUBLE, ["n"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", HEAD_OPSET)], producer_name="unspoken")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def save_head_model(params: HeadParams, path: Path) -> Path:
    import onnx

    onnx.save(build_head_model(params), str(path))
    return path


def numpy_head(params: HeadParams, features: np.ndarray) -> np.ndarray:
    """The same computation in numpy (for tests and for scoring features without ORT)."""
    x = features.astype(np.float64)
    if params.l2_normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    h = (x - params.mean) / params.scale
    for i, (w, b) in enumerate(zip(params.weights, params.biases)):
        h = h @ w + b
        if i < len(params.weights) - 1:
            h = np.maximum(h, 0)
    p = 1.0 / (1.0 + np.exp(-h.reshape(-1)))
    return np.interp(np.clip(p, params.iso_x[0], params.iso_x[-1]), params.iso_x, params.iso_y)
