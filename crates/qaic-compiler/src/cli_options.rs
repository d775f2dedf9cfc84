//! A table-driven parser for the vendor tools' option syntax.
//!
//! The Qualcomm tools take single-dash long options (`-aic-num-cores=16`, `-num-iter 100`,
//! `-convert-to-fp16`), which clap cannot parse. Each tool describes its options once, as a
//! static array of [`OptSpec`]; that one table drives parsing, value checking, `-h` (list),
//! `-u` (detailed help with defaults), "did you mean" suggestions and "not supported yet" errors.
//!
//! Syntax accepted (the same as LLVM's command-line library, which the vendor tools use, and
//! getopt_long_only, which qaic-runner uses):
//! - one or two leading dashes: `-write-output-dir=x` and `--write-output-dir=x` are the same;
//! - a value after `=` or as the next argument (`-num-iter=100`, `-num-iter 100`); the next
//!   argument is taken as a value only if it does not itself look like an option (negative
//!   numbers are values);
//! - flags without a value; `-flag=true|false|1|0` is also accepted;
//! - a non-repeatable option given twice keeps the last value (the vendor's own examples do
//!   this, e.g. `-mos=1 ... -mos=1,4`); repeatable options accumulate in order.
//!
//! ```
//! use qaic_compiler::cli_options::{OptSpec, OptionTable, ValueKind, Value};
//! static OPTS: &[OptSpec] = &[
//!     OptSpec::new("num-iter", ValueKind::Int { min: 1, max: i64::MAX }, "Number of iterations.").default("1"),
//!     OptSpec::new("aic-hw", ValueKind::Flag, "Run on the device."),
//! ];
//! let table = OptionTable { tool: "demo", about: "", options: OPTS };
//! let parsed = table.parse(["-num-iter", "5", "-aic-hw"]).unwrap().into_args().unwrap();
//! assert_eq!(parsed.int("num-iter"), Some(5));
//! assert!(parsed.flag("aic-hw"));
//! let err = table.parse(["-num-itr=5"]).unwrap_err().to_string();
//! assert!(err.starts_with("Invalid option -num-itr. Use -h, -help, or --help for list of options."));
//! assert!(err.contains("-num-iter"));
//! ```

use std::fmt::{self, Write as _};

/// What kind of value an option takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueKind {
    /// No value (`-aic-hw`); `=true|false|1|0` is accepted too.
    Flag,
    /// Any string; the text is the placeholder shown in help (`<path>`).
    Str(&'static str),
    /// An integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// A float in `min..=max`.
    Float { min: f64, max: f64 },
    /// One of the listed words (matched case-insensitively, stored in the table's spelling).
    Enum(&'static [&'static str]),
    /// A comma-separated list of integers, each in `min..=max`, at most `max_items` of them.
    IntList { min: i64, max: i64, max_items: usize },
    /// A comma-separated list of strings; the text is the placeholder shown in help.
    StrList(&'static str),
}

impl ValueKind {
    fn placeholder(&self) -> String {
        match self {
            ValueKind::Flag => String::new(),
            ValueKind::Str(p) | ValueKind::StrList(p) => format!("<{p}>"),
            ValueKind::Int { .. } => "<int>".into(),
            ValueKind::Float { .. } => "<float>".into(),
            ValueKind::Enum(vals) => vals.join("|"),
            ValueKind::IntList { .. } => "<int,...>".into(),
        }
    }

    /// Human description of the allowed values, for `-u` and errors.
    fn describe(&self) -> Option<String> {
        match self {
            ValueKind::Flag | ValueKind::Str(_) | ValueKind::StrList(_) => None,
            ValueKind::Int { min, max } => Some(range_text(*min, *max)),
            ValueKind::Float { min, max } => Some(format!("{min} to {max}")),
            ValueKind::Enum(vals) => Some(format!("one of {}", vals.join(", "))),
            ValueKind::IntList { min, max, max_items } => {
                let items = if *max_items == usize::MAX { String::new() } else { format!(", at most {max_items} items") };
                Some(format!("comma-separated integers, each {}{items}", range_text(*min, *max)))
            }
        }
    }
}

