//! Recurrent ops: RNN, GRU, LSTM (ONNX), and com.microsoft DynamicQuantizeLSTM (LSTM with int8
//! weights whose GEMM operands are quantized dynamically to uint8, as onnxruntime does).

use qaic_tensor::Value;

use super::linalg::{from_f32, to_f32};
use super::quant::int_values;
use super::util::{floats_of, input, ints_of, opt_input};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("RNN", 1, |c| build(c, Cell::Rnn, false));
    r.add("GRU", 1, |c| build(c, Cell::Gru, false));
    r.add("LSTM", 1, |c| build(c, Cell::Lstm, false));
    r.add_in("com.microsoft", "DynamicQuantizeLSTM", 1, |c| build(c, Cell::Lstm, true));
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Cell {
    Rnn,
    Gru,
    Lstm,
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }
    fn default_acts(self) -> &'static [&'static str] {
        match self {
            Cell::Rnn => &["Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Act {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f32, f32),
    LeakyRelu(f32),
    ThresholdedRelu(f32),
    ScaledTanh(f32, f32),
    HardSigmoid(f32, f32),
    Elu(f32),
    Softsign,
    Softplus,
}

impl Act {
    fn apply(self, x: f32) -> f32 {
        match self {
            Act::Relu => x.max(0.0),
            Act::Tanh => x.tanh(),
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Affine(a, b) => a * x + b,
            Act::LeakyRelu(a) => if x < 0.0 { a * x } else { x },
            Act::ThresholdedRelu(a) => if x > a { x } else { 0.0 },
            Act::ScaledTanh(a, b) => a * (b * x).tanh(),
            Act::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Act::Elu(a) => if x < 0.0 { a * (x.exp() - 1.0) } else { x },
            Act::Softsign => x / (1.0 + x.abs()),
            Act::Softplus => (1.0 + x.exp()).ln(),
        }
    }
}

struct Rnn {
    cell: Cell,
    hidden: usize,
    dirs: Vec<bool>, // reverse flags, one per direction
    acts: Vec<Act>,  // per direction: cell.default_acts().len() entries each
    clip: Option<f32>,
    linear_before_reset: bool,
    input_forget: bool,
    layout: i64,
    quantized: bool,
}

fn build(ctx: &BuildCtx<'_>, cell: Cell, quantized: bool) -> Result<Box<dyn Kernel>, OpError> {
    let hidden = ctx.attr_opt_i("hidden_size")?.ok_or("missing attribute hidden_size")? as usize;
    let dirs = match ctx.attr_s("direction", "forward")?.as_str() {
        "forward" => vec![false],
        "reverse" => vec![true],
        "bidirectional" => vec![false, true],
        d => return Err(OpError::Msg(format!("unknown direction `{d}`"))),
    };
    let per = cell.default_acts().len();
    let names: Vec<String> = match ctx.attr_strings("activations")? {
        Some(v) => v,
        None => dirs.iter().flat_map(|_| cell.default_acts().iter().map(|s| s.to_string())).collect(),
    };
    if names.len() != per * dirs.len() {
        return Err(OpError::Msg(format!("{} activations given, {} expected", names.len(), per * dirs.len())));
    }
    let alphas = ctx.attr_floats("activation_alpha")?.unwrap_or_default();
    let betas = ctx.attr_floats("activation_beta")?.unwrap_or_default();
    let (mut ai, mut bi) = (0usize, 0usize);
    let mut acts = Vec::new();
    for n in &names {
        let mut alpha = |d: f32| {
            let v = alphas.get(ai).copied().unwrap_or(d);
            ai += 1;
            v
        };
        let a = match n.to_ascii_lowercase().as_str() {
            "relu" => Act::Relu,
            "tanh" => Act::Tanh,
            "sigmoid" => Act::Sigmoid,
            "affine" => {
                let a = alpha(1.0);
                let b = betas.get(bi).copied().unwrap_or(0.0);
                bi += 1;
                Act::Affine(a, b)
            }
            "leakyrelu" => Act::LeakyRelu(alpha(0.01)),
            "thresholdedrelu" => Act::ThresholdedRelu(alpha(1.0)),
            "scaledtanh" => {
                let a = alpha(1.0);
                let b = betas.get(bi).copied().unwrap_or(1.0);
                bi += 1;
                Act::ScaledTanh(a, b)
            }
            "hardsigmoid" => {
                let a = alpha(0.2);
                let b = betas.get(bi).copied().unwrap_or(0.5);
                bi += 1;
                Act::HardSigmoid(a, b)
            }
            "elu" => Act::Elu(alpha(1.0)),
            "softsign" => Act::Softsign,
            "softplus" => Act::Softplus,
            other => return Err(OpError::Unsupported(format!("activation `{other}`"))),
        };
        acts.push(a);
    }
    Ok(Box::new(Rnn {
        cell,
        hidden,
        dirs,
        acts,
        clip: ctx.attr_opt_f("clip")?,
        linear_before_reset: ctx.attr_i("linear_before_reset", 0)? != 0,
        input_forget: ctx.attr_i("input_forget", 0)? != 0,
        layout: ctx.attr_i("layout", 0)?,
        quantized,
    }))
}

/// `out[r][j] = sum_k a[r][k] * w[j][k]` (w row-major `[n][k]`), accumulated into `out`.
fn matmul_wt(a: &[f32], rows: usize, k: usize, w: &[f32], n: usize, out: &mut [f32]) {
    for r in 0..rows {
        let ar = &a[r * k..(r + 1) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            out[r * n + j] += ar.iter().zip(wr).map(|(x, y)| x * y).sum::<f32>();
        }
    }
}

/// Dynamic uint8 quantization of a GEMM operand as onnxruntime does (range includes 0).
fn quantize_operand(a: &[f32]) -> (Vec<i32>, f32, i32) {
    let mut lo = 0f32;
    let mut hi = 0f32;
    for &v in a {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let scale = if hi == lo { 1.0 } else { (hi - lo) / 255.0 };
    let zp = (0.0 - lo / scale).clamp(0.0, 255.0).round_ties_even() as i32;
    let q = a.iter().map(|&v| ((v / scale).round_ties_even() + zp as f32).clamp(0.0, 255.0) as i32).collect();
    (q, scale, zp)
}

/// Quantized weights of one direction: `w[k][n]` int values with per-tensor or per-column params.
struct QWeights {
    w: Vec<i32>,
    k: usize,
    n: usize,
    scale: Vec<f32>,
    zp: Vec<i32>,
}

impl QWeights {
    /// `out[r][j] += dequant(quant(a) x w)`.
    fn matmul_acc(&self, a: &[f32], rows: usize, out: &mut [f32]) {
        let (qa, sa, za) = quantize_operand(a);
        for r in 0..rows {
            for j in 0..self.n {
                let zw = if self.zp.len() == 1 { self.zp[0] } else { self.zp[j] };
                let sw = if self.scale.len() == 1 { self.scale[0] } else { self.scale[j] };
                let mut acc: i64 = 0;
                for p in 0..self.k {
                    acc += ((qa[r * self.k + p] - za) * (self.w[p * self.n + j] - zw)) as i64;
                }
                out[r * self.n + j] += acc as f32 * (sa * sw);
            }
        }
    }
}

impl Kernel for Rnn {
    fn run(&self, _: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Option<Value>>, OpError> {
        let x_t = input(inputs, 0)?;
        let dtype = x_t.dtype();
        if x_t.rank() != 3 {
            return Err(OpError::Msg(format!("X must be 3-D, has shape {:?}", x_t.shape())));
        }
        let (seq, batch, isz) = if self.layout == 0 {
            (x_t.shape()[0], x_t.shape()[1], x_t.shape()[2])
        } else {
            (x_t.shape()[1], x_t.shape()[0], x_t.shape()[2])
        };
        let mut x = to_f32(x_t)?;
        if self.layout != 0 {
            x = transpose01(&x, batch, seq, isz);
        }
        let h = self.hidden;
        let g = self.cell.gates();
        let nd = self.dirs.len();
        let w_t = input(inputs, 1)?;
        let r_t = input(inputs, 2)?;
        // Plain ops: W [nd, g*h, isz], R [nd, g*h, h]. Quantized: W [nd, isz, g*h], R [nd, h, g*h].
        let (w, r) = if self.quantized { (Vec::new(), Vec::new()) } else { (to_f32(w_t)?, to_f32(r_t)?) };
        let b = opt_input(inputs, 3)?.map(to_f32).transpose()?;
        let seq_lens: Vec<usize> = match opt_input(inputs, 4)? {
            Some(t) => ints_of(t)?.into_iter().map(|v| v.clamp(0, seq as i64) as usize).collect(),
            None => vec![seq; batch],
        };
        let init_h = opt_input(inputs, 5)?.map(to_f32).transpose()?;
        let (init_c, peep) = if self.cell == Cell::Lstm {
            (opt_input(inputs, 6)?.map(to_f32).transpose()?, opt_input(inputs, 7)?.map(to_f32).transpose()?)
        } else {
            (None, None)
        };
        let qparams = if self.quantized {
            let ws = floats_of(input(inputs, 8)?)?;
            let wz = int_values(input(inputs, 9)?)?;
            let rs = floats_of(input(inputs, 10)?)?;
            let rz = int_values(input(inputs, 11)?)?;
            Some((int_values(w_t)?, ws, wz, int_values(r_t)?, rs, rz))
        } else {
            None
        };

        let mut y = vec![0f32; seq * nd * batch * h];
        let mut y_h = vec![0f32; nd * batch * h];
        let mut y_c = vec![0f32; nd * batch * h];
        for (d, &reverse) in self.dirs.iter().enumerate() {
            let acts = &self.acts[d * self.cell.default_acts().len()..];
            let bias: Vec<f32> = match &b {
                Some(bv) => {
                    let bb = &bv[d * 2 * g * h..(d + 1) * 2 * g * h];
                    (0..g * h).map(|i| bb[i] + if self.cell == Cell::Gru && self.linear_before_reset { 0.0 } else { bb[g * h + i] }).collect()
                }
                None => vec![0.0; g * h],
            };
            let rbias: Vec<f32> = match &b {
                Some(bv) => bv[d * 2 * g * h + g * h..(d + 1) * 2 * g * h].to_vec(),
                None => vec![0.0; g * h],
            };
            let quant = qparams.as_ref().map(|(wq, ws, wz, rq, rs, rz)| {
                let pick = |v: &Vec<f32>, n: usize| if v.len() == nd * n { v[d * n..(d + 1) * n].to_vec() } else { vec![v[d.min(v.len() - 1)]] };
                let picki = |v: &Vec<i64>, n: usize| -> Vec<i32> {
                    if v.len() == nd * n { v[d * n..(d + 1) * n].iter().map(|&x| x as i32).collect() } else { vec![v[d.min(v.len() - 1)] as i32] }
                };
                (
                    QWeights { w: wq[d * isz * g * h..(d + 1) * isz * g * h].iter().map(|&v| v as i32).collect(), k: isz, n: g * h, scale: pick(ws, g * h), zp: picki(wz, g * h) },
                    QWeights { w: rq[d * h * g * h..(d + 1) * h * g * h].iter().map(|&v| v as i32).collect(), k: h, n: g * h, scale: pick(rs, g * h), zp: picki(rz, g * h) },
                )
            });
            let wd = if self.quantized { &[][..] } else { &w[d * g * h * isz..(d + 1) * g * h * isz] };
            let rd = if self.quantized { &[][..] } else { &r[d * g * h * h..(d + 1) * g * h * h] };
            // Input projections for all steps at once: xw[t][b][g*h].
            let mut xw = vec![0f32; seq * batch * g * h];
            match &quant {
                Some((qw, _)) => qw.matmul_acc(&x, seq * batch, &mut xw),
                None => matmul_wt(&x, seq * batch, isz, wd, g * h, &mut xw),
            }
            let mut hs: Vec<f32> = match &init_h {
                Some(v) => v[d * batch * h..(d + 1) * batch * h].to_vec(),
                None => vec![0.0; batch * h],
            };
            let mut cs: Vec<f32> = match &init_c {
                Some(v) => v[d * batch * h..(d + 1) * batch * h].to_vec(),
                None => vec![0.0; batch * h],
            };
            let clip = |v: f32| match self.clip {
                Some(c) => v.clamp(-c, c),
                None => v,
            };
            for step in 0..seq {
                let mut hr = vec![0f32; batch * g * h];
                match &quant {
                    Some((_, qr)) => qr.matmul_acc(&hs, batch, &mut hr),
                    None => {
                        if !(self.cell == Cell::Gru && !self.linear_before_reset) {
                            matmul_wt(&hs, batch, h, rd, g * h, &mut hr);
                        }
                    }
                }
                for bi in 0..batch {
                    let len = seq_lens[bi];
                    if step >= len {
                        continue;
                    }
                    let t = if reverse { len - 1 - step } else { step };
                    let xg = &xw[(t * batch + bi) * g * h..(t * batch + bi + 1) * g * h];
                    let hg = &hr[bi * g * h..(bi + 1) * g * h];
                    let hprev: Vec<f32> = hs[bi * h..(bi + 1) * h].to_vec();
                    for j in 0..h {
                        match self.cell {
                            Cell::Rnn => {
                                hs[bi * h + j] = acts[0].apply(clip(xg[j] + hg[j] + bias[j]));
                            }
                            Cell::Lstm => {
                                let p = |k: usize| peep.as_ref().map(|pv| pv[d * 3 * h + k * h + j]).unwrap_or(0.0);
                                let c_prev = cs[bi * h + j];
                                let pre = |gi: usize| xg[gi * h + j] + hg[gi * h + j] + bias[gi * h + j];
                                let i_g = acts[0].apply(clip(pre(0) + p(0) * c_prev));
                                let mut f_g = acts[0].apply(clip(pre(2) + p(2) * c_prev));
                                if self.input_forget {
                                    f_g = 1.0 - i_g;
                                }
                                let c_g = acts[1].apply(clip(pre(3)));
                                let c_new = f_g * c_prev + i_g * c_g;
                                let o_g = acts[0].apply(clip(pre(1) + p(1) * c_new));
                                cs[bi * h + j] = c_new;
                                hs[bi * h + j] = o_g * acts[2].apply(c_new);
                            }
                            Cell::Gru => {} // computed below, needs the reset gate for all j first
                        }
                    }
                    if self.cell == Cell::Gru {
                        let pre = |gi: usize, j: usize| xg[gi * h + j] + bias[gi * h + j];
                        let mut rh = vec![0f32; h];
                        let mut z = vec![0f32; h];
                        let mut rgate = vec![0f32; h];
                        // z and r use H·R (computed here when not linear_before_reset).
                        let hr_full: Vec<f32> = if self.linear_before_reset {
                            hg.to_vec()
                        } else {
                            let mut v = vec![0f32; g * h];
                            matmul_wt(&hprev, 1, h, rd, g * h, &mut v);
                            v
                        };
                        for j in 0..h {
                            // With linear_before_reset the combined bias lacks Rb: add it for z and r.
                            let rb = |gi: usize| if self.linear_before_reset { rbias[gi * h + j] } else { 0.0 };
                            z[j] = acts[0].apply(clip(pre(0, j) + hr_full[j] + rb(0)));
                            rgate[j] = acts[0].apply(clip(pre(1, j) + hr_full[h + j] + rb(1)));
                        }
                        if self.linear_before_reset {
                            for j in 0..h {
                                rh[j] = rgate[j] * (hr_full[2 * h + j] + rbias[2 * h + j]);
                            }
                        } else {
                            let rhp: Vec<f32> = (0..h).map(|j| rgate[j] * hprev[j]).collect();
                            let mut v = vec![0f32; h];
                            matmul_wt(&rhp, 1, h, &rd[2 * h * h..], h, &mut v);
                            // Rbh is already part of the combined bias here.
                            rh.copy_from_slice(&v);
                        }
                        for j in 0..h {
                            let ht = acts[1].apply(clip(pre(2, j) + rh[j]));
                            hs[bi * h + j] = (1.0 - z[j]) * ht + z[j] * hprev[j];
                        }
                    }
                    let base = ((t * nd + d) * batch + bi) * h;
                    y[base..base + h].copy_from_slice(&hs[bi * h..(bi + 1) * h]);
                }
            }
            y_h[d * batch * h..(d + 1) * batch * h].copy_from_slice(&hs);
            y_c[d * batch * h..(d + 1) * batch * h].copy_from_slice(&cs);
        }
        let (y_shape, y) = if self.layout == 0 {
            (vec![seq, nd, batch, h], y)
        } else {
            // [seq, nd, batch, h] -> [batch, seq, nd, h]
            let mut o = vec![0f32; y.len()];
            for t in 0..seq {
                for d in 0..nd {
                    for bi in 0..batch {
                        let src = ((t * nd + d) * batch + bi) * h;
                        let dst = ((bi * seq + t) * nd + d) * h;
                        o[dst..dst + h].copy_from_slice(&y[src..src + h]);
                    }
                }
            }
            (vec![batch, seq, nd, h], o)
        };
        let state_shape = if self.layout == 0 { vec![nd, batch, h] } else { vec![batch, nd, h] };
        let fix = |v: Vec<f32>| if self.layout == 0 { v } else { transpose01(&v, nd, batch, h) };
        let mut outs = vec![
            Some(Value::Tensor(from_f32(dtype, y_shape, &y)?)),
            Some(Value::Tensor(from_f32(dtype, state_shape.clone(), &fix(y_h))?)),
        ];
        if self.cell == Cell::Lstm {
            outs.push(Some(Value::Tensor(from_f32(dtype, state_shape, &fix(y_c))?)));
        }
        Ok(outs)
    }
}

/// Swaps the first two axes of a `[a, b, c]` row-major array.
fn transpose01(v: &[f32], a: usize, b: usize, c: usize) -> Vec<f32> {
    let mut o = vec![0f32; v.len()];
    for i in 0..a {
        for j in 0..b {
            o[(j * a + i) * c..(j * a + i + 1) * c].copy_from_slice(&v[(i * b + j) * c..(i * b + j + 1) * c]);
        }
    }
    o
}
