"""Reference input/output for light_resnet50_rand, as the zoo README states them.

usage: light_resnet50_ref.py MODEL.onnx IN.npy OUT.npy

Input: numpy.random.default_rng(1).standard_normal((2, 3, 224, 224)) as float32.
Output: onnxruntime (CPU, 1 thread) on that input. The README's first five logits and argmax
are checked, so a wrong model or runtime is caught here rather than in the tests.
"""
import os
import sys

import numpy as np
import onnxruntime as ort

EXPECTED_FIRST5 = [1060.112060546875, 586.779541015625, -794.8240966796875, 1426.4144287109375, -1152.975341796875]
EXPECTED_ARGMAX = 723


def save(path, arr):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)


def main():
    model, in_path, out_path = sys.argv[1:4]
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input": x})
    got = [float(v) for v in y[0, :5]]
    if not np.allclose(got, EXPECTED_FIRST5, rtol=1e-5, atol=1e-3) or int(np.argmax(y[0])) != EXPECTED_ARGMAX:
        sys.exit(f"onnxruntime output {got} / argmax {int(np.argmax(y[0]))} differs from the zoo README")
    save(in_path, x)
    save(out_path, y)


if __name__ == "__main__":
    main()