fn range_text(min: i64, max: i64) -> String {
    match (min, max) {
        (i64::MIN, i64::MAX) => "any integer".into(),
        (m, i64::MAX) => format!(">= {m}"),
        (i64::MIN, m) => format!("<= {m}"),
        (a, b) => format!("{a} to {b}"),
    }
}

/// A feature area that an option belongs to, used in "not supported yet" messages so users
/// know what is missing and maintainers know where to look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    /// Short description (`"compilation to a QPC"`).
    pub name: &'static str,
    /// Tracking issue, when one exists.
    pub issue: Option<u32>,
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.issue {
            Some(n) => write!(f, "{} (issue {n})", self.name),
            None => f.write_str(self.name),
        }
    }
}

/// Whether an option does something yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Parsed and acted on.
    Implemented,
    /// Accepted for compatibility and ignored; the text says why (shown in `-u`).
    Ignored(&'static str),
    /// Parsed and range-checked, then refused with `not supported yet: -<name>`.
    NotSupportedYet(Feature),
}

/// One option of a tool.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptSpec {
    /// Canonical name without dashes (`"aic-num-cores"`).
    pub name: &'static str,
    /// Other spellings without dashes (`"model"` for `m`).
    pub aliases: &'static [&'static str],
    pub kind: ValueKind,
    /// May be given several times; values accumulate.
    pub repeatable: bool,
    /// Default value as text, parsed with [`OptSpec::kind`] (shown by `-u`).
    pub default: Option<&'static str>,
    /// One-line help.
    pub help: &'static str,
    pub status: Status,
    /// Help section heading.
    pub group: &'static str,
    /// What the parser does when it sees the option.
    pub action: Action,
}

/// Options that stop parsing and ask for information instead of configuring a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// An ordinary option: recorded in [`ParsedArgs`].
    Record,
    /// Print the option list ([`OptionTable::help`]).
    Help,
    /// Print every option with defaults ([`OptionTable::detailed_help`]).
    DetailedHelp,
}

impl OptSpec {
    /// An implemented, non-repeatable option without default in group "General".
    pub const fn new(name: &'static str, kind: ValueKind, help: &'static str) -> OptSpec {
        OptSpec {
            name,
            aliases: &[],
            kind,
            repeatable: false,
            default: None,
            help,
            status: Status::Implemented,
            group: "General",
            action: Action::Record,
        }
    }
    pub const fn action(mut self, a: Action) -> OptSpec {
        self.action = a;
        self
    }
    pub const fn aliases(mut self, a: &'static [&'static str]) -> OptSpec {
        self.aliases = a;
        self
    }
    pub const fn default(mut self, d: &'static str) -> OptSpec {
        self.default = Some(d);
        self
    }
    pub const fn repeatable(mut self) -> OptSpec {
        self.repeatable = true;
        self
    }
    pub const fn status(mut self, s: Status) -> OptSpec {
        self.status = s;
        self
    }
    pub const fn unsupported(self, f: Feature) -> OptSpec {
        self.status(Status::NotSupportedYet(f))
    }
    pub const fn group(mut self, g: &'static str) -> OptSpec {
        self.group = g;
        self
    }

    /// Whether `spelled` (without dashes) names this option.
    pub fn matches(&self, spelled: &str) -> bool {
        self.name == spelled || self.aliases.contains(&spelled)
    }

    /// The default value, parsed. `None` when there is no default.
    pub fn default_value(&self) -> Option<Value> {
        self.default.and_then(|d| parse_value(self, d).ok())
    }
}

/// A parsed option value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Str(String),
    Int(i64),
    Float(f64),
    IntList(Vec<i64>),
    StrList(Vec<String>),
}

/// One option occurrence on the command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Occurrence {
    pub spec: &'static OptSpec,
    /// As the user wrote the name, with its dashes (`--num-iter`).
    pub spelled: String,
    pub value: Value,
}

