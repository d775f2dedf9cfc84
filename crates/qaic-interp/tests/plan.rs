//! Framework tests: planning, unsupported-op reporting, liveness, observers, input checks.

use qaic_interp::{InterpError, Plan};
use qaic_ir::{Graph, Node, ValueType};
use qaic_tensor::{DType, Dim, Shape, Tensor, Value};

fn chain(ops: &[&str]) -> Graph {
    let mut g = Graph::new("chain");
    g.set_opset("", 17);
    let shape = Shape(vec![Dim::Sym("n".into())]);
    let mut cur = g.add_input("x", ValueType::tensor(DType::F32, shape));
    for (i, op) in ops.iter().enumerate() {
        let next = g.add_value(format!("v{i}"), None);
        g.add_node(Node {
            name: format!("n{i}"),
            op_type: op.to_string(),
            inputs: vec![Some(cur)],
            outputs: vec![Some(next)],
            ..Default::default()
        });
        cur = next;
    }
    g.outputs.push(cur);
    g
}

#[test]
fn runs_and_observes() {
    let plan = Plan::new(chain(&["Identity", "Identity"])).unwrap();
    let x = Tensor::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]).unwrap();
    let mut seen = Vec::new();
    let out = plan
        .run_observed(vec![x.clone().into()], &mut |g, id, _v| seen.push(g.value(id).name.clone()))
        .unwrap();
    assert!(out[0].as_tensor().unwrap().bitwise_eq(&x));
    assert_eq!(seen, ["x", "v0", "v1"]);
}

#[test]
fn lists_every_unsupported_node() {
    let err = Plan::new(chain(&["Identity", "NoSuchOp", "Identity", "AlsoMissing"])).err().unwrap();
    match err {
        InterpError::Unsupported(list) => {
            let names: Vec<_> = list.iter().map(|u| (u.op_type.as_str(), u.node.as_str())).collect();
            assert_eq!(names, [("NoSuchOp", "n1"), ("AlsoMissing", "n3")]);
            assert!(err_text(&list).contains("NoSuchOp (domain ai.onnx, opset 17) in node `n1`"));
        }
        e => panic!("unexpected {e}"),
    }
}

fn err_text(list: &[qaic_interp::Unsupported]) -> String {
    InterpError::Unsupported(list.to_vec()).to_string()
}

#[test]
fn input_checks_name_the_input() {
    let plan = Plan::new(chain(&["Identity"])).unwrap();
    let wrong = Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap();
    let e = plan.run(vec![wrong.into()]).unwrap_err().to_string();
    assert!(e.contains("input `x`") && e.contains("f32"), "{e}");
    let e = plan.run(vec![]).unwrap_err().to_string();
    assert!(e.contains("takes 1 input"), "{e}");
    let two_d = Tensor::from_vec(vec![1, 1], vec![1.0f32]).unwrap();
    assert!(plan.run(vec![Value::Tensor(two_d)]).is_err());
}
