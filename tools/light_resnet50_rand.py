#!/usr/bin/env python3
"""Build light_resnet50_rand.onnx: a ResNet-50 v1.5 with folded BatchNorm and random He-normal weights.

Written from the recipe in the shared zoo README ("light_resnet50_rand"). Needs only onnx and numpy.
The bytes are deterministic: same numpy RNG stream, same node/initializer order, attributes
sorted by name (as `helper.make_node` stores keyword attributes), `SerializeToString()`. `cargo xtask zoo-models` checks the SHA-256.

Usage: light_resnet50_rand.py OUT.onnx
"""

import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BN_EPS = 1e-5
# (layer name, number of blocks, bottleneck width, stride of the first block)
STAGES = [("layer1", 3, 64, 1), ("layer2", 4, 128, 2), ("layer3", 6, 256, 2), ("layer4", 3, 512, 2)]
EXPANSION = 4


class Builder:
    def __init__(self) -> None:
        self.rng = np.random.default_rng(50)
        self.nodes = []
        self.inits = []

    def conv(self, name, x, cin, cout, k, stride, pad):
        """Conv with folded BN; draws weight then bias. Returns the output tensor name (= node name)."""
        fan_in = cin * k * k
        z = self.rng.standard_normal((cout, cin, k, k))
        w = ((z * math.sqrt(2.0 / fan_in)) / math.sqrt(1.0 + BN_EPS)).astype(np.float32)
        b = (self.rng.standard_normal((cout,)) * 0.01).astype(np.float32)
        self.inits.append(numpy_helper.from_array(w, f"{name}.weight"))
        self.inits.append(numpy_helper.from_array(b, f"{name}.bias"))
        # Attributes go through make_node's keyword arguments, which it sorts by name: the stored order is
        # kernel_shape, pads, strides. (The zoo README lists them as "kernel_shape, strides, pads (in that
        # order)", but the reference bytes, SHA-256 467d66..., have the sorted order; adding them by hand in the
        # README's order gives a file of the same size with another hash.)
        return self.op("Conv", [x, f"{name}.weight", f"{name}.bias"], name,
                       kernel_shape=[k, k], strides=[stride, stride], pads=[pad, pad, pad, pad])

    def op(self, op_type, inputs, name, output=None, **attrs):
        self.nodes.append(helper.make_node(op_type, inputs, [output or name], name=name, **attrs))
        return output or name

    def relu(self, x):
        return self.op("Relu", [x], f"{x}.relu")


def build() -> onnx.ModelProto:
    b = Builder()
    x = b.relu(b.conv("conv1", "input", 3, 64, 7, 2, 3))
    x = b.op("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for layer, blocks, width, first_stride in STAGES:
        cout = width * EXPANSION
        for i in range(blocks):
            p = f"{layer}.{i}"
            s = first_stride if i == 0 else 1
            y = b.relu(b.conv(f"{p}.conv1", x, cin, width, 1, 1, 0))
            y = b.relu(b.conv(f"{p}.conv2", y, width, width, 3, s, 1))
            y = b.conv(f"{p}.conv3", y, width, cout, 1, 1, 0)
            shortcut = b.conv(f"{p}.downsample", x, cin, cout, 1, s, 0) if i == 0 else x
            y = b.op("Add", [y, shortcut], f"{p}.add")
            x = b.op("Relu", [y], f"{p}.relu")
            cin = cout
    x = b.op("GlobalAveragePool", [x], "avgpool")
    x = b.op("Flatten", [x], "flatten", axis=1)
    fc_w = (b.rng.standard_normal((1000, 2048)) * math.sqrt(2.0 / 2048)).astype(np.float32)
    fc_b = (b.rng.standard_normal((1000,)) * 0.01).astype(np.float32)
    b.inits.append(numpy_helper.from_array(fc_w, "fc.weight"))
    b.inits.append(numpy_helper.from_array(fc_b, "fc.bias"))
    b.op("Gemm", [x, "fc.weight", "fc.bias"], "fc", output="output", transB=1)

    graph = helper.make_graph(
        b.nodes,
        "light_resnet50_rand",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1000])],
        initializer=b.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="zoo-recipe", producer_version="1"
    )
    model.ir_version = 7
    return model


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    out = sys.argv[1]
    data = build().SerializeToString()
    # Write next to the target and rename, so a failed run leaves no partial model.
    tmp = f"{out}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    print(f"wrote {out} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