/// Errors of option parsing. `Display` gives the full user-facing text.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CliError {
    #[error("Invalid option {spelled}. Use -h, -help, or --help for list of options.{}",
        suggestion.as_ref().map(|s| format!("\nDid you mean -{s}?")).unwrap_or_default())]
    UnknownOption { spelled: String, suggestion: Option<String> },
    #[error("option {option} needs a value ({expected})")]
    MissingValue { option: String, expected: String },
    #[error("invalid value `{value}` for option {option}: expected {expected}")]
    InvalidValue { option: String, value: String, expected: String },
    #[error("value `{value}` for option {option} is out of range: allowed {allowed}")]
    OutOfRange { option: String, value: String, allowed: String },
    #[error("option {option} needs {needs}")]
    Requires { option: String, needs: String },
    #[error("options {a} and {b} cannot be used together")]
    Conflict { a: String, b: String },
    #[error("invalid value for option {option}: {message}")]
    Invalid { option: String, message: String },
    #[error("not supported yet: -{option}\n  ({feature} has not been implemented in qaic-rs yet)")]
    NotSupportedYet { option: String, feature: Feature },
    #[error("unexpected argument `{0}`: options start with `-` (use -h for the list)")]
    Positional(String),
}

/// The options of one tool.
#[derive(Clone, Copy, Debug)]
pub struct OptionTable {
    /// Tool name, for help text.
    pub tool: &'static str,
    /// One paragraph printed at the top of the help.
    pub about: &'static str,
    pub options: &'static [OptSpec],
}

/// What the command line asks for: the special informational requests win as soon as they
/// are seen (like LLVM's `-help`), everything else is an [`ParsedArgs`].
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// `-h`, `-help`, `--help`, `--usage`: the option list.
    Help,
    /// `-u`: detailed help with defaults.
    DetailedHelp,
    Args(ParsedArgs),
}

impl Parsed {
    /// The arguments, or `None` for a help request.
    pub fn into_args(self) -> Option<ParsedArgs> {
        match self {
            Parsed::Args(a) => Some(a),
            _ => None,
        }
    }
}

/// The parsed command line, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedArgs {
    pub occurrences: Vec<Occurrence>,
}

impl ParsedArgs {
    fn last(&self, name: &str) -> Option<&Occurrence> {
        debug_assert!(!name.starts_with('-'), "option names are stored without dashes");
        self.occurrences.iter().rev().find(|o| o.spec.name == name)
    }
    /// Whether the option was given.
    pub fn given(&self, name: &str) -> bool {
        self.last(name).is_some()
    }
    /// A flag's value (false when absent).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.last(name).map(|o| &o.value), Some(Value::Bool(true)))
    }
    /// The last value given, or the table default.
    pub fn value(&self, name: &str) -> Option<Value> {
        self.last(name).map(|o| o.value.clone())
    }
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.last(name).map(|o| &o.value) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.last(name).map(|o| &o.value) {
            Some(Value::Int(v)) => Some(*v),
            _ => None,
        }
    }
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.last(name).map(|o| &o.value) {
            Some(Value::Float(v)) => Some(*v),
            _ => None,
        }
    }
    pub fn int_list(&self, name: &str) -> Option<&[i64]> {
        match self.last(name).map(|o| &o.value) {
            Some(Value::IntList(v)) => Some(v),
            _ => None,
        }
    }
    /// Every value of a repeatable option, in order; list values are flattened.
    pub fn strings(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for o in self.occurrences.iter().filter(|o| o.spec.name == name) {
            match &o.value {
                Value::Str(s) => out.push(s.clone()),
                Value::StrList(v) => out.extend(v.iter().cloned()),
                _ => {}
            }
        }
        out
    }
    /// The spelling the user used for an option (for error messages), else `-name`.
    pub fn spelled(&self, name: &str) -> String {
        self.last(name).map(|o| o.spelled.clone()).unwrap_or_else(|| format!("-{name}"))
    }
    /// The first option given whose feature has not landed.
    pub fn first_unsupported(&self) -> Option<CliError> {
        self.occurrences.iter().find_map(|o| match o.spec.status {
            Status::NotSupportedYet(feature) => {
                Some(CliError::NotSupportedYet { option: o.spec.name.to_string(), feature })
            }
            _ => None,
        })
    }
}

