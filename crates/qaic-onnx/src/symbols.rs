//! Load options, and binding of symbolic input dimensions (`-onnx-define-symbol`,
//! `-batchsize`, or the size of an input file).

use std::collections::BTreeMap;

use qaic_ir::{Graph, ValueType};
use qaic_tensor::{Dim, Shape};

use crate::OnnxError;

/// Options of [`crate::load`], mirroring qaic-exec's loader options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `-onnx-define-symbol=NAME,VALUE` (repeatable): binds symbolic dimension `NAME`.
    pub define_symbols: Vec<(String, usize)>,
    /// `-batchsize=N`: binds the first dimension of every graph input whose first dimension is
    /// symbolic or unknown (a symbol found there is bound everywhere it appears).
    pub batch_size: Option<usize>,
    /// `-always-expand-onnx-functions`: also expand standard operators that the ONNX schema
    /// defines as functions (model-local functions are always expanded).
    pub always_expand_functions: bool,
}

impl LoadOptions {
    /// Parses one `-onnx-define-symbol` value, `NAME,VALUE`.
    ///
    /// ```
    /// let (name, v) = qaic_onnx::LoadOptions::parse_define_symbol("batch,4").unwrap();
    /// assert_eq!((name.as_str(), v), ("batch", 4));
    /// ```
    pub fn parse_define_symbol(s: &str) -> Result<(String, usize), OnnxError> {
        let bad = |why: &str| OnnxError::Symbols {
            origin: "-onnx-define-symbol".into(),
            msg: format!("`{s}`: {why} (expected NAME,VALUE, e.g. batch,1)"),
        };
        let (name, value) = s.rsplit_once(',').ok_or_else(|| bad("no comma"))?;
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        let value = value.trim().parse::<usize>().map_err(|_| bad("VALUE is not a non-negative integer"))?;
        Ok((name.to_string(), value))
    }
}

