//! Transformer ops of opset 23+: Attention (with KV cache, GQA, masks, causal, softcap),
//! RMSNormalization and RotaryEmbedding. Computed in f64 and rounded once to the input type,
//! following the ONNX reference implementation.

use qaic_tensor::{DType, Tensor, Value};

use super::linalg::{from_f32, to_f32};
use super::util::{broadcast_index, input, ints_of, norm_axis, opt_input, out1};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("Attention", 23, attention);
    r.add("RMSNormalization", 23, rms_norm);
    r.add("RotaryEmbedding", 23, rotary);
}

type Outs = Result<Vec<Option<Value>>, OpError>;

/// A dense f64 tensor for the small reference computations here.
#[derive(Clone, Debug)]
struct Nd {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Nd {
    fn from(t: &Tensor) -> Result<Nd, OpError> {
        let data: Vec<f64> = match t.dtype() {
            DType::F64 => t.to_vec::<f64>()?,
            DType::Bool => t.view::<bool>()?.iter().map(|&b| b as u8 as f64).collect(),
            _ => to_f32(t)?.into_iter().map(|v| v as f64).collect(),
        };
        Ok(Nd { shape: t.shape().to_vec(), data })
    }
    fn to(&self, dtype: DType) -> Result<Tensor, OpError> {
        if dtype == DType::F64 {
            return Ok(Tensor::from_vec(self.shape.clone(), self.data.clone())?);
        }
        let v: Vec<f32> = self.data.iter().map(|&x| x as f32).collect();
        from_f32(dtype, self.shape.clone(), &v)
    }
    /// [b, s, h*d] -> [b, h, s, d]
    fn split_heads(&self, heads: usize) -> Result<Nd, OpError> {
        let (b, s, hd) = (self.shape[0], self.shape[1], self.shape[2]);
        if heads == 0 || hd % heads != 0 {
            return Err(OpError::Msg(format!("hidden size {hd} is not divisible by {heads} heads")));
        }
        let d = hd / heads;
        let mut out = vec![0f64; self.data.len()];
        for bi in 0..b {
            for si in 0..s {
                for h in 0..heads {
                    let src = (bi * s + si) * hd + h * d;
                    let dst = ((bi * heads + h) * s + si) * d;
                    out[dst..dst + d].copy_from_slice(&self.data[src..src + d]);
                }
            }
        }
        Ok(Nd { shape: vec![b, heads, s, d], data: out })
    }
    /// [b, h, s, d] -> [b, s, h*d]
    fn merge_heads(&self) -> Nd {
        let (b, h, s, d) = (self.shape[0], self.shape[1], self.shape[2], self.shape[3]);
        let mut out = vec![0f64; self.data.len()];
        for bi in 0..b {
            for hi in 0..h {
                for si in 0..s {
                    let src = ((bi * h + hi) * s + si) * d;
                    let dst = (bi * s + si) * h * d + hi * d;
                    out[dst..dst + d].copy_from_slice(&self.data[src..src + d]);
                }
            }
        }
        Nd { shape: vec![b, s, h * d], data: out }
    }
    /// Concatenate along axis 2 of 4-D arrays.
    fn concat_seq(&self, other: &Nd) -> Result<Nd, OpError> {
        let (b, h, s1, d) = (self.shape[0], self.shape[1], self.shape[2], self.shape[3]);
        let s2 = other.shape[2];
        if other.shape[0] != b || other.shape[1] != h || other.shape[3] != d {
            return Err(OpError::Msg(format!("cache shape {:?} does not match {:?}", self.shape, other.shape)));
        }
        let mut out = Vec::with_capacity(b * h * (s1 + s2) * d);
        for bh in 0..b * h {
            out.extend_from_slice(&self.data[bh * s1 * d..(bh + 1) * s1 * d]);
            out.extend_from_slice(&other.data[bh * s2 * d..(bh + 1) * s2 * d]);
        }
        Ok(Nd { shape: vec![b, h, s1 + s2, d], data: out })
    }
}

struct AttentionOp {
    scale: Option<f32>,
    is_causal: bool,
    q_heads: Option<usize>,
    kv_heads: Option<usize>,
    softcap: f32,
    qk_mode: i64,
}

fn attention(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(AttentionOp {
        scale: ctx.attr_opt_f("scale")?,
        is_causal: ctx.attr_i("is_causal", 0)? != 0,
        q_heads: ctx.attr_opt_i("q_num_heads")?.map(|v| v as usize),
        kv_heads: ctx.attr_opt_i("kv_num_heads")?.map(|v| v as usize),
        softcap: ctx.attr_f("softcap", 0.0)?,
        qk_mode: ctx.attr_i("qk_matmul_output_mode", 0)?,
    }))
}

