//! Profiling on the interpreter: min, max and a histogram of every float32 tensor (graph
//! inputs, constants, node outputs) over all inputs.
//!
//! Two streaming passes make the result independent of input order and thread count: pass 1
//! finds the global min/max of each tensor; pass 2 bins every element into the histogram over
//! that final range. Partial results merge exactly (min/max, integer counts), so any split of the
//! inputs over threads yields the same profile, byte for byte. Memory is one set of histograms
//! per thread, whatever the number of inputs. (Glow instead re-bins approximately whenever the
//! range grows, so its histograms depend on input order.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use qaic_interp::{Plan, PlanOptions};
use qaic_ir::{Bindings, Graph, ValueId};
use qaic_tensor::{DType, Tensor, Value};

use crate::base::get_bin;
use crate::profile::{graph_fingerprint, Profile, ProfileInfo, TensorProfile};
use crate::{ProfileConfig, QuantError};

/// Progress of a profiling run: `pass` 1 (min/max) or 2 (histograms), inputs done of `total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub pass: u8,
    pub done: usize,
    pub total: usize,
}

/// Loads input set `i` (graph inputs in order). Called twice per input (once per pass), from
/// any profiling thread.
pub type InputLoader<'a> = &'a (dyn Fn(usize) -> Result<Vec<Value>, String> + Sync);

/// The float32 tensors a profile covers, in value order: graph inputs, constants and node
/// outputs whose element type is f32. Untyped values are typed by shape inference first.
pub fn float_values(graph: &Graph) -> Vec<ValueId> {
    let untyped = graph.nodes.iter().flat_map(|n| n.outputs.iter().flatten()).any(|v| graph.value(*v).ty.is_none());
    let inferred;
    let g = if untyped {
        let mut c = graph.clone();
        if let Err(e) = qaic_ir::infer_shapes(&mut c, &Bindings::default()) {
            tracing::debug!("shape inference for profiling failed: {e}");
        }
        inferred = c;
        &inferred
    } else {
        graph
    };
    let mut used = vec![false; g.values.len()];
    for v in &g.inputs {
        used[v.index()] = true;
    }
    for n in &g.nodes {
        for v in n.inputs.iter().chain(n.outputs.iter()).flatten() {
            used[v.index()] = true;
        }
    }
    for v in &g.outputs {
        used[v.index()] = true;
    }
    (0..g.values.len())
        .filter(|&i| used[i])
        .map(|i| ValueId(i as u32))
        .filter(|&v| {
            let d = g.value(v);
            let dt = d.constant.as_ref().map(|t| t.dtype()).or_else(|| d.ty.as_ref().and_then(|t| t.tensor_dtype()));
            dt == Some(DType::F32)
        })
        .collect()
}

fn f32_data(v: &Value) -> Option<std::borrow::Cow<'_, [f32]>> {
    match v {
        Value::Tensor(t) if t.dtype() == DType::F32 => t.view::<f32>().ok(),
        _ => None,
    }
}

fn min_max(data: &[f32], lo: &mut f32, hi: &mut f32) {
    for &x in data {
        if x.is_nan() {
            continue;
        }
        if x < *lo {
            *lo = x;
        }
        if x > *hi {
            *hi = x;
        }
    }
}

fn bin_into(data: &[f32], lo: f32, hi: f32, hist: &mut [u64]) {
    let n = hist.len();
    let width = (hi - lo) / n as f32;
    for &x in data {
        if !x.is_nan() {
            hist[get_bin(x, lo, width, n)] += 1;
        }
    }
}

