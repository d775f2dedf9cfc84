//! Calibrations (facts §6): Glow's KL minimization, and the proposed Percentile, MSE, SQNR and
//! KLMinimizationV2, plus the full `chooseQuantizationParams` that ties them to §3.

use crate::base::{adjust_range, dequantize, params_from_range, quantize, rescale_histogram, QType, QuantParams};
use crate::config::{Calibration, Schema};

/// Glow's fixed number of quantized bins for KL ("default value from TVM/MXNet").
pub const KL_QUANTIZED_BINS: usize = 255;
/// Quantized bins of KLMinimizationV2.
pub const KLV2_QUANTIZED_BINS: usize = 128;
/// Clipping-noise weight of SQNR calibration (AIMET's gamma).
pub const SQNR_GAMMA: f64 = 3.0;

/// What a calibration needs besides the histogram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CalibrationSpec {
    pub calibration: Calibration,
    /// Percentile in [90, 100] (only for [`Calibration::Percentile`]).
    pub percentile: f64,
}

impl CalibrationSpec {
    pub const NONE: CalibrationSpec = CalibrationSpec { calibration: Calibration::None, percentile: 100.0 };
}

/// Full `chooseQuantizationParams` (facts §3) on a profile (min, max, histogram over
/// [min, max]). Calibration is skipped when the profile is degenerate (`min == max`), the
/// histogram is empty or all zero, or the spec says None.
///
/// ```
/// use qaic_quant::{calibration::{choose_quantization_params, CalibrationSpec}, base::QType, Schema};
/// let p = choose_quantization_params(-2.0, 5.0, &[], Schema::Asymmetric, QType::Int8, CalibrationSpec::NONE);
/// assert_eq!(p.offset, -55);
/// ```
pub fn choose_quantization_params(
    pmin: f32,
    pmax: f32,
    hist: &[f32],
    schema: Schema,
    q: QType,
    spec: CalibrationSpec,
) -> QuantParams {
    let (min, max, eff) = adjust_range(pmin, pmax, schema, q);
    let (a, b) = calibrated_range(pmin, pmax, hist, min, max, eff, q, spec);
    params_from_range(a, b, eff, q)
}

/// Step 6 of §3 (and the proposed calibrators): the range to use after calibration.
#[allow(clippy::too_many_arguments)]
pub fn calibrated_range(
    pmin: f32,
    pmax: f32,
    hist: &[f32],
    min: f32,
    max: f32,
    eff: Schema,
    q: QType,
    spec: CalibrationSpec,
) -> (f32, f32) {
    if spec.calibration == Calibration::None
        || pmin == pmax
        || min == max
        || hist.is_empty()
        || hist.iter().all(|&h| h == 0.0)
        || !min.is_finite()
        || !max.is_finite()
    {
        return (min, max);
    }
    let symmetric = matches!(eff, Schema::Symmetric | Schema::SymmetricWithPower2Scale);
    let h = rescale_histogram(hist, pmin, pmax, min, max);
    match spec.calibration {
        Calibration::None => (min, max),
        Calibration::KLMinimization => optimize_kl(&h, min, max, KL_QUANTIZED_BINS, symmetric),
        Calibration::Percentile => {
            let (a, b) = percentile_range(&h, min, max, spec.percentile);
            post_process(a, b, min, max, symmetric)
        }
        Calibration::MSE | Calibration::SQNR => {
            let gamma = if spec.calibration == Calibration::SQNR { SQNR_GAMMA } else { 1.0 };
            let best = mse_search(&h, min, max, eff, q, gamma);
            (best.min, best.max)
        }
        Calibration::KLMinimizationV2 => match klv2_range(&h, min, max, KLV2_QUANTIZED_BINS) {
            Some((a, b)) => post_process(a, b, min, max, symmetric),
            None => (min, max),
        },
    }
}

/// Glow `conditionHistogram`: zero bins get `eps`, non-zero bins lose the same total mass.
fn condition(h: &mut [f32]) {
    const EPS: f32 = 0.0001;
    let zeros = h.iter().filter(|&&v| v == 0.0).count();
    let nz = h.len() - zeros;
    if nz == 0 {
        return;
    }
    let eps_nz = EPS * zeros as f32 / nz as f32;
    if eps_nz >= 1.0 {
        return;
    }
    for v in h.iter_mut() {
        if *v == 0.0 {
            *v += EPS;
        } else {
            *v -= eps_nz;
        }
    }
}

