//! Ops added in recent opsets (24+): BitCast, CausalConvWithState, LinearAttention.

use qaic_tensor::{DType, Tensor, Value};

use super::linalg::{from_f32, to_f32};
use super::util::{input, opt_input};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("BitCast", 26, bitcast);
    r.add("CausalConvWithState", 26, causal_conv);
    r.add("LinearAttention", 26, linear_attention);
}

type Outs = Result<Vec<Option<Value>>, OpError>;

fn bitcast(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let to = ctx.attr_opt_i("to")?.ok_or("missing attribute to")?;
    let to = DType::from_onnx(to as i32).ok_or_else(|| OpError::Msg(format!("unknown type {to}")))?;
    if to == DType::String {
        return Err(OpError::Msg("BitCast to string is not allowed".into()));
    }
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        if x.dtype() == DType::String {
            return Err(OpError::Msg("BitCast of a string tensor is not allowed".into()));
        }
        if x.dtype().bits() != to.bits() {
            return Err(OpError::Msg(format!("BitCast needs equal bit widths: {} is {} bits, {to} is {}", x.dtype(), x.dtype().bits(), to.bits())));
        }
        Ok(vec![Some(Value::Tensor(Tensor::from_bytes(to, x.shape().to_vec(), x.bytes()?)?.aligned()))])
    }))
}

fn causal_conv(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let act = ctx.attr_s("activation", "none")?;
    let silu = match act.as_str() {
        "none" => false,
        "silu" | "swish" => true,
        a => return Err(OpError::Msg(format!("unknown activation `{a}` (none, silu, swish)"))),
    };
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| -> Outs {
        let xt = input(inputs, 0)?;
        let wt = input(inputs, 1)?;
        if xt.rank() != 3 || wt.rank() != 3 {
            return Err(OpError::Msg(format!("input and weight must be 3-D, got {:?} and {:?}", xt.shape(), wt.shape())));
        }
        let (b, c, l) = (xt.shape()[0], xt.shape()[1], xt.shape()[2]);
        let k = wt.shape()[2];
        if wt.shape()[0] != c || wt.shape()[1] != 1 || k == 0 {
            return Err(OpError::Msg(format!("weight must be [{c}, 1, k], got {:?}", wt.shape())));
        }
        let x = to_f32(xt)?;
        let w = to_f32(wt)?;
        let bias = opt_input(inputs, 2)?.map(to_f32).transpose()?;
        let past = opt_input(inputs, 3)?.map(to_f32).transpose()?;
        let pl = k - 1;
        let padded_len = l + pl;
        let mut padded = vec![0f32; b * c * padded_len];
        for bc in 0..b * c {
            if let Some(p) = &past {
                padded[bc * padded_len..bc * padded_len + pl].copy_from_slice(&p[bc * pl..(bc + 1) * pl]);
            }
            padded[bc * padded_len + pl..(bc + 1) * padded_len].copy_from_slice(&x[bc * l..(bc + 1) * l]);
        }
        let mut y = vec![0f32; b * c * l];
        for bi in 0..b {
            for ch in 0..c {
                let row = &padded[(bi * c + ch) * padded_len..(bi * c + ch + 1) * padded_len];
                for t in 0..l {
                    let mut acc = bias.as_ref().map(|b| b[ch]).unwrap_or(0.0);
                    for j in 0..k {
                        acc += row[t + j] * w[ch * k + j];
                    }
                    // The reference rounds the conv output to the input type before the activation.
                    y[(bi * c + ch) * l + t] = acc;
                }
            }
        }
        let mut out = from_f32(xt.dtype(), vec![b, c, l], &y)?;
        if silu {
            let v = to_f32(&out)?;
            let s: Vec<f32> = v.iter().map(|&x| x * (1.0 / (1.0 + (-x).exp()))).collect();
            out = from_f32(xt.dtype(), vec![b, c, l], &s)?;
        }
        let mut state = vec![0f32; b * c * pl];
        for bc in 0..b * c {
            state[bc * pl..(bc + 1) * pl].copy_from_slice(&padded[bc * padded_len + l..(bc + 1) * padded_len]);
        }
        Ok(vec![Some(Value::Tensor(out)), Some(Value::Tensor(from_f32(xt.dtype(), vec![b, c, pl], &state)?))])
    }))
}

struct LinearAttention {
    q_heads: usize,
    kv_heads: usize,
    scale: f32,
    gating: bool,
    delta: bool,
}