impl Kernel for AttentionOp {
    fn run(&self, _: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
        let qt = input(inputs, 0)?;
        let dtype = qt.dtype();
        let (mut q, mut k, mut v) = (Nd::from(qt)?, Nd::from(input(inputs, 1)?)?, Nd::from(input(inputs, 2)?)?);
        let three_d = q.shape.len() == 3;
        if three_d {
            let qh = self.q_heads.ok_or("3-D inputs need q_num_heads")?;
            let kvh = self.kv_heads.ok_or("3-D inputs need kv_num_heads")?;
            q = q.split_heads(qh)?;
            k = k.split_heads(kvh)?;
            v = v.split_heads(kvh)?;
        }
        if q.shape.len() != 4 || k.shape.len() != 4 || v.shape.len() != 4 {
            return Err(OpError::Msg("Q, K and V must all be 3-D or all 4-D".into()));
        }
        let scale = match self.scale {
            Some(s) => s as f64,
            None => 1.0 / (q.shape[3] as f64).sqrt(),
        };
        let past_k = opt_input(inputs, 4)?.map(Nd::from).transpose()?;
        let past_v = opt_input(inputs, 5)?.map(Nd::from).transpose()?;
        let past_len = past_k.as_ref().map(|p| p.shape[2]).unwrap_or(0);
        if let Some(p) = &past_k {
            k = p.concat_seq(&k)?;
        }
        if let Some(p) = &past_v {
            v = p.concat_seq(&v)?;
        }
        let present_k = k.clone();
        let present_v = v.clone();
        let (b, qh, qs, dh) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        let (kh, ks) = (k.shape[1], k.shape[2]);
        let dv = v.shape[3];
        if qh % kh != 0 || v.shape[1] != kh {
            return Err(OpError::Msg(format!("{qh} query heads cannot share {kh} key/value heads")));
        }
        let rep = qh / kh;

        // Bias [b, qh, qs, ks] from mask (bool or additive, right-padded), causality, padding.
        let mut bias = vec![0f64; b * qh * qs * ks];
        if let Some(m) = opt_input(inputs, 3)? {
            let is_bool = m.dtype() == DType::Bool;
            let mut mn = Nd::from(m)?;
            let last = *mn.shape.last().unwrap_or(&0);
            if last < ks {
                // pad the last axis to ks with "masked out"
                let rows = mn.data.len() / last.max(1);
                let mut data = Vec::with_capacity(rows * ks);
                for r in 0..rows {
                    data.extend_from_slice(&mn.data[r * last..(r + 1) * last]);
                    data.extend(std::iter::repeat_n(if is_bool { 0.0 } else { f64::NEG_INFINITY }, ks - last));
                }
                let n = mn.shape.len();
                mn.shape[n - 1] = ks;
                mn.data = data;
            }
            let idx = broadcast_index(&mn.shape, &[b, qh, qs, ks]);
            for (o, &i) in bias.iter_mut().zip(&idx) {
                let x = mn.data[i as usize];
                *o = if is_bool { if x != 0.0 { 0.0 } else { f64::NEG_INFINITY } } else { x };
            }
        }
        if self.is_causal {
            for bh in 0..b * qh {
                for i in 0..qs {
                    for j in past_len..ks {
                        if j - past_len > i {
                            bias[(bh * qs + i) * ks + j] = f64::NEG_INFINITY;
                        }
                    }
                }
            }
        }
        if let Some(lens) = opt_input(inputs, 6)? {
            let lens = ints_of(lens)?;
            for bi in 0..b {
                let l = *lens.get(bi).ok_or("nonpad_kv_seqlen is shorter than the batch")?;
                for h in 0..qh {
                    for i in 0..qs {
                        for j in 0..ks {
                            if j as i64 >= l {
                                bias[((bi * qh + h) * qs + i) * ks + j] = f64::NEG_INFINITY;
                            }
                        }
                    }
                }
            }
        }
        let mut qk_out = vec![0f64; b * qh * qs * ks];
        let mut y = vec![0f64; b * qh * qs * dv];
        let s2 = scale.sqrt();
        for bi in 0..b {
            for h in 0..qh {
                let khi = h / rep;
                let qo = (bi * qh + h) * qs * dh;
                let ko = (bi * kh + khi) * ks * dh;
                let vo = (bi * kh + khi) * ks * dv;
                for i in 0..qs {
                    let row = ((bi * qh + h) * qs + i) * ks;
                    let mut scores = vec![0f64; ks];
                    for (j, sc) in scores.iter_mut().enumerate() {
                        let mut acc = 0.0;
                        for p in 0..dh {
                            acc += (q.data[qo + i * dh + p] * s2) * (k.data[ko + j * dh + p] * s2);
                        }
                        if self.softcap > 0.0 {
                            acc = (acc / self.softcap as f64).tanh() * self.softcap as f64;
                        }
                        *sc = acc;
                    }
                    let with_bias: Vec<f64> = scores.iter().zip(&bias[row..row + ks]).map(|(a, b)| a + b).collect();
                    let mx = with_bias.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = with_bias.iter().map(|&x| (x - mx).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    let p: Vec<f64> = e.iter().map(|&x| x / sum).collect();
                    let qk_row: &[f64] = match self.qk_mode {
                        1 | 0 => &scores,
                        2 => &with_bias,
                        _ => &p,
                    };
                    qk_out[row..row + ks].copy_from_slice(qk_row);
                    for c in 0..dv {
                        let mut acc = 0.0;
                        for (j, pj) in p.iter().enumerate() {
                            acc += pj * v.data[vo + j * dv + c];
                        }
                        y[((bi * qh + h) * qs + i) * dv + c] = acc;
                    }
                }
            }
        }
        let mut yn = Nd { shape: vec![b, qh, qs, dv], data: y };
        if three_d {
            yn = yn.merge_heads();
        }
        let kdt = input(inputs, 1)?.dtype();
        let vdt = input(inputs, 2)?.dtype();
        Ok(vec![
            Some(Value::Tensor(yn.to(dtype)?)),
            Some(Value::Tensor(present_k.to(kdt)?)),
            Some(Value::Tensor(present_v.to(vdt)?)),
            Some(Value::Tensor(Nd { shape: vec![b, qh, qs, ks], data: qk_out }.to(dtype)?)),
        ])
    }
}

fn rms_norm(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let axis = ctx.attr_i("axis", -1)?;
    let eps = ctx.attr_f("epsilon", 1e-5)? as f64;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let xt = input(inputs, 0)?;
        let x = Nd::from(xt)?;
        let w = Nd::from(input(inputs, 1)?)?;
        let a = norm_axis(axis, x.shape.len())?;
        let inner: usize = x.shape[a..].iter().product();
        let widx = broadcast_index(&w.shape, &x.shape[a..]);
        if qaic_tensor::broadcast(&w.shape, &x.shape[a..]).as_deref() != Some(&x.shape[a..]) {
            return Err(OpError::Msg(format!("scale of shape {:?} does not broadcast to {:?}", w.shape, &x.shape[a..])));
        }
        let mut y = x.data.clone();
        for blk in y.chunks_mut(inner.max(1)) {
            let ms = blk.iter().map(|v| v * v).sum::<f64>() / inner as f64;
            let r = 1.0 / (ms + eps).sqrt();
            for (i, v) in blk.iter_mut().enumerate() {
                *v = *v * r * w.data[widx[i] as usize];
            }
        }
        out1(Nd { shape: x.shape, data: y }.to(xt.dtype())?)
    }))
}