/// Glow `computeKL` (float32).
fn compute_kl(p: &[f32], q: &[f32]) -> f32 {
    let ps: f32 = p.iter().sum();
    let qs: f32 = q.iter().sum();
    if ps == 0.0 || qs == 0.0 {
        return 0.0;
    }
    let mut d = 0f32;
    for (&a, &b) in p.iter().zip(q) {
        let (a, b) = (a / ps, b / qs);
        if a > 0.0 && b > 0.0 {
            d += a * (a / b).ln();
        }
    }
    d
}

/// Which way Glow's asymmetric window shrinks: the first minimal loss (ties: both ends, then
/// left).
fn shrink(h: &[f32], s: &mut usize, e: &mut usize, symmetric: bool) {
    if symmetric {
        *s += 1;
        *e -= 1;
        return;
    }
    let sym = h[*s] + h[*e];
    let left = h[*s] + h[*s + 1];
    let right = h[*e] + h[*e - 1];
    if sym <= left && sym <= right {
        *s += 1;
        *e -= 1;
    } else if left <= right {
        *s += 2;
    } else {
        *e -= 2;
    }
}

/// Glow `optimizeKL` (facts §6.2), with the number of quantized bins as a parameter.
pub fn optimize_kl(h: &[f32], hmin: f32, hmax: f32, qbins: usize, symmetric: bool) -> (f32, f32) {
    let n = h.len();
    if n == 0 || n < qbins || qbins == 0 {
        return (hmin, hmax);
    }
    let w = (hmax - hmin) / n as f32;
    let mut best = f32::INFINITY;
    let (mut tmin, mut tmax) = (hmin, hmax);
    let (mut s, mut e) = (0usize, n - 1);
    while e >= s && e - s + 1 >= qbins {
        let l = e - s + 1;
        let mut p: Vec<f32> = h[s..=e].to_vec();
        for &v in &h[..s] {
            p[0] += v;
        }
        for &v in &h[e + 1..] {
            p[l - 1] += v;
        }
        let mut qd = vec![0f32; l];
        let m = l / qbins;
        for t in 0..qbins {
            let a = t * m;
            let b = if t == qbins - 1 { l } else { (t + 1) * m };
            let block = &h[s + a..s + b];
            let sum: f32 = block.iter().sum();
            let norm = block.iter().filter(|&&v| v != 0.0).count();
            for k in a..b {
                if p[k] != 0.0 && norm != 0 {
                    qd[k] = sum / norm as f32;
                }
            }
        }
        condition(&mut p);
        condition(&mut qd);
        let d = compute_kl(&p, &qd);
        if d < best {
            best = d;
            tmin = hmin + s as f32 * w;
            tmax = hmin + (e + 1) as f32 * w;
        }
        if l < 3 {
            break;
        }
        shrink(h, &mut s, &mut e, symmetric);
    }
    if symmetric {
        let rmin = tmin as f64 / hmin as f64;
        let rmax = tmax as f64 / hmax as f64;
        if rmin > rmax {
            tmax = (rmin * hmax as f64) as f32;
        } else {
            tmin = (rmax * hmin as f64) as f32;
        }
    }
    (tmin, tmax)
}

/// Post-processing of the proposed calibrators (§6.3): clamp into [min, max], keep zero, and
/// re-symmetrize for symmetric schemas.
fn post_process(a: f64, b: f64, min: f32, max: f32, symmetric: bool) -> (f32, f32) {
    let a = a.max(min as f64).min(0.0);
    let b = b.min(max as f64).max(0.0);
    if symmetric {
        let ra = if min != 0.0 { a / min as f64 } else { 0.0 };
        let rb = if max != 0.0 { b / max as f64 } else { 0.0 };
        let r = ra.max(rb);
        return ((r * min as f64) as f32, (r * max as f64) as f32);
    }
    (a as f32, b as f32)
}

/// Raw two-sided percentile window (§6.3) in double.
fn percentile_range(h: &[f32], min: f32, max: f32, p: f64) -> (f64, f64) {
    let n = h.len();
    let total: f64 = h.iter().map(|&v| v as f64).sum();
    let w = (max as f64 - min as f64) / n as f64;
    if total == 0.0 {
        return (min as f64, max as f64);
    }
    let alpha = (100.0 - p) / 200.0;
    let mut c = 0f64;
    let (mut kl, mut kr) = (None, None);
    for (k, &v) in h.iter().enumerate() {
        c += v as f64;
        if kl.is_none() && c > alpha * total {
            kl = Some(k);
        }
        if kr.is_none() && c >= (1.0 - alpha) * total {
            kr = Some(k);
        }
    }
    let kl = kl.unwrap_or(0);
    let kr = kr.unwrap_or(n - 1);
    (min as f64 + kl as f64 * w, min as f64 + (kr + 1) as f64 * w)
}

