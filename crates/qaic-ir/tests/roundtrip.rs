//! Property test of the text form: for random graphs using every construct, printing then
//! parsing gives a structurally equal graph, and printing that again gives the same text.

use std::collections::BTreeMap;

use proptest::prelude::*;
use qaic_ir::{Attr, Graph, Node, PrintOptions, ValueType};
use qaic_tensor::{DType, Dim, Shape, Tensor};

/// A small deterministic generator driven by a proptest-chosen seed (splitmix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const NAMES: &[&str] = &[
    "x", "conv1.weight", "/layer.0/Add_output_0", "onnx::MatMul_12", "387", "with space", "quote\"d", "tab\tnew\nline",
    "ünïcödé", "_", "a-b", "nan", "inf", "", "%pct", "@at", "#hash",
];

fn name(r: &mut Rng, used: &mut Vec<String>) -> String {
    loop {
        let base = r.pick(NAMES).to_string();
        let n = if r.chance(50) { format!("{base}{}", r.below(100)) } else { base };
        if !n.is_empty() && !used.contains(&n) {
            used.push(n.clone());
            return n;
        }
    }
}

fn bytes(r: &mut Rng) -> Vec<u8> {
    let n = r.below(8);
    (0..n)
        .map(|_| match r.below(4) {
            0 => r.below(256) as u8,
            1 => b"\"\\\n\t\r#%"[r.below(7)],
            _ => b'a' + r.below(26) as u8,
        })
        .collect()
}

fn utf8(r: &mut Rng) -> String {
    let mut s = String::from_utf8_lossy(&bytes(r)).into_owned();
    if r.chance(20) {
        s.push('中');
    }
    s
}

fn dim(r: &mut Rng) -> Dim {
    match r.below(4) {
        0 => Dim::Unknown,
        1 => Dim::Sym(r.pick(&["batch", "seq", "p2o.DynamicDimension.0", "unk__214", "3", "?", "a b", "_", "inf"]).to_string()),
        _ => Dim::Known(r.below(5)),
    }
}

fn ty(r: &mut Rng, depth: usize) -> ValueType {
    match if depth > 1 { 0 } else { r.below(8) } {
        5 => ValueType::Sequence(Box::new(ty(r, depth + 1))),
        6 => ValueType::Optional(Box::new(ty(r, depth + 1))),
        7 => ValueType::Map(*r.pick(&[DType::I64, DType::String]), Box::new(ty(r, depth + 1))),
        _ => {
            let dtype = *r.pick(&DType::ALL);
            if r.chance(15) {
                ValueType::Tensor { dtype, shape: None }
            } else {
                let rank = r.below(4);
                ValueType::tensor(dtype, Shape((0..rank).map(|_| dim(r)).collect()))
            }
        }
    }
}

fn f32_bits(r: &mut Rng) -> f32 {
    match r.below(6) {
        0 => *r.pick(&[f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, f32::MIN_POSITIVE / 4.0]),
        1 => f32::from_bits(0x7f80_0000 | (r.next() as u32 & 0x807f_ffff) | 1),
        2 => (r.below(2000) as f32 - 1000.0) / 8.0,
        _ => f32::from_bits(r.next() as u32),
    }
}

fn tensor(r: &mut Rng) -> Tensor {
    let dtype = *r.pick(&DType::ALL);
    let rank = r.below(3);
    // Sometimes large, to exercise hex printing of inline-able types.
    let shape: Vec<usize> = (0..rank).map(|_| if r.chance(10) { 7 } else { r.below(4) }).collect();
    let n: usize = shape.iter().product();
    if dtype == DType::String {
        let items = (0..n).map(|_| bytes(r)).collect();
        return Tensor::from_strings(shape, items).expect("sizes match");
    }
    if dtype == DType::F32 && r.chance(50) {
        return Tensor::from_vec(shape, (0..n).map(|_| f32_bits(r)).collect()).expect("sizes match");
    }
    let mut raw: Vec<u8> = (0..dtype.storage_bytes(n)).map(|_| r.next() as u8).collect();
    if dtype == DType::Bool {
        raw.iter_mut().for_each(|b| *b &= 1);
    }
    Tensor::from_bytes(dtype, shape, raw.into()).expect("sizes match")
}

fn attr(r: &mut Rng, outer: &Graph, depth: usize) -> Attr {
    let k = if depth > 1 { r.below(10) } else { r.below(12) };
    let len = r.below(4);
    match k {
        0 => Attr::Float(f32_bits(r)),
        1 => Attr::Int(r.next() as i64 >> r.below(64)),
        2 => Attr::String(bytes(r)),
        3 => Attr::Tensor(tensor(r)),
        4 => Attr::Floats((0..len).map(|_| f32_bits(r)).collect()),
        5 => Attr::Ints((0..len).map(|_| r.next() as i64 >> 40).collect()),
        6 => Attr::Strings((0..len).map(|_| bytes(r)).collect()),
        7 => Attr::Tensors((0..len).map(|_| tensor(r)).collect()),
        8 => Attr::Type(ty(r, 0)),
        9 => Attr::Types((0..len).map(|_| ty(r, 0)).collect()),
        10 => Attr::Graph(Box::new(graph(r, Some(outer), depth + 1))),
        _ => Attr::Graphs((0..len.min(2)).map(|_| graph(r, Some(outer), depth + 1)).collect()),
    }
}

