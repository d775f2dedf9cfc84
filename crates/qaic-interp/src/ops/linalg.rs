//! Matrix products: MatMul, Gemm (f32 through the shared GEMM kernels; other types generic).

use std::sync::Arc;

use qaic_kernels::gemm::{matmul_shape, Mat, MatMut, PackedB};
use qaic_kernels::Kernels;
use qaic_tensor::{DType, Tensor, Value};

use super::util::{input, opt_input, out1};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("MatMul", 1, matmul);
    r.add("Gemm", 1, gemm);
}

/// The kernels selected by `QAIC_KERNELS` (or the best available).
pub(crate) fn kernels() -> Result<&'static Kernels, OpError> {
    Kernels::from_env().map_err(|e| OpError::Msg(e.to_string()))
}

fn kerr(e: qaic_kernels::KernelError) -> OpError {
    OpError::Msg(e.to_string())
}

struct MatMulOp {
    k: &'static Kernels,
    /// Constant 2-D f32 right operand, packed once.
    packed_b: Option<Arc<PackedB>>,
    /// A bias vector fused by the plan optimizer (`crate::optimize`), added in the epilogue.
    bias: Option<Vec<f32>>,
}

fn matmul(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let k = kernels()?;
    let packed_b = match ctx.const_input(1) {
        Some(b) if b.dtype() == DType::F32 && b.rank() == 2 => {
            let v = b.view::<f32>()?;
            Some(Arc::new(k.pack_b(Mat::row_major(&v, b.shape()[0], b.shape()[1]).map_err(kerr)?)))
        }
        _ => None,
    };
    let bias = if ctx.attr_i(crate::optimize::BIAS, 0)? != 0 {
        let b = ctx.const_input(2).ok_or("fused MatMul bias is not a constant")?;
        Some(b.to_vec::<f32>()?)
    } else {
        None
    };
    Ok(Box::new(MatMulOp { k, packed_b, bias }))
}

impl Kernel for MatMulOp {
    fn run(&self, _: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Option<Value>>, OpError> {
        let a = input(inputs, 0)?;
        let b = input(inputs, 1)?;
        if a.dtype() != b.dtype() {
            return Err(OpError::Msg(format!("operands have different types {} and {}", a.dtype(), b.dtype())));
        }
        let shape = matmul_shape(a.shape(), b.shape()).map_err(kerr)?;
        match a.dtype() {
            DType::F32 => {
                let av = a.view::<f32>()?;
                let mut out = qaic_tensor::recycle::reuse_vec::<f32>(shape.iter().product());
                match &self.packed_b {
                    Some(pb) if b.rank() == 2 => {
                        let epi = qaic_kernels::gemm::Epilogue {
                            bias: self.bias.as_deref().map_or(Default::default(), qaic_kernels::gemm::Bias::Col),
                            ..Default::default()
                        };
                        self.k.matmul_packed(&av, a.shape(), pb, &mut out, &epi).map_err(kerr)?;
                    }
                    _ => {
                        let bv = b.view::<f32>()?;
                        self.k.matmul(&av, a.shape(), &bv, b.shape(), &mut out).map_err(kerr)?;
                        if let Some(bias) = &self.bias {
                            add_rows(&mut out, bias)?;
                        }
                    }
                }
                out1(Tensor::from_vec(shape, out)?)
            }
            // Half types compute in f32 and round once, as onnxruntime's CPU provider does.
            DType::F16 | DType::BF16 => {
                let af = to_f32(a)?;
                let bf = to_f32(b)?;
                let mut out = vec![0f32; shape.iter().product()];
                self.k.matmul(&af, a.shape(), &bf, b.shape(), &mut out).map_err(kerr)?;
                out1(from_f32(a.dtype(), shape, &out)?)
            }
            DType::F64 => out1(generic_matmul::<f64>(a, b, &shape, |x, y, acc| acc + x * y)?),
            DType::I32 => out1(generic_matmul::<i32>(a, b, &shape, |x, y, acc| acc.wrapping_add(x.wrapping_mul(y)))?),
            DType::I64 => out1(generic_matmul::<i64>(a, b, &shape, |x, y, acc| acc.wrapping_add(x.wrapping_mul(y)))?),
            DType::U32 => out1(generic_matmul::<u32>(a, b, &shape, |x, y, acc| acc.wrapping_add(x.wrapping_mul(y)))?),
            DType::U64 => out1(generic_matmul::<u64>(a, b, &shape, |x, y, acc| acc.wrapping_add(x.wrapping_mul(y)))?),
            d => Err(OpError::Msg(format!("MatMul of {d} is not supported"))),
        }
    }
}

/// Adds a fused bias vector to every row of a row-major result.
fn add_rows(out: &mut [f32], bias: &[f32]) -> Result<(), OpError> {
    if bias.is_empty() || out.len() % bias.len() != 0 {
        return Err(OpError::Msg(format!("fused bias of {} values does not divide {} outputs", bias.len(), out.len())));
    }
    for row in out.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
    }
    Ok(())
}