impl OptionTable {
    /// Finds an option by its spelling without dashes.
    pub fn find(&self, name: &str) -> Option<&'static OptSpec> {
        self.options.iter().find(|o| o.matches(name))
    }

    /// Parses a command line (without the program name).
    pub fn parse<I, S>(&self, args: I) -> Result<Parsed, CliError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_string()).collect();
        let mut out = ParsedArgs::default();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            let Some(body) = strip_dashes(arg) else {
                return Err(CliError::Positional(arg.clone()));
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let dashes = &arg[..arg.len() - body.len()];
            let spelled = format!("{dashes}{name}");
            let Some(spec) = self.find(name) else {
                return Err(CliError::UnknownOption { spelled, suggestion: self.suggest(name) });
            };
            // Help requests win as soon as they are seen.
            match spec.action {
                Action::Help => return Ok(Parsed::Help),
                Action::DetailedHelp => return Ok(Parsed::DetailedHelp),
                Action::Record => {}
            }
            let value = match (spec.kind, inline) {
                (ValueKind::Flag, None) => Value::Bool(true),
                (_, Some(v)) => parse_value(spec, &v).map_err(|e| e.with_option(&spelled))?,
                (_, None) => {
                    let next = args.get(i).filter(|n| !looks_like_option(n));
                    let Some(v) = next else {
                        return Err(CliError::MissingValue {
                            option: spelled,
                            expected: spec.kind.describe().unwrap_or_else(|| spec.kind.placeholder()),
                        });
                    };
                    i += 1;
                    parse_value(spec, v).map_err(|e| e.with_option(&spelled))?
                }
            };
            out.occurrences.push(Occurrence { spec, spelled, value });
        }
        Ok(Parsed::Args(out))
    }

    /// The closest option name to `name` (edit distance), if it is close enough to be useful.
    pub fn suggest(&self, name: &str) -> Option<String> {
        let mut best: Option<(usize, &str)> = None;
        for spec in self.options {
            for cand in std::iter::once(&spec.name).chain(spec.aliases.iter()) {
                // One-letter aliases are never useful suggestions for a long option.
                if cand.len() < 2 && name.len() > 2 {
                    continue;
                }
                let d = edit_distance(name, cand);
                if best.is_none_or(|(bd, _)| d < bd) {
                    best = Some((d, spec.name));
                }
            }
        }
        let (d, cand) = best?;
        // Allow about one edit per three characters, at least two.
        (d <= (name.len() / 3).max(2)).then(|| cand.to_string())
    }

    /// The option list printed for `-h`.
    pub fn help(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "OVERVIEW: {}\n\nUSAGE: {} [options]\n\nOPTIONS:", self.about, self.tool);
        for group in self.groups() {
            let _ = writeln!(s, "\n{group}:");
            for o in self.options.iter().filter(|o| o.group == group) {
                let mut left = std::iter::once(&o.name)
                    .chain(o.aliases.iter())
                    .map(|n| if o.action == Action::Record || n.len() < 2 { format!("-{n}") } else { format!("-{n}, --{n}") })
                    .collect::<Vec<_>>()
                    .join(", ");
                let ph = o.kind.placeholder();
                if !ph.is_empty() {
                    let _ = write!(left, "={ph}");
                }
                let mark = match o.status {
                    Status::NotSupportedYet(_) => " [not supported yet]",
                    _ => "",
                };
                let _ = writeln!(s, "  {left:<44} {}{mark}", o.help);
            }
        }
        s
    }

    /// Detailed help printed for `-u`: every option with aliases, values, default and status.
    pub fn detailed_help(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "OVERVIEW: {}\n\nUSAGE: {} [options]", self.about, self.tool);
        let _ = writeln!(
            s,
            "\nOptions take one or two dashes; values follow `=` or come as the next argument."
        );
        for group in self.groups() {
            let _ = writeln!(s, "\n{group}:");
            for o in self.options.iter().filter(|o| o.group == group) {
                let ph = o.kind.placeholder();
                let eq = if ph.is_empty() { String::new() } else { format!("={ph}") };
                let _ = writeln!(s, "  -{}{eq}", o.name);
                let _ = writeln!(s, "      {}", o.help);
                if !o.aliases.is_empty() {
                    let a: Vec<String> = o.aliases.iter().map(|a| format!("-{a}")).collect();
                    let _ = writeln!(s, "      aliases: {}", a.join(", "));
                }
                if let Some(d) = o.kind.describe() {
                    let _ = writeln!(s, "      values: {d}");
                }
                match (o.default, o.kind) {
                    (Some(d), _) => {
                        let _ = writeln!(s, "      default: {d}");
                    }
                    (None, ValueKind::Flag) => {
                        let _ = writeln!(s, "      default: off");
                    }
                    (None, _) => {
                        let _ = writeln!(s, "      default: none");
                    }
                }
                if o.repeatable {
                    let _ = writeln!(s, "      may be given several times");
                }
                match o.status {
                    Status::Implemented => {}
                    Status::Ignored(why) => {
                        let _ = writeln!(s, "      accepted and ignored: {why}");
                    }
                    Status::NotSupportedYet(f) => {
                        let _ = writeln!(s, "      status: not supported yet ({f})");
                    }
                }
            }
        }
        s
    }

    fn groups(&self) -> Vec<&'static str> {
        let mut g: Vec<&'static str> = Vec::new();
        for o in self.options {
            if !g.contains(&o.group) {
                g.push(o.group);
            }
        }
        g
    }
}