/// Applies `-onnx-define-symbol` and `-batchsize` to the declared shapes of the graph inputs.
/// Returns the symbols bound, with their values.
pub fn bind_symbols(g: &mut Graph, opts: &LoadOptions, origin: &str) -> Result<BTreeMap<String, usize>, OnnxError> {
    let err = |msg: String| OnnxError::Symbols { origin: origin.to_string(), msg };
    let mut symbols: BTreeMap<String, usize> = BTreeMap::new();
    for (name, v) in &opts.define_symbols {
        if let Some(old) = symbols.insert(name.clone(), *v)
            && old != *v {
                return Err(err(format!("symbol `{name}` is defined twice, as {old} and as {v}")));
            }
    }
    let used: Vec<String> = input_symbols(g);
    for name in symbols.keys() {
        if !used.contains(name) {
            tracing::warn!("{origin}: -onnx-define-symbol={name}: no graph input has a dimension named `{name}`");
        }
    }
    if let Some(b) = opts.batch_size {
        for &id in &g.inputs {
            if let Some(ValueType::Tensor { shape: Some(Shape(dims)), .. }) = &g.value(id).ty
                && let Some(Dim::Sym(s)) = dims.first() {
                    match symbols.get(s) {
                        Some(&v) if v != b => {
                            return Err(err(format!(
                                "-batchsize={b} conflicts with -onnx-define-symbol={s},{v} (input `{}`)",
                                g.value(id).name
                            )));
                        }
                        _ => {
                            symbols.insert(s.clone(), b);
                        }
                    }
                }
        }
    }
    for id in g.inputs.clone() {
        let name = g.value(id).name.clone();
        if let Some(ValueType::Tensor { shape: Some(Shape(dims)), .. }) = &mut g.value_mut(id).ty {
            for (axis, d) in dims.iter_mut().enumerate() {
                match d {
                    Dim::Sym(s) => {
                        if let Some(&v) = symbols.get(s.as_str()) {
                            *d = Dim::Known(v);
                        }
                    }
                    Dim::Unknown if axis == 0 => {
                        if let Some(b) = opts.batch_size {
                            tracing::debug!("{origin}: input `{name}`: unnamed first dimension bound to -batchsize={b}");
                            *d = Dim::Known(b);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(symbols)
}

/// Symbol names used by graph input shapes, in order of first use.
pub fn input_symbols(g: &Graph) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for &id in &g.inputs {
        if let Some(s) = g.value(id).ty.as_ref().and_then(ValueType::tensor_shape) {
            for name in s.symbols() {
                if !out.iter().any(|o| o == name) {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

/// Dimensions of graph inputs that are still not concrete: (input name, axis, dim).
pub fn unbound_dims(g: &Graph) -> Vec<(String, usize, Dim)> {
    let mut out = Vec::new();
    for &id in &g.inputs {
        let v = g.value(id);
        if let Some(s) = v.ty.as_ref().and_then(ValueType::tensor_shape) {
            for (axis, d) in s.0.iter().enumerate() {
                if d.known().is_none() {
                    out.push((v.name.clone(), axis, d.clone()));
                }
            }
        }
    }
    out
}

/// Binds every occurrence of symbol `name` in the graph inputs' shapes to `value`.
pub fn bind_symbol(g: &mut Graph, name: &str, value: usize) {
    for id in g.inputs.clone() {
        if let Some(ValueType::Tensor { shape: Some(Shape(dims)), .. }) = &mut g.value_mut(id).ty {
            for d in dims.iter_mut() {
                if matches!(d, Dim::Sym(s) if s == name) {
                    *d = Dim::Known(value);
                }
            }
        }
    }
}

/// The concrete shape of input `input` (declared type `ty`) given the byte size of the data
/// file supplied for it: a single unbound dimension (symbolic or unnamed) is inferred from the
/// size; more than one is an error naming them; with none, the size must match.
///
/// ```
/// use qaic_ir::ValueType;
/// use qaic_tensor::{DType, Dim, Shape};
/// let ty = ValueType::tensor(DType::F32, Shape(vec![Dim::Sym("n".into()), Dim::Known(3)]));
/// assert_eq!(qaic_onnx::infer_input_dims("x", &ty, 2 * 3 * 4).unwrap(), vec![2, 3]);
/// ```
pub fn infer_input_dims(input: &str, ty: &ValueType, byte_size: usize) -> Result<Vec<usize>, OnnxError> {
    let err = |msg: String| OnnxError::Symbols { origin: format!("input `{input}`"), msg };
    let ValueType::Tensor { dtype, shape } = ty else {
        return Err(err(format!("type {ty} is not a tensor; its size cannot be taken from a file")));
    };
    let Some(Shape(dims)) = shape else {
        return Err(err("the model does not declare its rank, so its shape cannot be inferred".into()));
    };
    let bits = dtype.bits();
    if bits == 0 {
        return Err(err(format!("{dtype} inputs cannot be read from a raw file")));
    }
    let unbound: Vec<(usize, &Dim)> = dims.iter().enumerate().filter(|(_, d)| d.known().is_none()).collect();
    let known: usize = dims.iter().filter_map(Dim::known).try_fold(1usize, |a, d| a.checked_mul(d)).ok_or_else(|| err("shape overflows".into()))?;
    match unbound.as_slice() {
        [] => {
            let need = dtype.storage_bytes(known);
            if need != byte_size {
                return Err(err(format!("shape {} of {dtype} needs {need} bytes, the file has {byte_size}", Shape(dims.clone()))));
            }
            Ok(dims.iter().filter_map(Dim::known).collect())
        }
        [(axis, d)] => {
            let elems = (byte_size * 8) / bits;
            if known == 0 || !(byte_size * 8).is_multiple_of(bits) || !elems.is_multiple_of(known) {
                return Err(err(format!(
                    "cannot infer dimension {axis} (`{d}`) of shape {}: {byte_size} bytes is not a whole number of {dtype} elements times {known}",
                    Shape(dims.clone())
                )));
            }
            let v = elems / known;
            if dtype.storage_bytes(v * known) != byte_size {
                return Err(err(format!("{byte_size} bytes do not fit shape {} with any value of dimension {axis}", Shape(dims.clone()))));
            }
            Ok(dims.iter().map(|x| x.known().unwrap_or(v)).collect())
        }
        many => {
            let list: Vec<String> = many.iter().map(|(a, d)| format!("axis {a} (`{d}`)")).collect();
            Err(err(format!(
                "{} dimensions of shape {} are unbound: {}; only one can be inferred from the input file's size. Bind the others with -onnx-define-symbol=NAME,VALUE",
                many.len(),
                Shape(dims.clone()),
                list.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qaic_tensor::DType;

    fn graph() -> Graph {
        let mut g = Graph::new("g");
        g.add_input("a", ValueType::tensor(DType::F32, Shape(vec![Dim::Sym("batch".into()), Dim::Sym("seq".into())])));
        g.add_input("b", ValueType::tensor(DType::I64, Shape(vec![Dim::Unknown, Dim::Sym("seq".into()), Dim::Known(3)])));
        g
    }

    #[test]
    fn define_symbols_and_batch() {
        let mut g = graph();
        let opts = LoadOptions { define_symbols: vec![("seq".into(), 64)], batch_size: Some(2), ..Default::default() };
        let bound = bind_symbols(&mut g, &opts, "m").unwrap();
        assert_eq!(bound.get("batch"), Some(&2));
        assert!(unbound_dims(&g).is_empty(), "{:?}", unbound_dims(&g));
        assert_eq!(g.value(g.inputs[1]).ty.as_ref().unwrap().tensor_shape().unwrap().concrete(), Some(vec![2, 64, 3]));

        let mut g = graph();
        let opts = LoadOptions { define_symbols: vec![("batch".into(), 1)], batch_size: Some(2), ..Default::default() };
        assert!(bind_symbols(&mut g, &opts, "m").unwrap_err().to_string().contains("conflicts"));
        let opts = LoadOptions { define_symbols: vec![("x".into(), 1), ("x".into(), 2)], ..Default::default() };
        assert!(bind_symbols(&mut graph(), &opts, "m").unwrap_err().to_string().contains("defined twice"));
        assert!(LoadOptions::parse_define_symbol("batch").is_err());
        assert!(LoadOptions::parse_define_symbol("batch,-1").is_err());
        assert_eq!(LoadOptions::parse_define_symbol("a,b,3").unwrap(), ("a,b".to_string(), 3));
    }

    #[test]
    fn infer_from_file_size() {
        let ty = ValueType::tensor(DType::F32, Shape(vec![Dim::Sym("n".into()), Dim::Known(3)]));
        assert_eq!(infer_input_dims("x", &ty, 24).unwrap(), vec![2, 3]);
        assert!(infer_input_dims("x", &ty, 25).is_err());
        let ty = ValueType::tensor(DType::F32, Shape(vec![Dim::Sym("n".into()), Dim::Unknown]));
        let e = infer_input_dims("x", &ty, 24).unwrap_err().to_string();
        assert!(e.contains("axis 0 (`n`)") && e.contains("axis 1 (`?`)"), "{e}");
        let ty = ValueType::tensor(DType::I4, Shape(vec![Dim::Unknown]));
        assert_eq!(infer_input_dims("x", &ty, 3).unwrap(), vec![6]);
        let ty = ValueType::tensor(DType::F32, Shape::known(&[2]));
        assert!(infer_input_dims("x", &ty, 4).unwrap_err().to_string().contains("needs 8 bytes"));
    }
}