pub(crate) fn to_f32(t: &Tensor) -> Result<Vec<f32>, OpError> {
    super::util::floats_of(t)
}

pub(crate) fn from_f32(dtype: DType, shape: Vec<usize>, v: &[f32]) -> Result<Tensor, OpError> {
    Ok(match dtype {
        DType::F32 => Tensor::from_vec(shape, v.to_vec())?,
        DType::F16 => {
            // The fp16 path's per-op rounding, vectorised (F16C / AVX-512; same bits as `half`).
            let mut h = vec![half::f16::ZERO; v.len()];
            qaic_kernels::quant::f32_to_f16(v, &mut h).map_err(|e| OpError::Msg(e.to_string()))?;
            Tensor::from_vec(shape, h)?
        }
        DType::BF16 => Tensor::from_vec(shape, v.iter().map(|&x| half::bf16::from_f32(x)).collect())?,
        DType::F64 => Tensor::from_vec(shape, v.iter().map(|&x| x as f64).collect())?,
        d => return Err(OpError::Msg(format!("cannot store f32 results as {d}"))),
    })
}

/// Batched NumPy matmul for any element type (rare types; not performance critical).
fn generic_matmul<T: qaic_tensor::Element + Default>(
    a: &Tensor,
    b: &Tensor,
    out_shape: &[usize],
    fma: impl Fn(T, T, T) -> T,
) -> Result<Tensor, OpError> {
    let a2: Vec<usize> = if a.rank() == 1 { vec![1, a.shape()[0]] } else { a.shape().to_vec() };
    let b2: Vec<usize> = if b.rank() == 1 { vec![b.shape()[0], 1] } else { b.shape().to_vec() };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let n = b2[b2.len() - 1];
    let ab = &a2[..a2.len() - 2];
    let bb = &b2[..b2.len() - 2];
    let batch = qaic_tensor::broadcast(ab, bb).ok_or("batch dimensions do not broadcast")?;
    let ia = super::util::broadcast_index(ab, &batch);
    let ib = super::util::broadcast_index(bb, &batch);
    let av = a.view::<T>()?;
    let bv = b.view::<T>()?;
    let mut out = vec![T::default(); out_shape.iter().product()];
    for (bi, (&xa, &xb)) in ia.iter().zip(&ib).enumerate() {
        let (ao, bo, oo) = (xa as usize * m * k, xb as usize * k * n, bi * m * n);
        for i in 0..m {
            for j in 0..n {
                let mut acc = T::default();
                for p in 0..k {
                    acc = fma(av[ao + i * k + p], bv[bo + p * n + j], acc);
                }
                out[oo + i * n + j] = acc;
            }
        }
    }
    Ok(Tensor::from_vec(out_shape.to_vec(), out)?)
}

struct GemmOp {
    k: &'static Kernels,
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
    packed_b: Option<Arc<PackedB>>,
}