/// Runs `f(i)` for every input index on `threads` workers; returns the per-worker states.
/// The first failing input (smallest index) is reported.
fn for_each_input<S: Send>(
    count: usize,
    threads: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize) -> Result<(), String> + Sync,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<S>, QuantError> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let failure: Mutex<Option<(usize, String)>> = Mutex::new(None);
    let workers = threads.clamp(1, count.max(1));
    let states: Vec<S> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                sc.spawn(|| {
                    let mut st = init();
                    loop {
                        if abort.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        if let Err(e) = f(&mut st, i) {
                            abort.store(true, Ordering::Relaxed);
                            if let Ok(mut g) = failure.lock() {
                                if g.as_ref().is_none_or(|(j, _)| i < *j) {
                                    *g = Some((i, e));
                                }
                            }
                            break;
                        }
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                    }
                    st
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    if let Some((i, e)) = failure.into_inner().ok().flatten() {
        return Err(QuantError::Run(format!("profiling input #{} failed: {e}", i + 1)));
    }
    if states.len() != workers {
        return Err(QuantError::Run("a profiling thread panicked".into()));
    }
    Ok(states)
}

/// Profiles `graph` on `count` input sets (see [`InputLoader`]) with the interpreter and
/// qaic-quant's ops ([`crate::registry`]). `progress` is called after each input of each pass.
///
/// ```
/// use qaic_ir::{Graph, Node, ValueType};
/// use qaic_tensor::{DType, Shape, Tensor, Value};
/// let mut g = Graph::new("g");
/// g.set_opset("", 13);
/// let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[3])));
/// let y = g.add_value("y", Some(ValueType::tensor(DType::F32, Shape::known(&[3]))));
/// g.add_node(Node { op_type: "Relu".into(), inputs: vec![Some(x)], outputs: vec![Some(y)], ..Default::default() });
/// g.outputs.push(y);
/// let inputs = |i: usize| -> Result<Vec<Value>, String> {
///     Ok(vec![Tensor::from_vec(vec![3], vec![-1.0f32, 0.5, i as f32]).unwrap().into()])
/// };
/// let cfg = qaic_quant::ProfileConfig { num_histogram_bins: 4, threads: 2 };
/// let p = qaic_quant::profile_graph(&g, &cfg, 3, &inputs, &|_| {}).unwrap();
/// assert_eq!((p.entries["y"].min, p.entries["y"].max), (0.0, 2.0));
/// ```
pub fn profile_graph(
    graph: &Graph,
    cfg: &ProfileConfig,
    count: usize,
    load: InputLoader<'_>,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Profile, QuantError> {
    cfg.validate()?;
    if count == 0 {
        return Err(QuantError::Config("profiling needs at least one input (-input-list-file)".into()));
    }
    let targets = float_values(graph);
    let mut slot: Vec<Option<usize>> = vec![None; graph.values.len()];
    for (k, v) in targets.iter().enumerate() {
        slot[v.index()] = Some(k);
    }
    let plan = Plan::with_registry(graph.clone(), &crate::registry(), &PlanOptions { optimize: false, ..Default::default() })
        .map_err(|e| QuantError::Run(format!("cannot profile graph `{}`: {e}", graph.name)))?;
    let nt = targets.len();
    let bins = cfg.num_histogram_bins;
    let constant_of = |k: usize| -> Option<&Tensor> { graph.value(targets[k]).constant.as_ref() };
    let run = |i: usize, obs: &mut dyn FnMut(usize, &[f32])| -> Result<(), String> {
        let inputs = load(i)?;
        plan.run_observed(inputs, &mut |_g, id, v| {
            if let Some(k) = slot.get(id.index()).copied().flatten() {
                if let Some(d) = f32_data(v) {
                    obs(k, &d);
                }
            }
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
    };

    // Pass 1: global min/max.
    let states = for_each_input(
        count,
        cfg.threads,
        || (vec![f32::INFINITY; nt], vec![f32::NEG_INFINITY; nt]),
        |st, i| run(i, &mut |k, d| min_max(d, &mut st.0[k], &mut st.1[k])),
        &|done| progress(Progress { pass: 1, done, total: count }),
    )?;
    let mut lo = vec![f32::INFINITY; nt];
    let mut hi = vec![f32::NEG_INFINITY; nt];
    for (l, h) in &states {
        for k in 0..nt {
            lo[k] = lo[k].min(l[k]);
            hi[k] = hi[k].max(h[k]);
        }
    }
    for k in 0..nt {
        if let Some(t) = constant_of(k) {
            if let Ok(d) = t.view::<f32>() {
                min_max(&d, &mut lo[k], &mut hi[k]);
            }
        }
        if lo[k] > hi[k] {
            // Never saw a number (empty or all-NaN tensor).
            lo[k] = 0.0;
            hi[k] = 0.0;
        }
    }

    // Pass 2: histograms over the final ranges.
    let states = for_each_input(
        count,
        cfg.threads,
        || vec![Vec::<u64>::new(); nt],
        |st, i| {
            run(i, &mut |k, d| {
                if st[k].is_empty() {
                    st[k] = vec![0; bins];
                }
                bin_into(d, lo[k], hi[k], &mut st[k]);
            })
        },
        &|done| progress(Progress { pass: 2, done, total: count }),
    )?;
    let mut entries = BTreeMap::new();
    for k in 0..nt {
        let mut h = vec![0u64; bins];
        for st in &states {
            for (a, b) in h.iter_mut().zip(&st[k]) {
                *a += b;
            }
        }
        if let Some(t) = constant_of(k) {
            if let Ok(d) = t.view::<f32>() {
                bin_into(&d, lo[k], hi[k], &mut h);
            }
        }
        entries.insert(graph.value(targets[k]).name.clone(), TensorProfile { min: lo[k], max: hi[k], histogram: h });
    }
    let tool = format!("qaic-rs {}", env!("CARGO_PKG_VERSION"));
    Ok(Profile {
        tools_version: tool.clone(),
        graph_hash: graph_fingerprint(graph),
        entries,
        info: Some(ProfileInfo {
            tool,
            num_inputs: count as u64,
            num_histogram_bins: bins as u64,
            options: BTreeMap::new(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use qaic_ir::{Node, ValueType};
    use qaic_tensor::Shape;

    /// x -> Mul(w) -> Relu -> y, with a constant w.
    fn graph() -> Graph {
        let mut g = Graph::new("g");
        g.set_opset("", 13);
        let t = |s: &[usize]| Some(ValueType::tensor(DType::F32, Shape::known(s)));
        let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[4])));
        let w = g.add_constant("w", Tensor::from_vec(vec![4], vec![0.5f32, -1.0, 2.0, 0.0]).unwrap());
        let m = g.add_value("m", t(&[4]));
        let y = g.add_value("y", t(&[4]));
        g.add_node(Node { op_type: "Mul".into(), inputs: vec![Some(x), Some(w)], outputs: vec![Some(m)], ..Default::default() });
        g.add_node(Node { op_type: "Relu".into(), inputs: vec![Some(m)], outputs: vec![Some(y)], ..Default::default() });
        g.outputs.push(y);
        g
    }

    fn input(i: usize) -> Vec<Value> {
        // Deterministic pseudo-random data with varied ranges.
        let mut s = (i as u64 + 1).wrapping_mul(0x9E3779B97F4A7C15);
        let v: Vec<f32> = (0..4)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s % 20001) as f32 / 1000.0 - 10.0) * (1.0 + i as f32 / 7.0)
            })
            .collect();
        vec![Tensor::from_vec(vec![4], v).unwrap().into()]
    }

    #[test]
    fn covers_inputs_constants_outputs() {
        let g = graph();
        let p = profile_graph(&g, &ProfileConfig { num_histogram_bins: 8, threads: 1 }, 5, &|i| Ok(input(i)), &|_| {}).unwrap();
        assert_eq!(p.entries.keys().cloned().collect::<Vec<_>>(), vec!["m", "w", "x", "y"]);
        assert_eq!((p.entries["w"].min, p.entries["w"].max), (-1.0, 2.0));
        assert_eq!(p.entries["w"].histogram.iter().sum::<u64>(), 4);
        assert_eq!(p.entries["x"].histogram.iter().sum::<u64>(), 20);
        let xs: Vec<f32> = (0..5).flat_map(|i| input(i)[0].as_tensor().unwrap().to_vec::<f32>().unwrap()).collect();
        let mn = xs.iter().copied().fold(f32::INFINITY, f32::min);
        let mx = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!((p.entries["x"].min, p.entries["x"].max), (mn, mx));
        assert!(p.check_graph(&g, "p").unwrap().is_empty());
    }

    #[test]
    fn thread_count_and_order_independent() {
        let g = graph();
        let cfg = |t| ProfileConfig { num_histogram_bins: 64, threads: t };
        let n = 23;
        let base = profile_graph(&g, &cfg(1), n, &|i| Ok(input(i)), &|_| {}).unwrap().to_yaml();
        for t in [2, 3, 8, 40] {
            assert_eq!(profile_graph(&g, &cfg(t), n, &|i| Ok(input(i)), &|_| {}).unwrap().to_yaml(), base, "{t} threads");
        }
        let reversed = profile_graph(&g, &cfg(3), n, &|i| Ok(input(n - 1 - i)), &|_| {}).unwrap().to_yaml();
        assert_eq!(reversed, base);
    }

    #[test]
    fn progress_and_errors() {
        let g = graph();
        let seen = Mutex::new(Vec::new());
        profile_graph(&g, &ProfileConfig { num_histogram_bins: 4, threads: 2 }, 3, &|i| Ok(input(i)), &|p| {
            seen.lock().unwrap().push(p)
        })
        .unwrap();
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 6);
        assert!(seen.contains(&Progress { pass: 2, done: 3, total: 3 }));
        let e = profile_graph(&g, &ProfileConfig::default(), 4, &|i| if i == 2 { Err("bad.raw: too short".into()) } else { Ok(input(i)) }, &|_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("#3") && e.contains("bad.raw"), "{e}");
        assert!(profile_graph(&g, &ProfileConfig::default(), 0, &|i| Ok(input(i)), &|_| {}).is_err());
        assert!(profile_graph(&g, &ProfileConfig { num_histogram_bins: 0, threads: 1 }, 1, &|i| Ok(input(i)), &|_| {}).is_err());
    }

    #[test]
    fn v8_two_pass_histogram() {
        // The facts sheet's V8 batches, binned over the final range [-1, 6] in one pass: exact
        // counts, unlike Glow's order-dependent re-binning ([2,3,1,3,2,2,0,2]).
        let all = [0.0f32, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, -1.0, 0.25, 6.0, 5.9, -0.9, 2.2];
        let mut h = vec![0u64; 8];
        bin_into(&all, -1.0, 6.0, &mut h);
        assert_eq!(h, vec![2, 3, 2, 2, 2, 2, 0, 2]);
    }

    #[test]
    fn mismatched_profile_is_refused() {
        let g = graph();
        let mut p = profile_graph(&g, &ProfileConfig { num_histogram_bins: 4, threads: 1 }, 2, &|i| Ok(input(i)), &|_| {}).unwrap();
        let m = p.entries.remove("m").unwrap();
        p.entries.insert("zz".into(), m);
        let e = p.check_graph(&g, "p.yaml").unwrap_err().to_string();
        assert!(e.contains("`m`") && e.contains("`zz`") && e.contains("p.yaml"), "{e}");
        let mut p2 = profile_graph(&g, &ProfileConfig { num_histogram_bins: 4, threads: 1 }, 2, &|i| Ok(input(i)), &|_| {}).unwrap();
        p2.graph_hash ^= 1;
        let w = p2.check_graph(&g, "p.yaml").unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("fingerprint"));
    }
}