fn graph(r: &mut Rng, outer: Option<&Graph>, depth: usize) -> Graph {
    let mut used = Vec::new();
    let mut g = Graph::new(r.pick(&["main", "then_branch", "body", "", "sub graph"]).to_string());
    g.set_opset("", 7 + r.below(18) as i64);
    if r.chance(30) {
        g.set_opset("com.microsoft", 1);
    }
    for _ in 0..r.below(3) {
        g.metadata.insert(utf8(r), utf8(r));
    }
    let mut avail = Vec::new();
    for _ in 0..r.below(3) {
        let n = name(r, &mut used);
        let t = ty(r, 0);
        let id = g.add_input(n, t);
        if r.chance(10) {
            g.value_mut(id).ty = None;
        }
        avail.push(id);
    }
    if let Some(o) = outer {
        // Capture some enclosing values (any enclosing value may be captured).
        for v in o.values.iter().take(2) {
            if r.chance(50) && !used.contains(&v.name) {
                used.push(v.name.clone());
                let id = g.add_value(v.name.clone(), v.ty.clone());
                g.captures.push(id);
                avail.push(id);
            }
        }
    }
    for _ in 0..r.below(3) {
        let n = name(r, &mut used);
        let t = tensor(r);
        let id = g.add_constant(n, t);
        match r.below(5) {
            0 => g.value_mut(id).ty = None,
            1 => {
                let d = g.value(id).ty.as_ref().and_then(|t| t.tensor_dtype()).unwrap_or(DType::F32);
                g.value_mut(id).ty = Some(ValueType::Tensor { dtype: d, shape: None });
            }
            _ => {}
        }
        if r.chance(20) {
            g.inputs.push(id);
        }
        avail.push(id);
    }
    if r.chance(20) {
        let n = name(r, &mut used);
        let t = if r.chance(50) { Some(ty(r, 0)) } else { None };
        g.add_value(n, t);
    }
    for _ in 0..r.below(5) {
        let inputs = (0..r.below(4))
            .map(|_| if avail.is_empty() || r.chance(15) { None } else { Some(*r.pick(&avail)) })
            .collect();
        let mut outputs = Vec::new();
        for _ in 0..r.below(3) {
            if r.chance(15) {
                outputs.push(None);
            } else {
                let n = name(r, &mut used);
                let t = if r.chance(50) { Some(ty(r, 0)) } else { None };
                outputs.push(Some(g.add_value(n, t)));
            }
        }
        let mut attrs = BTreeMap::new();
        for _ in 0..r.below(4) {
            let a = attr(r, &g, depth);
            attrs.insert(r.pick(&["axis", "value", "then_branch", "x y", "", "_", "perm"]).to_string(), a);
        }
        let domain = r.pick(&["", "", "", "com.microsoft", "ai.onnx"]).to_string();
        if domain == "ai.onnx" && r.chance(50) {
            g.opsets.insert("ai.onnx".into(), 3);
        }
        let node = Node {
            name: r.pick(&["", "", "conv1", "/conv1/Conv", "Add_0", "x\"y"]).to_string(),
            domain,
            op_type: r.pick(&["Relu", "Conv", "If", "Loop", "DynamicQuantizeLSTM", "op.with.dots", "_"]).to_string(),
            inputs,
            outputs: outputs.clone(),
            attrs,
        };
        g.add_node(node);
        avail.extend(outputs.into_iter().flatten());
    }
    for _ in 0..r.below(3) {
        if !avail.is_empty() {
            let o = *r.pick(&avail);
            g.outputs.push(o);
        }
    }
    g
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn print_parse_is_a_fixed_point(seed in any::<u64>()) {
        let mut r = Rng(seed);
        let g = graph(&mut r, None, 0);
        let opts = PrintOptions { inline_elements: r.below(20), elide_bytes_over: None };
        let text = g.to_text_with(&opts);
        let parsed = match qaic_ir::parse(&text) {
            Ok(p) => p,
            Err(e) => panic!("{e}\n{text}"),
        };
        if let Some(d) = g.structural_diff(&parsed) {
            panic!("{d}\n{text}");
        }
        prop_assert_eq!(parsed.to_text_with(&opts), text.clone());
        // The default options too, and Display.
        prop_assert_eq!(qaic_ir::parse(&g.to_string()).map(|p| p.to_string()).ok(), Some(g.to_string()));
    }

    #[test]
    fn elided_listings_are_refused(seed in any::<u64>()) {
        let mut r = Rng(seed);
        let g = graph(&mut r, None, 0);
        let text = g.to_text_with(&PrintOptions { inline_elements: 16, elide_bytes_over: Some(4) });
        if text.contains("bytes elided>") {
            prop_assert!(text.starts_with("# constants larger"));
            let e = qaic_ir::parse(&text).unwrap_err();
            prop_assert!(e.msg.contains("elided"), "{}", e);
        }
    }
}
