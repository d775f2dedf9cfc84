//! The text form, printing side. The grammar is in `docs/ir.md`; [`crate::parse`] reads it back.
//!
//! Printing is exact: every float is written so that it parses back to the same bits (shortest
//! round-trip decimal, `nan:0x…` for NaN payloads), strings are escaped, and tensors that are too
//! large (or of packed/exotic element types) are written as little-endian hex bytes.

use std::collections::HashSet;
use std::fmt::{self, Write};

use qaic_tensor::{DType, Dim, Shape, Tensor};

use crate::graph::{Attr, Graph, ValueId, ValueType};

/// How to print a graph.
#[derive(Clone, Debug)]
pub struct PrintOptions {
    /// Tensors with at most this many elements are printed as a list of values; larger ones as
    /// hex bytes.
    pub inline_elements: usize,
    /// When set, tensors whose storage exceeds this many bytes are left out (`<N bytes elided>`)
    /// and the listing says so in its first line. Such a listing is for humans: [`crate::parse`]
    /// refuses it.
    pub elide_bytes_over: Option<usize>,
}

impl Default for PrintOptions {
    fn default() -> Self {
        PrintOptions { inline_elements: 16, elide_bytes_over: None }
    }
}

impl PrintOptions {
    /// Options for human listings: tensors above 64 bytes are elided.
    pub fn listing() -> PrintOptions {
        PrintOptions { inline_elements: 16, elide_bytes_over: Some(64) }
    }
}

/// First line of a listing printed with elided constants.
pub(crate) const ELIDED_HEADER: &str =
    "# constants larger than the listing limit are elided: this text cannot be parsed back";

impl Graph {
    /// The exact text form (parses back with [`crate::parse`] to a structurally equal graph).
    ///
    /// ```
    /// use qaic_ir::{Graph, Node, ValueType};
    /// use qaic_tensor::{DType, Dim, Shape};
    /// let mut g = Graph::new("tiny");
    /// g.set_opset("", 17);
    /// let x = g.add_input("x", ValueType::tensor(DType::F32, Shape(vec![Dim::Sym("n".into())])));
    /// let y = g.add_value("y", None);
    /// g.add_node(Node { op_type: "Relu".into(), inputs: vec![Some(x)], outputs: vec![Some(y)], ..Default::default() });
    /// g.outputs.push(y);
    /// let text = g.to_text();
    /// assert_eq!(text, "graph tiny {\n  opset \"\" = 17\n  input %x: f32[n]\n  %y = Relu(%x)\n  output %y\n}\n");
    /// assert_eq!(qaic_ir::parse(&text).unwrap().to_text(), text);
    /// ```
    pub fn to_text(&self) -> String {
        self.to_text_with(&PrintOptions::default())
    }

