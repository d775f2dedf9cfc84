//! Differential test against tract-onnx (a dev-dependency only; never in the load path):
//! on every zoo model, tract's decoding and ours agree on the nodes (count, op types, names,
//! in order), the graph inputs and outputs, and every initializer and `Constant` value, byte
//! for byte. For the models tract can also turn into an inference model, input and output
//! names agree with its model too.

mod common;

use std::collections::HashMap;

use common::shared;
use qaic_onnx::{load, LoadOptions};
use tract_onnx::prelude::*;

#[test]
fn zoo_models_agree_with_tract() {
    let onnx = tract_onnx::onnx();
    let mut dir_entries: Vec<_> = std::fs::read_dir(shared().join("zoo/data")).unwrap().map(|e| e.unwrap().path()).collect();
    dir_entries.sort();
    let mut compared_tensors = 0usize;
    let mut tract_loaded = 0usize;
    for p in dir_entries.iter().filter(|p| p.extension().is_some_and(|e| e == "onnx")) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let proto = onnx.proto_model_for_path(p).unwrap_or_else(|e| panic!("tract cannot parse {name}: {e:?}"));
        let g = load(p, &LoadOptions::default()).unwrap();
        let gp = proto.graph.as_ref().unwrap();
        let dir = p.parent().and_then(|d| d.to_str());

        // Nodes: ours are tract's minus the Constant nodes, which become constant values.
        let theirs: Vec<(&str, &str)> =
            gp.node.iter().filter(|n| n.op_type != "Constant").map(|n| (n.name.as_str(), n.op_type.as_str())).collect();
        let mut ours_sorted: Vec<(&str, &str)> = g.nodes.iter().map(|n| (n.name.as_str(), n.op_type.as_str())).collect();
        let mut theirs_sorted = theirs.clone();
        ours_sorted.sort();
        theirs_sorted.sort();
        assert_eq!(ours_sorted, theirs_sorted, "{name}: nodes differ");

        let inputs: Vec<&str> = g.inputs.iter().map(|&i| g.value(i).name.as_str()).collect();
        let inits: std::collections::HashSet<&str> = gp.initializer.iter().map(|t| t.name.as_str()).collect();
        let their_inputs: Vec<&str> = gp.input.iter().map(|v| v.name.as_str()).filter(|n| !inits.contains(n)).collect();
        assert_eq!(inputs, their_inputs, "{name}: inputs differ");
        let outputs: Vec<&str> = g.outputs.iter().map(|&i| g.value(i).name.as_str()).collect();
        let their_outputs: Vec<&str> = gp.output.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(outputs, their_outputs, "{name}: outputs differ");

        // Values: initializers and Constant nodes' `value` tensors.
        let by_name: HashMap<&str, &qaic_ir::ValueData> = g.values.iter().map(|v| (v.name.as_str(), v)).collect();
        let mut expected: Vec<(&str, &tract_onnx::pb::TensorProto)> = gp.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        for n in gp.node.iter().filter(|n| n.op_type == "Constant") {
            if let Some(t) = n.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref()) {
                expected.push((n.output[0].as_str(), t));
            }
        }
        for (vname, tp) in expected {
            let theirs = tract_onnx::tensor::load_tensor(&*onnx.provider, tp, dir)
                .unwrap_or_else(|e| panic!("{name}: tract cannot load tensor {vname}: {e:?}"));
            let ours = by_name[vname].constant.as_ref().unwrap_or_else(|| panic!("{name}: `{vname}` is not a constant"));
            assert_eq!(ours.shape(), theirs.shape(), "{name}: `{vname}` shape");
            assert_eq!(ours.dtype().name(), dtype_name(theirs.datum_type()), "{name}: `{vname}` type");
            let their_bytes = theirs.as_bytes();
            assert_eq!(ours.raw_bytes().unwrap(), their_bytes, "{name}: `{vname}` values differ");
            compared_tensors += 1;
        }

        // Where tract builds an inference model, its input and output names match ours.
        if let Ok(model) = onnx.model_for_path(p) {
            tract_loaded += 1;
            let tin: Vec<String> = model.input_outlets().unwrap().iter().map(|o| model.node(o.node).name.clone()).collect();
            assert_eq!(inputs, tin, "{name}: tract model inputs");
            let tout: Vec<String> =
                model.output_outlets().unwrap().iter().map(|o| model.outlet_label(*o).map(str::to_string).unwrap_or_else(|| model.node(o.node).name.clone())).collect();
            assert_eq!(outputs, tout, "{name}: tract model outputs");
        } else {
            println!("{name}: tract cannot build an inference model; proto-level comparison only");
        }
    }
    println!("{compared_tensors} tensors compared; tract built {tract_loaded} of the models");
    assert!(compared_tensors > 1000);
}

fn dtype_name(d: DatumType) -> &'static str {
    match d {
        DatumType::F32 => "f32",
        DatumType::F64 => "f64",
        DatumType::F16 => "f16",
        DatumType::I8 => "i8",
        DatumType::U8 => "u8",
        DatumType::I16 => "i16",
        DatumType::U16 => "u16",
        DatumType::I32 => "i32",
        DatumType::U32 => "u32",
        DatumType::I64 => "i64",
        DatumType::U64 => "u64",
        DatumType::Bool => "bool",
        _ => "other",
    }
}
