//! Helpers shared by the integration tests: small models built with the prost types.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use prost::Message;
use qaic_onnx::proto::{
    attribute_proto::AttributeType, tensor_proto::DataLocation, type_proto, AttributeProto, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The shared read-only data folder (`QAIC_SHARED`, default `/work/shared`).
pub fn shared() -> PathBuf {
    std::env::var_os("QAIC_SHARED").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/work/shared"))
}

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(v), ..Default::default() }
}

pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Float as i32), f: Some(v), ..Default::default() }
}

pub fn attr_ref(name: &str, refers_to: &str, ty: AttributeType) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(ty as i32),
        ref_attr_name: Some(refers_to.into()),
        ..Default::default()
    }
}

/// A float tensor type; `None` dims are symbolic with the given name.
pub fn float_input(name: &str, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    use qaic_onnx::proto::tensor_shape_proto::{dimension::Value as D, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Ok(v) => D::DimValue(*v),
                Err(s) => D::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn output(name: &str) -> ValueInfoProto {
    ValueInfoProto { name: Some(name.into()), ..Default::default() }
}

pub fn f32_tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into()),
        ..Default::default()
    }
}

/// A tensor whose data lives in an external file.
pub fn external_tensor(name: &str, dims: &[i64], location: &str, offset: Option<u64>, length: Option<u64>) -> TensorProto {
    let mut external_data = vec![StringStringEntryProto { key: Some("location".into()), value: Some(location.into()) }];
    if let Some(o) = offset {
        external_data.push(StringStringEntryProto { key: Some("offset".into()), value: Some(o.to_string()) });
    }
    if let Some(l) = length {
        external_data.push(StringStringEntryProto { key: Some("length".into()), value: Some(l.to_string()) });
    }
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        data_location: Some(DataLocation::External as i32),
        external_data,
        ..Default::default()
    }
}

pub fn model(graph: GraphProto, opset: i64) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        graph: Some(graph),
        ..Default::default()
    }
}

pub fn write_model(dir: &Path, name: &str, m: &ModelProto) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).expect("write model");
    p
}

/// `y = Relu(x)` with x: [batch, 4].
pub fn relu_model() -> ModelProto {
    model(
        GraphProto {
            name: Some("relu".into()),
            node: vec![node("Relu", "r", &["x"], &["y"])],
            input: vec![float_input("x", &[Err("batch"), Ok(4)])],
            output: vec![output("y")],
            ..Default::default()
        },
        13,
    )
}