    /// The text form with explicit options (see [`PrintOptions::listing`] for human listings).
    pub fn to_text_with(&self, opts: &PrintOptions) -> String {
        let mut p = Printer { opts, out: String::new(), elided: false };
        p.graph(self, 0);
        if p.elided {
            format!("{ELIDED_HEADER}\n{}", p.out)
        } else {
            p.out
        }
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

struct Printer<'o> {
    opts: &'o PrintOptions,
    out: String,
    elided: bool,
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

impl Printer<'_> {
    fn graph(&mut self, g: &Graph, level: usize) {
        self.out.push_str("graph ");
        self.out.push_str(&ident(&g.name));
        self.out.push_str(" {\n");
        let inner = level + 1;
        for (d, v) in &g.opsets {
            indent(&mut self.out, inner);
            let _ = writeln!(self.out, "opset {} = {v}", quoted(d.as_bytes()));
        }
        for (k, v) in &g.metadata {
            indent(&mut self.out, inner);
            let _ = writeln!(self.out, "meta {} = {}", quoted(k.as_bytes()), quoted(v.as_bytes()));
        }
        let mut declared: HashSet<ValueId> = HashSet::new();
        for &i in &g.inputs {
            self.decl(g, "input", i, inner);
            declared.insert(i);
        }
        for &c in &g.captures {
            self.decl(g, "capture", c, inner);
            declared.insert(c);
        }
        let mut produced = vec![false; g.values.len()];
        for n in &g.nodes {
            for o in n.outputs.iter().flatten() {
                if let Some(p) = produced.get_mut(o.index()) {
                    *p = true;
                }
            }
        }
        for (i, v) in g.values.iter().enumerate() {
            let id = ValueId(i as u32);
            if v.constant.is_some() && !declared.contains(&id) {
                self.decl(g, "const", id, inner);
            }
        }
        for (i, v) in g.values.iter().enumerate() {
            let id = ValueId(i as u32);
            if v.constant.is_none() && !declared.contains(&id) && !produced[i] {
                self.decl(g, "value", id, inner);
            }
        }
        for n in &g.nodes {
            indent(&mut self.out, inner);
            if n.outputs.is_empty() {
                self.out.push_str("()");
            }
            for (k, o) in n.outputs.iter().enumerate() {
                if k > 0 {
                    self.out.push_str(", ");
                }
                match o {
                    None => self.out.push('_'),
                    Some(o) => {
                        let v = value_data(g, *o);
                        self.out.push_str(&value_ref(g, *o));
                        if let Some(ty) = v.and_then(|v| v.ty.as_ref()) {
                            let _ = write!(self.out, ": {}", fmt_type(ty));
                        }
                    }
                }
            }
            self.out.push_str(" = ");
            if !n.domain.is_empty() {
                self.out.push_str(&ident(&n.domain));
                self.out.push_str("::");
            }
            self.out.push_str(&ident(&n.op_type));
            self.out.push('(');
            for (k, i) in n.inputs.iter().enumerate() {
                if k > 0 {
                    self.out.push_str(", ");
                }
                match i {
                    None => self.out.push('_'),
                    Some(i) => self.out.push_str(&value_ref(g, *i)),
                }
            }
            self.out.push(')');
            if !n.attrs.is_empty() {
                self.out.push_str(" {");
                for (k, (name, a)) in n.attrs.iter().enumerate() {
                    if k > 0 {
                        self.out.push_str(", ");
                    }
                    self.out.push_str(&ident(name));
                    self.out.push_str(" = ");
                    self.attr(a, inner);
                }
                self.out.push('}');
            }
            if !n.name.is_empty() {
                self.out.push_str(" @");
                self.out.push_str(&bare_or_quoted_name(&n.name));
            }
            self.out.push('\n');
        }
        if !g.outputs.is_empty() {
            indent(&mut self.out, inner);
            self.out.push_str("output ");
            let refs: Vec<String> = g.outputs.iter().map(|o| value_ref(g, *o)).collect();
            self.out.push_str(&refs.join(", "));
            self.out.push('\n');
        }
        indent(&mut self.out, level);
        self.out.push_str("}");
        if level == 0 {
            self.out.push('\n');
        }
    }

    /// `kw %name[: type][= tensor]`; with an initializer, a missing type means the tensor's own
    /// type and `: ?` means "no type".
    fn decl(&mut self, g: &Graph, kw: &str, id: ValueId, level: usize) {
        indent(&mut self.out, level);
        let _ = write!(self.out, "{kw} {}", value_ref(g, id));
        if let Some(v) = value_data(g, id) {
            match (&v.constant, &v.ty) {
                (Some(t), Some(ty)) if *ty == natural_type(t) => {}
                (Some(_), None) => self.out.push_str(": ?"),
                (_, Some(ty)) => {
                    let _ = write!(self.out, ": {}", fmt_type(ty));
                }
                (None, None) => {}
            }
            if let Some(t) = &v.constant {
                self.out.push_str(" = ");
                self.tensor(t);
            }
        }
        self.out.push('\n');
    }

    fn attr(&mut self, a: &Attr, level: usize) {
        match a {
            Attr::Float(v) => self.out.push_str(&fmt_f32(*v)),
            Attr::Int(v) => {
                let _ = write!(self.out, "{v}");
            }
            Attr::String(s) => self.out.push_str(&quoted(s)),
            Attr::Tensor(t) => self.tensor(t),
            Attr::Graph(g) => self.graph(g, level),
            Attr::Type(t) => {
                let _ = write!(self.out, "type {}", fmt_type(t));
            }
            Attr::Floats(v) => self.list("floats", v, |p, x| p.out.push_str(&fmt_f32(*x))),
            Attr::Ints(v) => self.list("ints", v, |p, x| {
                let _ = write!(p.out, "{x}");
            }),
            Attr::Strings(v) => self.list("strings", v, |p, x| p.out.push_str(&quoted(x))),
            Attr::Tensors(v) => self.list("tensors", v, |p, x| p.tensor(x)),
            Attr::Graphs(v) => self.list("graphs", v, |p, x| p.graph(x, level)),
            Attr::Types(v) => self.list("types", v, |p, x| {
                let _ = write!(p.out, "type {}", fmt_type(x));
            }),
        }
    }

    fn list<T>(&mut self, kind: &str, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        if items.is_empty() {
            let _ = write!(self.out, "{kind}[]");
            return;
        }
        self.out.push('[');
        for (k, x) in items.iter().enumerate() {
            if k > 0 {
                self.out.push_str(", ");
            }
            each(self, x);
        }
        self.out.push(']');
    }

    fn tensor(&mut self, t: &Tensor) {
        let _ = write!(self.out, "{}[", t.dtype());
        for (k, d) in t.shape().iter().enumerate() {
            if k > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{d}");
        }
        self.out.push_str("] ");
        let size = match t.strings() {
            Ok(s) => s.iter().map(|x| x.len()).sum(),
            Err(_) => t.raw_bytes().map(|b| b.len()).unwrap_or(0),
        };
        if self.opts.elide_bytes_over.is_some_and(|lim| size > lim) {
            self.elided = true;
            let _ = write!(self.out, "<{size} bytes elided>");
            return;
        }
        if let Ok(strings) = t.strings() {
            let items: Vec<String> = strings.iter().map(|s| quoted(s)).collect();
            let _ = write!(self.out, "[{}]", items.join(", "));
            return;
        }
        if t.len() <= self.opts.inline_elements {
            if let Some(items) = inline_elements(t) {
                let _ = write!(self.out, "[{}]", items.join(", "));
                return;
            }
        }
        self.out.push_str("hex\"");
        for b in t.raw_bytes().unwrap_or(&[]) {
            let _ = write!(self.out, "{b:02x}");
        }
        self.out.push('"');
    }
}

fn value_data(g: &Graph, id: ValueId) -> Option<&crate::ValueData> {
    g.values.get(id.index())
}

/// `%name`, or `%#17` for an id out of range (an invalid graph still prints, for debugging).
fn value_ref(g: &Graph, id: ValueId) -> String {
    match value_data(g, id) {
        Some(v) => format!("%{}", bare_or_quoted_name(&v.name)),
        None => format!("%\"#invalid{}\"", id.0),
    }
}

/// The type a constant has when nothing else is declared.
pub(crate) fn natural_type(t: &Tensor) -> ValueType {
    ValueType::tensor(t.dtype(), Shape::known(t.shape()))
}

/// Characters allowed in unquoted value and node names (after `%` and `@`).
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')
}