impl CliError {
    /// Fills in the option spelling of a value error produced without it.
    fn with_option(self, spelled: &str) -> CliError {
        match self {
            CliError::InvalidValue { value, expected, .. } => {
                CliError::InvalidValue { option: spelled.to_string(), value, expected }
            }
            CliError::OutOfRange { value, allowed, .. } => {
                CliError::OutOfRange { option: spelled.to_string(), value, allowed }
            }
            other => other,
        }
    }
}

/// `-x`/`--x` → `x`; `None` for a positional (including a lone `-` and negative numbers).
fn strip_dashes(arg: &str) -> Option<&str> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
        return None;
    }
    Some(body)
}

fn looks_like_option(s: &str) -> bool {
    strip_dashes(s).is_some() && s.parse::<f64>().is_err()
}

/// Parses one option value according to the option's kind (the option name is filled in by
/// the caller).
pub fn parse_value(spec: &OptSpec, text: &str) -> Result<Value, CliError> {
    let invalid = |expected: String| CliError::InvalidValue {
        option: String::new(),
        value: text.to_string(),
        expected,
    };
    let out_of_range = |allowed: String| CliError::OutOfRange {
        option: String::new(),
        value: text.to_string(),
        allowed,
    };
    let t = text.trim();
    match spec.kind {
        ValueKind::Flag => match t.to_ascii_lowercase().as_str() {
            "" | "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(invalid("no value (a flag), or true/false".into())),
        },
        ValueKind::Str(_) => Ok(Value::Str(text.to_string())),
        ValueKind::StrList(_) => Ok(Value::StrList(
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
        )),
        ValueKind::Int { min, max } => {
            let v: i64 = t.parse().map_err(|_| invalid("an integer".into()))?;
            if v < min || v > max {
                return Err(out_of_range(range_text(min, max)));
            }
            Ok(Value::Int(v))
        }
        ValueKind::Float { min, max } => {
            let v: f64 = t.parse().map_err(|_| invalid("a number".into()))?;
            if !(v >= min && v <= max) {
                return Err(out_of_range(format!("{min} to {max}")));
            }
            Ok(Value::Float(v))
        }
        ValueKind::Enum(vals) => vals
            .iter()
            .find(|v| v.eq_ignore_ascii_case(t))
            .map(|v| Value::Str((*v).to_string()))
            .ok_or_else(|| invalid(format!("one of {}", vals.join(", ")))),
        ValueKind::IntList { min, max, max_items } => {
            let mut out = Vec::new();
            for item in t.split(',') {
                let v: i64 = item
                    .trim()
                    .parse()
                    .map_err(|_| invalid("comma-separated integers".into()))?;
                if v < min || v > max {
                    return Err(out_of_range(format!("each item {}", range_text(min, max))));
                }
                out.push(v);
            }
            if out.len() > max_items {
                return Err(out_of_range(format!("at most {max_items} items")));
            }
            Ok(Value::IntList(out))
        }
    }
}

