#!/usr/bin/env python3
"""Writes src/generated/schema_functions.pb: the function bodies of the standard ONNX operators
that the ONNX schema defines as functions (used by `-always-expand-onnx-functions`).

Run with the onnx wheel the proto files come from (onnx==1.22.0):

    python3 -m pip install onnx==1.22.0
    python3 crates/qaic-onnx/tools/gen_schema_functions.py

Format (read by src/functions.rs): a binary onnx.ModelProto with no graph, where
- `functions` holds one FunctionProto per (operator, schema version, function version), with
  `overload` = "<schema since_version>:<function opset version>" and `attribute_proto` holding the
  schema's default attribute values (a schema function body relies on them);
- `metadata_props` maps "<domain>:<op>" to the comma-separated since_versions of every schema
  version of that operator, so the loader finds which schema version a model's opset selects.
Context-dependent function bodies (which depend on the input types) are not included.
"""
import os
import onnx
import onnx.defs

out = onnx.ModelProto()
out.ir_version = onnx.IR_VERSION
out.producer_name = "qaic-onnx/tools/gen_schema_functions.py"
out.producer_version = onnx.__version__

versions = {}
for s in onnx.defs.get_all_schemas_with_history():
    versions.setdefault((s.domain, s.name), []).append(s.since_version)

with_functions = set()
for s in sorted(onnx.defs.get_all_schemas_with_history(), key=lambda s: (s.domain, s.name, s.since_version)):
    if not s.has_function:
        continue
    with_functions.add((s.domain, s.name))
    for fv in sorted(s.function_opset_versions):
        f = onnx.FunctionProto()
        body = s.get_function_with_opset_version(fv)
        f.ParseFromString(body if isinstance(body, bytes) else body.SerializeToString())
        f.overload = f"{s.since_version}:{fv}"
        for name, a in sorted(s.attributes.items()):
            if a.default_value is not None and a.default_value.type != 0:
                d = onnx.AttributeProto()
                d.CopyFrom(a.default_value)
                d.name = name
                f.attribute_proto.append(d)
        out.functions.append(f)

for key in sorted(with_functions):
    p = out.metadata_props.add()
    p.key = f"{key[0]}:{key[1]}"
    p.value = ",".join(str(v) for v in sorted(versions[key]))

path = os.path.join(os.path.dirname(__file__), "..", "src", "generated", "schema_functions.pb")
with open(path + ".tmp", "wb") as fh:
    fh.write(out.SerializeToString(deterministic=True))
os.replace(path + ".tmp", path)
print(f"{len(out.functions)} function bodies for {len(with_functions)} operators -> {os.path.normpath(path)}")