pub(crate) fn bare_or_quoted_name(s: &str) -> String {
    if !s.is_empty() && s.chars().all(is_name_char) {
        s.to_string()
    } else {
        quoted(s.as_bytes())
    }
}

pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Identifiers print bare when they lex back as the same identifier; `_`, `inf` and `nan`
/// would lex as something else, so they are quoted.
pub(crate) fn ident(s: &str) -> String {
    let mut cs = s.chars();
    let bare = cs.next().is_some_and(is_ident_start)
        && cs.all(is_ident_char)
        && !matches!(s, "_" | "inf" | "nan");
    if bare { s.to_string() } else { quoted(s.as_bytes()) }
}

/// A double-quoted string: valid UTF-8 is kept (control characters escaped), other bytes are
/// written as `\xHH`.
pub(crate) fn quoted(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

pub(crate) fn fmt_dim(d: &Dim) -> String {
    match d {
        Dim::Known(n) => n.to_string(),
        Dim::Unknown => "?".to_string(),
        Dim::Sym(s) => ident(s),
    }
}

pub(crate) fn fmt_shape(s: &Shape) -> String {
    let dims: Vec<String> = s.0.iter().map(fmt_dim).collect();
    format!("[{}]", dims.join(","))
}

/// A type in the text form (symbol names quoted when they would not lex as identifiers).
pub(crate) fn fmt_type(t: &ValueType) -> String {
    match t {
        ValueType::Tensor { dtype, shape: Some(s) } => format!("{dtype}{}", fmt_shape(s)),
        ValueType::Tensor { dtype, shape: None } => format!("{dtype}[*]"),
        ValueType::Sequence(t) => format!("seq<{}>", fmt_type(t)),
        ValueType::Optional(t) => format!("opt<{}>", fmt_type(t)),
        ValueType::Map(k, v) => format!("map<{k},{}>", fmt_type(v)),
    }
}

/// Exact f32: shortest decimal that parses back to the same value; `nan` for the canonical
/// quiet NaN and `nan:0x…` (raw bits) for any other NaN.
pub(crate) fn fmt_f32(v: f32) -> String {
    if v.is_nan() {
        let bits = v.to_bits();
        if bits == 0x7fc0_0000 { "nan".into() } else { format!("nan:0x{bits:08x}") }
    } else {
        format!("{v:?}")
    }
}

pub(crate) fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        let bits = v.to_bits();
        if bits == 0x7ff8_0000_0000_0000 { "nan".into() } else { format!("nan:0x{bits:016x}") }
    } else {
        format!("{v:?}")
    }
}

