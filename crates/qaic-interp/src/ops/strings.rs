//! String ops: StringNormalizer, StringSplit, StringConcat, RegexFullMatch.

use qaic_tensor::{DType, Tensor, Value};
use unicode_normalization::UnicodeNormalization;

use super::util::{broadcast_plan, input, out1, BroadcastPlan};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("StringNormalizer", 10, string_normalizer);
    r.add("StringSplit", 20, string_split);
    r.add("StringConcat", 20, |_| Ok(Box::new(string_concat)));
    r.add("RegexFullMatch", 20, regex_full_match);
}

fn strings_of(t: &Tensor) -> Result<Vec<String>, OpError> {
    Ok(t.strings()?.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

fn string_tensor(shape: Vec<usize>, v: Vec<String>) -> Result<Tensor, OpError> {
    Ok(Tensor::from_strings(shape, v.into_iter().map(String::into_bytes).collect())?)
}

/// Removes accents as scikit-learn's `strip_accents_unicode` (NFKD, drop combining marks).
fn strip_accents(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    s.nfkd().filter(|c| !unicode_normalization::char::is_combining_mark(*c)).collect()
}

fn string_normalizer(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let action = ctx.attr_s("case_change_action", "NONE")?;
    if !matches!(action.as_str(), "NONE" | "LOWER" | "UPPER") {
        return Err(OpError::Msg(format!("unknown case_change_action `{action}`")));
    }
    let case_sensitive = ctx.attr_i("is_case_sensitive", 0)? != 0;
    let raw_stops: Vec<String> = ctx.attr_strings("stopwords")?.unwrap_or_default();
    let change = move |s: &str| -> String {
        match action.as_str() {
            "LOWER" => s.to_lowercase(),
            "UPPER" => s.to_uppercase(),
            _ => s.to_string(),
        }
    };
    let stops: Vec<String> = raw_stops.iter().map(|w| change(w)).collect();
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        if x.rank() != 1 && x.rank() != 2 {
            return Err(OpError::Msg(format!("input must be 1-D or 2-D, is {:?}", x.shape())));
        }
        let remove = |s: &str, list: &[String]| -> String {
            s.split(' ').filter(|w| !list.iter().any(|x| x == w)).collect::<Vec<_>>().join(" ")
        };
        let mut v: Vec<String> = strings_of(x)?
            .iter()
            .map(|s| {
                let mut s = strip_accents(s);
                if case_sensitive && !raw_stops.is_empty() {
                    s = remove(&s, &raw_stops);
                }
                s = change(&s);
                if !case_sensitive && !stops.is_empty() {
                    s = remove(&s, &stops);
                }
                s
            })
            .collect();
        let shape = x.shape().to_vec();
        // Empty strings are dropped from a vector or a single-row matrix (as the reference does).
        if shape.len() == 1 || shape[0] == 1 {
            v.retain(|s| !s.is_empty());
            if v.is_empty() {
                v.push(String::new());
            }
            let n = v.len();
            return out1(string_tensor(if shape.len() == 1 { vec![n] } else { vec![1, n] }, v)?);
        }
        out1(string_tensor(shape, v)?)
    }))
}

fn string_split(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let delim = ctx.attr_s("delimiter", "")?;
    let maxsplit = ctx.attr_opt_i("maxsplit")?;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let limit = maxsplit.filter(|&m| m >= 0).map(|m| m as usize);
        let parts: Vec<Vec<String>> = strings_of(x)?
            .iter()
            .map(|s| -> Vec<String> {
                if delim.is_empty() {
                    // Python str.split(): runs of whitespace, no empty parts.
                    let mut out = Vec::new();
                    let mut rest = s.trim_start();
                    while !rest.is_empty() {
                        if limit.is_some_and(|l| out.len() == l) {
                            out.push(rest.to_string());
                            break;
                        }
                        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                        out.push(rest[..end].to_string());
                        rest = rest[end..].trim_start();
                    }
                    out
                } else {
                    match limit {
                        Some(l) => s.splitn(l + 1, delim.as_str()).map(String::from).collect(),
                        None => s.split(delim.as_str()).map(String::from).collect(),
                    }
                }
            })
            .collect();
        let width = parts.iter().map(Vec::len).max().unwrap_or(0);
        let counts: Vec<i64> = parts.iter().map(|p| p.len() as i64).collect();
        let mut flat = Vec::with_capacity(parts.len() * width);
        for mut p in parts {
            p.resize(width, String::new());
            flat.extend(p);
        }
        let mut shape = x.shape().to_vec();
        shape.push(width);
        Ok(vec![
            Some(Value::Tensor(string_tensor(shape, flat)?)),
            Some(Value::Tensor(Tensor::from_vec(x.shape().to_vec(), counts)?)),
        ])
    }))
}

fn string_concat(_: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Option<Value>>, OpError> {
    let a = input(inputs, 0)?;
    let b = input(inputs, 1)?;
    if a.dtype() != DType::String || b.dtype() != DType::String {
        return Err(OpError::Msg("StringConcat needs string inputs".into()));
    }
    let (shape, plan) = broadcast_plan(a.shape(), b.shape())?;
    let (sa, sb) = (a.strings()?, b.strings()?);
    let cat = |x: &[u8], y: &[u8]| [x, y].concat();
    let v: Vec<Vec<u8>> = match plan {
        BroadcastPlan::Same(n) => (0..n).map(|i| cat(&sa[i], &sb[i])).collect(),
        BroadcastPlan::ScalarA(n) => (0..n).map(|i| cat(&sa[0], &sb[i])).collect(),
        BroadcastPlan::ScalarB(n) => (0..n).map(|i| cat(&sa[i], &sb[0])).collect(),
        BroadcastPlan::General(p) => p.iter().map(|&(i, j)| cat(&sa[i as usize], &sb[j as usize])).collect(),
    };
    out1(Tensor::from_strings(shape, v)?)
}

fn regex_full_match(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let pattern = ctx.attr_s("pattern", "")?;
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| OpError::Msg(format!("invalid pattern `{pattern}`: {e}")))?;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let v: Vec<bool> = strings_of(x)?.iter().map(|s| re.is_match(s)).collect();
        out1(Tensor::from_vec(x.shape().to_vec(), v)?)
    }))
}