/// Result of an MSE/SQNR search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MseChoice {
    pub min: f32,
    pub max: f32,
    pub params: QuantParams,
    /// Weighted squared error of the chosen window.
    pub error: f64,
    /// `10·log10(Σ H c² / E)` in dB (infinite when E is 0).
    pub sqnr_db: f64,
}

/// Weighted error of quantizing the histogram's bin centres with `pr`.
fn window_error(h: &[f32], min: f32, w: f64, pr: QuantParams, q: QType, gamma: f64) -> f64 {
    let (qmin, qmax) = q.param_range();
    let mut e = 0f64;
    for (k, &hk) in h.iter().enumerate() {
        if hk == 0.0 {
            continue;
        }
        let c = min as f64 + (k as f64 + 0.5) * w;
        let x = c as f32;
        let d = dequantize(quantize(x, pr, q), pr) as f64;
        let pos = c / pr.scale as f64 + pr.offset as f64;
        let g = if pos < qmin as f64 || pos > qmax as f64 { gamma } else { 1.0 };
        e += hk as f64 * g * (c - d) * (c - d);
    }
    e
}

/// MSE / SQNR search over the windows Glow's KL path visits (§6.4, §6.5).
pub fn mse_search(h: &[f32], min: f32, max: f32, eff: Schema, q: QType, gamma: f64) -> MseChoice {
    let n = h.len();
    let symmetric = matches!(eff, Schema::Symmetric | Schema::SymmetricWithPower2Scale);
    let w = (max as f64 - min as f64) / n as f64;
    let signal: f64 = h
        .iter()
        .enumerate()
        .map(|(k, &hk)| {
            let c = min as f64 + (k as f64 + 0.5) * w;
            hk as f64 * c * c
        })
        .sum();
    let full = params_from_range(min, max, eff, q);
    let mut best = MseChoice { min, max, params: full, error: f64::INFINITY, sqnr_db: 0.0 };
    if n == 0 {
        return best;
    }
    let (mut s, mut e) = (0usize, n - 1);
    loop {
        let a = min as f64 + s as f64 * w;
        let b = min as f64 + (e + 1) as f64 * w;
        let (a, b) = post_process(a, b, min, max, symmetric);
        let pr = params_from_range(a, b, eff, q);
        let err = window_error(h, min, w, pr, q, gamma);
        if err < best.error {
            best = MseChoice { min: a, max: b, params: pr, error: err, sqnr_db: 0.0 };
        }
        if e < s + 2 {
            break;
        }
        shrink(h, &mut s, &mut e, symmetric);
        if e < s {
            break;
        }
    }
    best.sqnr_db = if best.error == 0.0 { f64::INFINITY } else { 10.0 * (signal / best.error).log10() };
    best
}

/// KL in double with Glow's conditioning, for KLMinimizationV2.
fn kl64(p: &mut [f64], q: &mut [f64]) -> f64 {
    fn cond(h: &mut [f64]) {
        let zeros = h.iter().filter(|&&v| v == 0.0).count();
        let nz = h.len() - zeros;
        if nz == 0 {
            return;
        }
        let eps_nz = 0.0001 * zeros as f64 / nz as f64;
        if eps_nz >= 1.0 {
            return;
        }
        for v in h.iter_mut() {
            if *v == 0.0 {
                *v += 0.0001;
            } else {
                *v -= eps_nz;
            }
        }
    }
    cond(p);
    cond(q);
    let ps: f64 = p.iter().sum();
    let qs: f64 = q.iter().sum();
    if ps == 0.0 || qs == 0.0 {
        return 0.0;
    }
    p.iter()
        .zip(q.iter())
        .map(|(&a, &b)| (a / ps, b / qs))
        .filter(|(a, b)| *a > 0.0 && *b > 0.0)
        .map(|(a, b)| a * (a / b).ln())
        .sum()
}

/// KLMinimizationV2 (§6.6) raw window, or `None` when there are too few bins. Also returns the
/// divergence of every candidate when `trace` is given (for tests and verbose output).
pub fn klv2_range(h: &[f32], min: f32, max: f32, qbins: usize) -> Option<(f64, f64)> {
    klv2_trace(h, min, max, qbins).map(|(r, _)| r)
}