fn linear_attention(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let rule = ctx.attr_s("update_rule", "gated_delta")?;
    let (gating, delta) = match rule.as_str() {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        r => return Err(OpError::Msg(format!("unknown update_rule `{r}`"))),
    };
    let q_heads = ctx.attr_opt_i("q_num_heads")?.ok_or("missing attribute q_num_heads")?;
    let kv_heads = ctx.attr_opt_i("kv_num_heads")?.ok_or("missing attribute kv_num_heads")?;
    if q_heads <= 0 || kv_heads <= 0 || q_heads % kv_heads != 0 {
        return Err(OpError::Msg(format!("q_num_heads {q_heads} must be a positive multiple of kv_num_heads {kv_heads}")));
    }
    Ok(Box::new(LinearAttention {
        q_heads: q_heads as usize,
        kv_heads: kv_heads as usize,
        scale: ctx.attr_f("scale", 0.0)?,
        gating,
        delta,
    }))
}

impl Kernel for LinearAttention {
    fn run(&self, _: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
        let qt = input(inputs, 0)?;
        let (q, k, v) = (to_f32(qt)?, to_f32(input(inputs, 1)?)?, to_f32(input(inputs, 2)?)?);
        let vt = input(inputs, 2)?;
        if qt.rank() != 3 || vt.rank() != 3 {
            return Err(OpError::Msg("query, key and value must be 3-D (B, T, H*D)".into()));
        }
        let (b, t) = (qt.shape()[0], qt.shape()[1]);
        let (hq, hk) = (self.q_heads, self.kv_heads);
        let dk = qt.shape()[2] / hq;
        let dv = vt.shape()[2] / hk;
        let group = hq / hk;
        let past = opt_input(inputs, 3)?;
        let decay = opt_input(inputs, 4)?;
        let beta = opt_input(inputs, 5)?;
        if self.gating != decay.is_some() {
            return Err(OpError::Msg(if self.gating { "this update_rule needs the decay input".into() } else { "this update_rule forbids the decay input".into() }));
        }
        if self.delta != beta.is_some() {
            return Err(OpError::Msg(if self.delta { "this update_rule needs the beta input".into() } else { "this update_rule forbids the beta input".into() }));
        }
        let decay_v = decay.map(to_f32).transpose()?;
        let decay_last = decay.map(|d| d.shape()[2]).unwrap_or(0);
        let beta_v = beta.map(to_f32).transpose()?;
        let beta_last = beta.map(|d| d.shape()[2]).unwrap_or(0);
        let state_dtype = past.map(|p| p.dtype()).unwrap_or(qt.dtype());
        let mut state = match past {
            Some(p) => {
                if p.shape() != [b, hk, dk, dv] {
                    return Err(OpError::Msg(format!("past_state shape {:?} should be [{b}, {hk}, {dk}, {dv}]", p.shape())));
                }
                to_f32(p)?
            }
            None => vec![0f32; b * hk * dk * dv],
        };
        let scale = if self.scale == 0.0 { 1.0 / (dk as f32).sqrt() } else { self.scale };
        let mut out = vec![0f32; b * t * hq * dv];
        for bi in 0..b {
            for ti in 0..t {
                for h in 0..hk {
                    let st = &mut state[((bi * hk + h) * dk) * dv..((bi * hk + h + 1) * dk) * dv];
                    let kt = &k[(bi * t + ti) * hk * dk + h * dk..][..dk];
                    let mut vv: Vec<f32> = v[(bi * t + ti) * hk * dv + h * dv..][..dv].to_vec();
                    if let Some(dec) = &decay_v {
                        for d in 0..dk {
                            let g = if decay_last == hk { dec[(bi * t + ti) * hk + h] } else { dec[(bi * t + ti) * hk * dk + h * dk + d] };
                            let e = g.exp();
                            for m in 0..dv {
                                st[d * dv + m] *= e;
                            }
                        }
                    }
                    if let Some(bv) = &beta_v {
                        let bt = if beta_last == 1 { bv[bi * t + ti] } else { bv[(bi * t + ti) * hk + h] };
                        for m in 0..dv {
                            let retrieved: f32 = (0..dk).map(|d| st[d * dv + m] * kt[d]).sum();
                            vv[m] = bt * (vv[m] - retrieved);
                        }
                    }
                    for d in 0..dk {
                        for m in 0..dv {
                            st[d * dv + m] += kt[d] * vv[m];
                        }
                    }
                }
                for h in 0..hq {
                    let st = &state[((bi * hk + h / group) * dk) * dv..((bi * hk + h / group + 1) * dk) * dv];
                    let qv = &q[(bi * t + ti) * hq * dk + h * dk..][..dk];
                    for m in 0..dv {
                        let acc: f32 = (0..dk).map(|d| qv[d] * st[d * dv + m]).sum();
                        out[(bi * t + ti) * hq * dv + h * dv + m] = scale * acc;
                    }
                }
            }
        }
        Ok(vec![
            Some(Value::Tensor(from_f32(qt.dtype(), vec![b, t, hq * dv], &out)?)),
            Some(Value::Tensor(from_f32(state_dtype, vec![b, hk, dk, dv], &state)?)),
        ])
    }
}