fn rotary(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let interleaved = ctx.attr_i("interleaved", 0)? != 0;
    let rot_dim = ctx.attr_i("rotary_embedding_dim", 0)? as usize;
    let num_heads = ctx.attr_i("num_heads", 0)? as usize;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let xt = input(inputs, 0)?;
        let x = Nd::from(xt)?;
        let cos = Nd::from(input(inputs, 1)?)?;
        let sin = Nd::from(input(inputs, 2)?)?;
        let pos = opt_input(inputs, 3)?.map(ints_of).transpose()?;
        // Work in [b, s, h, d].
        let (b, s, h, d, four_d) = match x.shape.len() {
            4 => (x.shape[0], x.shape[2], x.shape[1], x.shape[3], true),
            3 => {
                if num_heads == 0 || x.shape[2] % num_heads != 0 {
                    return Err(OpError::Msg("3-D input needs num_heads dividing the hidden size".into()));
                }
                (x.shape[0], x.shape[1], num_heads, x.shape[2] / num_heads, false)
            }
            r => return Err(OpError::Msg(format!("input must be 3-D or 4-D, has rank {r}"))),
        };
        let rd = if rot_dim == 0 { d } else { rot_dim };
        let half = rd / 2;
        let at = |bi: usize, si: usize, hi: usize, di: usize| -> usize {
            if four_d { ((bi * h + hi) * s + si) * d + di } else { ((bi * s + si) * h + hi) * d + di }
        };
        let cache_at = |c: &Nd, bi: usize, si: usize, k: usize| -> Result<f64, OpError> {
            let row = match &pos {
                Some(p) => *p.get(bi * s + si).ok_or("position_ids too short")? as usize,
                None => si,
            };
            let idx = if pos.is_some() || c.shape.len() == 2 { row * half + k } else { (bi * s + si) * half + k };
            c.data.get(idx).copied().ok_or_else(|| OpError::Msg("cos/sin cache index out of range".into()))
        };
        if *cos.shape.last().unwrap_or(&0) != half || *sin.shape.last().unwrap_or(&0) != half {
            return Err(OpError::Msg(format!("cos/sin caches must end in rotary_embedding_dim/2 = {half}")));
        }
        let mut y = x.data.clone();
        for bi in 0..b {
            for si in 0..s {
                for hi in 0..h {
                    for k in 0..half {
                        let (i1, i2) = if interleaved { (2 * k, 2 * k + 1) } else { (k, k + half) };
                        let x1 = x.data[at(bi, si, hi, i1)];
                        let x2 = x.data[at(bi, si, hi, i2)];
                        let c = cache_at(&cos, bi, si, k)?;
                        let sn = cache_at(&sin, bi, si, k)?;
                        y[at(bi, si, hi, i1)] = c * x1 - sn * x2;
                        y[at(bi, si, hi, i2)] = sn * x1 + c * x2;
                    }
                }
            }
        }
        out1(Nd { shape: x.shape, data: y }.to(xt.dtype())?)
    }))
}