/// [`klv2_range`] with the divergence of each candidate `i = qbins/2 ..= N/2`.
pub fn klv2_trace(h: &[f32], min: f32, max: f32, qbins: usize) -> Option<((f64, f64), Vec<f64>)> {
    let n = h.len();
    let amp = (-min).max(max);
    let hc = rescale_histogram(h, min, max, -amp, amp);
    let z = n / 2;
    let half = qbins / 2;
    if z < half || qbins == 0 {
        return None;
    }
    let wc = 2.0 * amp as f64 / n as f64;
    let mut best = (f64::INFINITY, 0usize, 0usize);
    let mut trace = Vec::new();
    for i in half..=z {
        let st = z - i;
        let en = (z + i + 1).min(n);
        let s: Vec<f64> = hc[st..en].iter().map(|&v| v as f64).collect();
        let len = s.len();
        let mut p = s.clone();
        p[0] += hc[..st].iter().map(|&v| v as f64).sum::<f64>();
        p[len - 1] += hc[en..].iter().map(|&v| v as f64).sum::<f64>();
        let m = len / qbins;
        let mut q = vec![0f64; len];
        for t in 0..qbins {
            let a = t * m;
            let b = if t == qbins - 1 { len } else { (t + 1) * m };
            if a >= b {
                continue;
            }
            let sum: f64 = s[a..b].iter().sum();
            let nz = p[a..b].iter().filter(|&&v| v != 0.0).count();
            if nz == 0 {
                continue;
            }
            for k in a..b {
                if p[k] != 0.0 {
                    q[k] = sum / nz as f64;
                }
            }
        }
        let d = kl64(&mut p, &mut q);
        trace.push(d);
        if d < best.0 {
            best = (d, st, en);
        }
    }
    let a = -(amp as f64) + best.1 as f64 * wc;
    let b = -(amp as f64) + best.2 as f64 * wc;
    Some(((a, b), trace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Schema::*;

    const H: [f32; 16] = [1., 0., 6., 20., 40., 60., 50., 30., 15., 8., 4., 2., 1., 0., 0., 1.];
    const SYM_MIN: f32 = -7.055118083953857;

    fn cp(schema: Schema, cal: Calibration, p: f64) -> (f32, i32) {
        let r = choose_quantization_params(-1.0, 7.0, &H, schema, QType::Int8, CalibrationSpec { calibration: cal, percentile: p });
        (r.scale, r.offset)
    }

    #[test]
    fn v9_none_and_kl_with_few_bins() {
        for cal in [Calibration::None, Calibration::KLMinimization] {
            assert_eq!(cp(Asymmetric, cal, 100.0), (0.0313725508749485, -96));
            assert_eq!(cp(Symmetric, cal, 100.0), (0.05511811003088951, 0));
            assert_eq!(cp(SymmetricWithUint8, cal, 100.0), (0.05511811003088951, 0));
            assert_eq!(cp(SymmetricWithPower2Scale, cal, 100.0), (0.0625, 0));
        }
        let (mn, mx, _) = adjust_range(-1.0, 7.0, Symmetric, QType::Int8);
        assert_eq!((mn, mx), (SYM_MIN, 7.0));
        let r = rescale_histogram(&H, -1.0, 7.0, mn, mx);
        assert_eq!(r, vec![0., 0., 0., 0., 0., 0., 0., 1., 20., 74., 88., 39., 11., 3., 1., 1.]);
    }

    #[test]
    fn v10_optimize_kl_q4() {
        let (a, b) = optimize_kl(&H, -1.0, 7.0, 4, false);
        assert_eq!((a, b), (0.5, 3.5));
        let p = params_from_range(a, b, Asymmetric, QType::Int8);
        assert_eq!((p.scale, p.offset), (0.0117647061124444, -128));
        let hs = rescale_histogram(&H, -1.0, 7.0, SYM_MIN, 7.0);
        let (a, b) = optimize_kl(&hs, SYM_MIN, 7.0, 4, true);
        assert_eq!((a, b), (-1.7844486236572266, 1.770507574081421));
        let p = params_from_range(a, b, Symmetric, QType::Int8);
        assert_eq!((p.scale, p.offset), (0.013941004872322083, 0));
        let p = params_from_range(a, b, SymmetricWithPower2Scale, QType::Int8);
        assert_eq!((p.scale, p.offset), (0.015625, 0));
    }

    #[test]
    fn v11_percentile() {
        for p in [100.0, 99.9] {
            assert_eq!(cp(Asymmetric, Calibration::Percentile, p), (0.0313725508749485, -96));
        }
        assert_eq!(cp(Asymmetric, Calibration::Percentile, 99.0), (0.021568628028035164, -128));
        assert_eq!(cp(Asymmetric, Calibration::Percentile, 95.0), (0.01764705963432789, -128));
        assert_eq!(cp(Asymmetric, Calibration::Percentile, 90.0), (0.01568627543747425, -128));
        assert_eq!(cp(Symmetric, Calibration::Percentile, 100.0), (0.05511811003088951, 0));
        assert_eq!(cp(Symmetric, Calibration::Percentile, 99.0), (0.048201221972703934, 0));
        // The sheet's post range for p=95 and p=90 is reproduced exactly; its scale
        // (0.03436744585633278) is one float32 ulp above §3 step 7 applied to that range (it
        // matches a float32 `max − min`, which contradicts V1/V6), so step 7 as written wins.
        let hs = rescale_histogram(&H, -1.0, 7.0, SYM_MIN, 7.0);
        for p in [95.0, 90.0] {
            let (a, b) = percentile_range(&hs, SYM_MIN, 7.0, p);
            let (a, b) = post_process(a, b, SYM_MIN, 7.0, true);
            assert_eq!((a, b), (-4.3990325927734375, 4.364665508270264));
            let (s, o) = cp(Symmetric, Calibration::Percentile, p);
            assert_eq!(o, 0);
            assert!((s - 0.03436744585633278f32).abs() <= f32::EPSILON * 0.04, "{s}");
        }
        let hs = rescale_histogram(&H, -1.0, 7.0, SYM_MIN, 7.0);
        let (_, b) = percentile_range(&hs, SYM_MIN, 7.0, 99.0);
        assert_eq!(b, 6.121555119752884);
        assert_eq!(post_process(-0.02755904197692871, b, SYM_MIN, 7.0, true), (-6.1697564125061035, 6.121555328369141));
    }

    #[test]
    fn v11_mse_sqnr() {
        let m = mse_search(&H, -1.0, 7.0, Asymmetric, QType::Int8, 1.0);
        assert_eq!((m.min, m.max), (-1.0, 7.0));
        assert!((m.error - 0.016853531749992712).abs() < 1e-12, "{}", m.error);
        assert!((m.sqnr_db - 48.524450811482566).abs() < 1e-9, "{}", m.sqnr_db);
        // The second candidate (2,15) → [0,7]: check one non-winning error value too.
        let pr = params_from_range(0.0, 7.0, Asymmetric, QType::Int8);
        let e = window_error(&H, -1.0, 0.5, pr, QType::Int8, 1.0);
        assert!((e - 0.5770300482381123).abs() < 1e-12, "{e}");
        let eg = window_error(&H, -1.0, 0.5, pr, QType::Int8, 3.0);
        assert!((eg - 1.7020300482381123).abs() < 1e-12, "{eg}");
        let s = mse_search(&H, -1.0, 7.0, Asymmetric, QType::Int8, SQNR_GAMMA);
        assert_eq!((s.min, s.max), (-1.0, 7.0));
        assert_eq!(cp(Asymmetric, Calibration::MSE, 100.0), (0.0313725508749485, -96));
        assert_eq!(cp(Asymmetric, Calibration::SQNR, 100.0), (0.0313725508749485, -96));
        let hs = rescale_histogram(&H, -1.0, 7.0, SYM_MIN, 7.0);
        let ms = mse_search(&hs, SYM_MIN, 7.0, Symmetric, QType::Int8, 1.0);
        assert!((ms.error - 0.09393526989963474).abs() < 1e-12, "{}", ms.error);
        assert!((ms.sqnr_db - 41.12372891855466).abs() < 1e-9, "{}", ms.sqnr_db);
    }

    #[test]
    fn v11_klv2() {
        // 16 bins < 128 quantized bins: no change.
        assert!(klv2_range(&H, -1.0, 7.0, KLV2_QUANTIZED_BINS).is_none());
        assert_eq!(cp(Asymmetric, Calibration::KLMinimizationV2, 100.0), (0.0313725508749485, -96));
        let ((a, b), trace) = klv2_trace(&H, -1.0, 7.0, 4).unwrap();
        let want = [
            0.04664189643564576,
            0.10420887300147438,
            0.19012220035640975,
            0.35128331982756167,
            0.2223969845577356,
            0.5850963286270369,
            0.14231876020303763,
        ];
        assert_eq!(trace.len(), want.len());
        for (d, w) in trace.iter().zip(want) {
            assert!((d - w).abs() < 1e-9 * w.max(1.0), "{d} vs {w}");
        }
        assert_eq!((a, b), (-1.75, 2.625));
        let (a, b) = post_process(a, b, -1.0, 7.0, false);
        assert_eq!((a, b), (-1.0, 2.625));
        let p = params_from_range(a, b, Asymmetric, QType::Int8);
        assert_eq!((p.scale, p.offset), (0.014215686358511448, -58));
    }
}