fn gemm(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let k = kernels()?;
    let trans_a = ctx.attr_i("transA", 0)? != 0;
    let trans_b = ctx.attr_i("transB", 0)? != 0;
    if ctx.opset < 7 && ctx.attr_i("broadcast", 0)? == 0 && ctx.opset < 6 {
        // Opset 1-5 Gemm without broadcast requires C of the full output shape; handled below.
    }
    let packed_b = match ctx.const_input(1) {
        Some(b) if b.dtype() == DType::F32 && b.rank() == 2 => {
            let v = b.view::<f32>()?;
            let m = Mat::row_major(&v, b.shape()[0], b.shape()[1]).map_err(kerr)?;
            Some(Arc::new(k.pack_b(if trans_b { m.t() } else { m })))
        }
        _ => None,
    };
    Ok(Box::new(GemmOp {
        k,
        alpha: ctx.attr_f("alpha", 1.0)?,
        beta: ctx.attr_f("beta", 1.0)?,
        trans_a,
        trans_b,
        packed_b,
    }))
}

impl Kernel for GemmOp {
    fn run(&self, _: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Option<Value>>, OpError> {
        let a = input(inputs, 0)?;
        let b = input(inputs, 1)?;
        let c = opt_input(inputs, 2)?;
        if a.rank() != 2 || b.rank() != 2 {
            return Err(OpError::Msg(format!("Gemm needs 2-D operands, got {:?} and {:?}", a.shape(), b.shape())));
        }
        let (m, ka) = if self.trans_a { (a.shape()[1], a.shape()[0]) } else { (a.shape()[0], a.shape()[1]) };
        let (kb, n) = if self.trans_b { (b.shape()[1], b.shape()[0]) } else { (b.shape()[0], b.shape()[1]) };
        if ka != kb {
            return Err(OpError::Msg(format!(
                "inner dimensions differ: A is {:?}{}, B is {:?}{}",
                a.shape(),
                if self.trans_a { "ᵀ" } else { "" },
                b.shape(),
                if self.trans_b { "ᵀ" } else { "" }
            )));
        }
        let dtype = a.dtype();
        let is_f32 = dtype == DType::F32;
        let af: std::borrow::Cow<[f32]> = if is_f32 { a.view::<f32>()? } else { to_f32(a)?.into() };
        let bf: std::borrow::Cow<[f32]> = if is_f32 { b.view::<f32>()? } else { to_f32(b)?.into() };
        // Start from beta * broadcast(C); the GEMM accumulates alpha * A * B on top.
        let mut out = vec![0f32; m * n];
        let mut beta = 0.0;
        if let Some(c) = c {
            if self.beta != 0.0 {
                let cv = if c.dtype() == DType::F32 { c.to_vec::<f32>()? } else { to_f32(c)? };
                let idx = super::util::broadcast_index(c.shape(), &[m, n]);
                if qaic_tensor::broadcast(c.shape(), &[m, n]).as_deref() != Some(&[m, n][..]) {
                    return Err(OpError::Msg(format!("C of shape {:?} does not broadcast to [{m}, {n}]", c.shape())));
                }
                for (o, &i) in out.iter_mut().zip(&idx) {
                    *o = self.beta * cv[i as usize];
                }
                beta = 1.0;
            }
        }
        let am = Mat::row_major(&af, a.shape()[0], a.shape()[1]).map_err(kerr)?;
        let am = if self.trans_a { am.t() } else { am };
        let mut cm = MatMut::row_major(&mut out, m, n).map_err(kerr)?;
        match (&self.packed_b, is_f32) {
            (Some(pb), true) => self.k.gemm(self.alpha, am, &**pb, beta, &mut cm).map_err(kerr)?,
            _ => {
                let bm = Mat::row_major(&bf, b.shape()[0], b.shape()[1]).map_err(kerr)?;
                let bm = if self.trans_b { bm.t() } else { bm };
                self.k.gemm(self.alpha, am, bm, beta, &mut cm).map_err(kerr)?
            }
        }
        out1(from_f32(dtype, vec![m, n], &out)?)
    }
}