/// Levenshtein distance over bytes (option names are ASCII).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(!ca.eq_ignore_ascii_case(&cb));
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Feature = Feature { name: "testing", issue: Some(3) };
    static OPTS: &[OptSpec] = &[
        OptSpec::new("m", ValueKind::Str("path"), "model").aliases(&["model"]),
        OptSpec::new("num-iter", ValueKind::Int { min: 1, max: 1000 }, "iters").default("1"),
        OptSpec::new("ratio", ValueKind::Float { min: 0.0, max: 1.0 }, "r"),
        OptSpec::new("calib", ValueKind::Enum(&["None", "Percentile"]), "c"),
        OptSpec::new("sym", ValueKind::Str("NAME,VALUE"), "s").repeatable(),
        OptSpec::new("events", ValueKind::IntList { min: 0, max: 255, max_items: 2 }, "e"),
        OptSpec::new("hw", ValueKind::Flag, "hw").unsupported(F),
        OptSpec::new("v", ValueKind::Flag, "verbose"),
        OptSpec::new("h", ValueKind::Flag, "help").aliases(&["help"]).action(Action::Help),
        OptSpec::new("u", ValueKind::Flag, "detailed help").action(Action::DetailedHelp),
    ];
    const T: OptionTable = OptionTable { tool: "t", about: "test", options: OPTS };

    fn args(a: &[&str]) -> Result<ParsedArgs, CliError> {
        T.parse(a).map(|p| p.into_args().unwrap_or_default())
    }

    #[test]
    fn syntaxes() {
        let p = args(&["-m=a.onnx", "--num-iter", "7", "-ratio=0.5", "-calib=percentile", "-v"]).unwrap();
        assert_eq!(p.str("m"), Some("a.onnx"));
        assert_eq!(p.int("num-iter"), Some(7));
        assert_eq!(p.float("ratio"), Some(0.5));
        assert_eq!(p.str("calib"), Some("Percentile"));
        assert!(p.flag("v"));
        let p = args(&["-model", "x", "-sym=a,1", "-sym", "b,2", "-events=1,2"]).unwrap();
        assert_eq!(p.str("m"), Some("x"));
        assert_eq!(p.strings("sym"), vec!["a,1", "b,2"]);
        assert_eq!(p.int_list("events"), Some(&[1i64, 2][..]));
        // last wins for non-repeatable options
        assert_eq!(args(&["-num-iter=2", "-num-iter=3"]).unwrap().int("num-iter"), Some(3));
        assert!(!args(&["-v=false"]).unwrap().flag("v"));
    }

    #[test]
    fn help_requests() {
        assert_eq!(T.parse(["-h"]).unwrap(), Parsed::Help);
        assert_eq!(T.parse(["--help"]).unwrap(), Parsed::Help);
        assert_eq!(T.parse(["-m=x", "-help"]).unwrap(), Parsed::Help);
        assert_eq!(T.parse(["-u"]).unwrap(), Parsed::DetailedHelp);
        assert!(T.help().contains("-num-iter=<int>"));
        assert!(T.detailed_help().contains("default: 1"));
        assert!(T.detailed_help().contains("not supported yet (testing (issue 3))"));
    }

    #[test]
    fn errors() {
        let e = args(&["-num-itr=3"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid option -num-itr. Use -h, -help, or --help for list of options.\nDid you mean -num-iter?"
        );
        let e = args(&["-zzzzzzzzzz"]).unwrap_err();
        assert_eq!(e, CliError::UnknownOption { spelled: "-zzzzzzzzzz".into(), suggestion: None });
        assert!(matches!(args(&["-num-iter=0"]), Err(CliError::OutOfRange { .. })));
        assert!(matches!(args(&["-num-iter=x"]), Err(CliError::InvalidValue { .. })));
        assert!(matches!(args(&["-ratio=1.5"]), Err(CliError::OutOfRange { .. })));
        assert!(matches!(args(&["-ratio=NaN"]), Err(CliError::OutOfRange { .. })));
        assert!(matches!(args(&["-calib=foo"]), Err(CliError::InvalidValue { .. })));
        assert!(matches!(args(&["-events=1,2,3"]), Err(CliError::OutOfRange { .. })));
        assert!(matches!(args(&["-events=1,300"]), Err(CliError::OutOfRange { .. })));
        assert!(matches!(args(&["-num-iter"]), Err(CliError::MissingValue { .. })));
        assert!(matches!(args(&["-m", "-v"]), Err(CliError::MissingValue { .. })));
        assert!(matches!(args(&["model.onnx"]), Err(CliError::Positional(_))));
        let p = args(&["-hw"]).unwrap();
        assert_eq!(p.first_unsupported().unwrap().to_string().lines().next(), Some("not supported yet: -hw"));
        let e = args(&["-num-iter=5000"]).unwrap_err().to_string();
        assert!(e.contains("-num-iter") && e.contains("1 to 1000"), "{e}");
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("abc", "abc"), 0);
    }
}