/// Half-precision values go through f32, which holds every f16/bf16 value exactly.
fn fmt_half(bits: u16, as_f32: f32) -> String {
    if as_f32.is_nan() { format!("nan:0x{bits:04x}") } else { format!("{as_f32:?}") }
}

/// Element texts for the types printed as value lists; `None` for types printed as hex.
fn inline_elements(t: &Tensor) -> Option<Vec<String>> {
    fn all<T: qaic_tensor::Element>(t: &Tensor, f: impl Fn(&T) -> String) -> Option<Vec<String>> {
        Some(t.view::<T>().ok()?.iter().map(f).collect())
    }
    match t.dtype() {
        DType::F32 => all::<f32>(t, |v| fmt_f32(*v)),
        DType::F64 => all::<f64>(t, |v| fmt_f64(*v)),
        DType::F16 => all::<qaic_tensor::f16>(t, |v| fmt_half(v.to_bits(), v.to_f32())),
        DType::BF16 => all::<qaic_tensor::bf16>(t, |v| fmt_half(v.to_bits(), v.to_f32())),
        DType::I8 => all::<i8>(t, |v| v.to_string()),
        DType::U8 => all::<u8>(t, |v| v.to_string()),
        DType::I16 => all::<i16>(t, |v| v.to_string()),
        DType::U16 => all::<u16>(t, |v| v.to_string()),
        DType::I32 => all::<i32>(t, |v| v.to_string()),
        DType::U32 => all::<u32>(t, |v| v.to_string()),
        DType::I64 => all::<i64>(t, |v| v.to_string()),
        DType::U64 => all::<u64>(t, |v| v.to_string()),
        DType::Bool => all::<bool>(t, |v| v.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quoted(b"a\"b\\c\n\x01\xff\xe4\xb8\xad"), "\"a\\\"b\\\\c\\n\\x01\\xff\u{4e2d}\"");
        assert_eq!(ident("com.microsoft"), "com.microsoft");
        assert_eq!(ident("3x"), "\"3x\"");
        assert_eq!(ident("_"), "\"_\"");
        assert_eq!(ident(""), "\"\"");
        assert_eq!(bare_or_quoted_name("/conv1/Conv"), "/conv1/Conv");
        assert_eq!(bare_or_quoted_name("onnx::Add_1"), "\"onnx::Add_1\"");
    }

    #[test]
    fn floats_are_exact() {
        assert_eq!(fmt_f32(1.0), "1.0");
        assert_eq!(fmt_f32(-0.0), "-0.0");
        assert_eq!(fmt_f32(f32::INFINITY), "inf");
        assert_eq!(fmt_f32(f32::NAN), "nan");
        assert_eq!(fmt_f32(f32::from_bits(0xffc0_0001)), "nan:0xffc00001");
        assert_eq!(fmt_f32(1e-7), "1e-7");
    }
}
