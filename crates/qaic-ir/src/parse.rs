//! The text form, parsing side: [`parse`] reads what [`Graph::to_text`] prints.
//!
//! Parsing checks syntax only (plus what the text alone makes ambiguous); call
//! [`Graph::verify`] for the graph invariants, so that invalid graphs can be written down in
//! verifier tests.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use qaic_tensor::{DType, Dim, Shape, Tensor};

use crate::graph::{Attr, Graph, Node, ValueId, ValueType};
use crate::text::{is_ident_char, is_ident_start, is_name_char, natural_type};

/// A syntax error, located by 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {msg}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

/// Parses the text form of a graph (see `docs/ir.md` for the grammar).
///
/// ```
/// let g = qaic_ir::parse("graph g {\n  opset \"\" = 13\n  input %x: f32[n,3]\n  %y = Relu(%x)\n  output %y\n}\n").unwrap();
/// g.verify().unwrap();
/// assert_eq!(g.nodes[0].op_type, "Relu");
/// let e = qaic_ir::parse("graph g {\n  input %x: f33[2]\n}").unwrap_err();
/// assert_eq!((e.line, e.col), (2, 13));
/// ```
pub fn parse(text: &str) -> Result<Graph, ParseError> {
    let toks = lex(text)?;
    let mut p = Parser { toks, pos: 0 };
    let g = p.graph()?;
    if p.pos < p.toks.len() - 1 {
        return Err(p.err_here("expected end of input after the graph"));
    }
    Ok(g)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(Vec<u8>),
    Num(String),
    /// `%name`
    Value(String),
    /// `@name`
    At(String),
    Punct(&'static str),
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Str(_) => f.write_str("a string"),
            Tok::Num(s) => write!(f, "number `{s}`"),
            Tok::Value(s) => write!(f, "value `%{s}`"),
            Tok::At(s) => write!(f, "node name `@{s}`"),
            Tok::Punct(p) => write!(f, "`{p}`"),
            Tok::Eof => f.write_str("end of input"),
        }
    }
}

struct Spanned {
    tok: Tok,
    line: usize,
    col: usize,
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    col: usize,
    _text: &'a str,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.pos + k).copied()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }
    fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError { line: self.line, col: self.col, msg: msg.into() }
    }
    fn starts_with(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(k, c)| self.peek_at(k) == Some(c))
    }

    fn string(&mut self) -> Result<Vec<u8>, ParseError> {
        let (line, col) = (self.line, self.col);
        self.bump(); // opening quote
        let mut out = Vec::new();
        loop {
            let (el, ec) = (self.line, self.col);
            let esc_err = |msg: String| ParseError { line: el, col: ec, msg };
            let Some(c) = self.bump() else {
                return Err(ParseError { line, col, msg: "unterminated string".into() });
            };
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let e = self.bump().ok_or_else(|| esc_err("unterminated escape".into()))?;
                    match e {
                        '"' => out.push(b'"'),
                        '\\' => out.push(b'\\'),
                        'n' => out.push(b'\n'),
                        't' => out.push(b'\t'),
                        'r' => out.push(b'\r'),
                        'x' => {
                            let h: String = [self.bump(), self.bump()].iter().flatten().collect();
                            let b = u8::from_str_radix(&h, 16)
                                .map_err(|_| esc_err(format!("bad escape `\\x{h}`: two hex digits expected")))?;
                            out.push(b);
                        }
                        other => return Err(esc_err(format!("unknown escape `\\{other}`"))),
                    }
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }

    fn name_after_sigil(&mut self) -> Result<String, ParseError> {
        if self.peek() == Some('"') {
            let b = self.string()?;
            return String::from_utf8(b).map_err(|_| self.err("names must be valid UTF-8"));
        }
        let mut s = String::new();
        while let Some(c) = self.peek().filter(|c| is_name_char(*c)) {
            s.push(c);
            self.bump();
        }
        if s.is_empty() {
            return Err(self.err("expected a name (bare or quoted) after `%` or `@`"));
        }
        Ok(s)
    }

    /// `nan` may carry its bits: `nan:0x7fc00001`.
    fn nan_bits(&mut self, s: &mut String) {
        if s.ends_with("nan") && self.starts_with(":0x") {
            for _ in 0..3 {
                s.push(self.bump().unwrap_or(' '));
            }
            while let Some(c) = self.peek().filter(|c| c.is_ascii_hexdigit()) {
                s.push(c);
                self.bump();
            }
        }
    }

    fn number(&mut self) -> String {
        let mut s = String::new();
        if let Some(c @ ('-' | '+')) = self.peek() {
            s.push(c);
            self.bump();
        }
        if self.starts_with("inf") || self.starts_with("nan") {
            for _ in 0..3 {
                s.push(self.bump().unwrap_or(' '));
            }
            self.nan_bits(&mut s);
            return s;
        }
        while let Some(c) = self.peek() {
            let exp_sign = matches!(c, '+' | '-') && s.ends_with(['e', 'E']) && !s.contains("0x");
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || exp_sign {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        s
    }
}

fn lex(text: &str) -> Result<Vec<Spanned>, ParseError> {
    let mut lx = Lexer { chars: text.chars().collect(), pos: 0, line: 1, col: 1, _text: text };
    let mut out = Vec::new();
    while let Some(c) = lx.peek() {
        if c.is_whitespace() {
            lx.bump();
            continue;
        }
        if c == '#' {
            while lx.peek().is_some_and(|c| c != '\n') {
                lx.bump();
            }
            continue;
        }
        let (line, col) = (lx.line, lx.col);
        let tok = if c == '"' {
            Tok::Str(lx.string()?)
        } else if c == '%' {
            lx.bump();
            Tok::Value(lx.name_after_sigil()?)
        } else if c == '@' {
            lx.bump();
            Tok::At(lx.name_after_sigil()?)
        } else if c.is_ascii_digit()
            || (matches!(c, '-' | '+')
                && lx.peek_at(1).is_some_and(|d| d.is_ascii_digit() || d == 'i' || d == 'n'))
        {
            Tok::Num(lx.number())
        } else if is_ident_start(c) {
            let mut s = String::new();
            while let Some(c) = lx.peek().filter(|c| is_ident_char(*c)) {
                s.push(c);
                lx.bump();
            }
            lx.nan_bits(&mut s);
            Tok::Ident(s)
        } else if c == ':' && lx.peek_at(1) == Some(':') {
            lx.bump();
            lx.bump();
            Tok::Punct("::")
        } else {
            let p = match c {
                '{' => "{",
                '}' => "}",
                '[' => "[",
                ']' => "]",
                '(' => "(",
                ')' => ")",
                '<' => "<",
                '>' => ">",
                ',' => ",",
                '=' => "=",
                ':' => ":",
                '?' => "?",
                '*' => "*",
                _ => return Err(lx.err(format!("unexpected character `{c}`"))),
            };
            lx.bump();
            Tok::Punct(p)
        };
        out.push(Spanned { tok, line, col });
    }
    out.push(Spanned { tok: Tok::Eof, line: lx.line, col: lx.col });
    Ok(out)
}

struct Parser {
    toks: Vec<Spanned>,
    pos: usize,
}

/// Values of the graph being parsed, by name, created on first mention (forward references
/// are allowed, as in Cranelift).
struct Scope {
    g: Graph,
    by_name: HashMap<String, ValueId>,
}

impl Scope {
    fn value(&mut self, name: &str) -> ValueId {
        if let Some(id) = self.by_name.get(name) {
            return *id;
        }
        let id = self.g.add_value(name, None);
        self.by_name.insert(name.to_string(), id);
        id
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }
    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].tok.clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn err_here(&self, msg: impl Into<String>) -> ParseError {
        let s = &self.toks[self.pos];
        ParseError { line: s.line, col: s.col, msg: msg.into() }
    }
    /// Error located at the token just consumed.
    fn err_prev(&self, msg: impl Into<String>) -> ParseError {
        let s = &self.toks[self.pos.saturating_sub(1)];
        ParseError { line: s.line, col: s.col, msg: msg.into() }
    }
    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }
    fn eat_punct(&mut self, p: &str) -> bool {
        if self.is_punct(p) {
            self.next();
            true
        } else {
            false
        }
    }
    fn expect_punct(&mut self, p: &str, what: &str) -> Result<(), ParseError> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            Err(self.err_here(format!("expected `{p}` {what}, found {}", self.peek())))
        }
    }
    fn is_ident(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Ident(i) if i == s)
    }
    fn expect_ident(&mut self, s: &str) -> Result<(), ParseError> {
        if self.is_ident(s) {
            self.next();
            Ok(())
        } else {
            Err(self.err_here(format!("expected `{s}`, found {}", self.peek())))
        }
    }
    fn string(&mut self, what: &str) -> Result<Vec<u8>, ParseError> {
        match self.next() {
            Tok::Str(s) => Ok(s),
            t => Err(self.err_prev(format!("expected a quoted string ({what}), found {t}"))),
        }
    }
    fn utf8_string(&mut self, what: &str) -> Result<String, ParseError> {
        let b = self.string(what)?;
        String::from_utf8(b).map_err(|_| self.err_prev(format!("{what} must be valid UTF-8")))
    }
    /// A bare identifier or a quoted string.
    fn name(&mut self, what: &str) -> Result<String, ParseError> {
        match self.next() {
            Tok::Ident(s) => Ok(s),
            Tok::Str(b) => String::from_utf8(b).map_err(|_| self.err_prev(format!("{what} must be valid UTF-8"))),
            t => Err(self.err_prev(format!("expected {what}, found {t}"))),
        }
    }
    fn int(&mut self, what: &str) -> Result<i64, ParseError> {
        match self.next() {
            Tok::Num(s) => s.parse::<i64>().map_err(|_| self.err_prev(format!("{what}: `{s}` is not an integer"))),
            t => Err(self.err_prev(format!("expected {what} (an integer), found {t}"))),
        }
    }

    fn graph(&mut self) -> Result<Graph, ParseError> {
        self.expect_ident("graph")?;
        let name = self.name("a graph name")?;
        self.expect_punct("{", "to open the graph body")?;
        let mut sc = Scope { g: Graph::new(name), by_name: HashMap::new() };
        loop {
            match self.peek().clone() {
                Tok::Punct("}") => {
                    self.next();
                    break;
                }
                Tok::Eof => return Err(self.err_here("unexpected end of input: `}` missing")),
                Tok::Ident(kw) => match kw.as_str() {
                    "opset" => {
                        self.next();
                        let d = self.utf8_string("an opset domain")?;
                        self.expect_punct("=", "after the opset domain")?;
                        let v = self.int("an opset version")?;
                        sc.g.opsets.insert(d, v);
                    }
                    "meta" => {
                        self.next();
                        let k = self.utf8_string("a metadata key")?;
                        self.expect_punct("=", "after the metadata key")?;
                        let v = self.utf8_string("a metadata value")?;
                        sc.g.metadata.insert(k, v);
                    }
                    "input" | "capture" | "const" | "value" => {
                        self.next();
                        let id = self.decl(&mut sc, &kw)?;
                        match kw.as_str() {
                            "input" => sc.g.inputs.push(id),
                            "capture" => sc.g.captures.push(id),
                            _ => {}
                        }
                    }
                    "output" => {
                        self.next();
                        loop {
                            match self.next() {
                                Tok::Value(v) => {
                                    let id = sc.value(&v);
                                    sc.g.outputs.push(id);
                                }
                                t => return Err(self.err_prev(format!("expected a graph output `%name`, found {t}"))),
                            }
                            if !self.eat_punct(",") {
                                break;
                            }
                        }
                    }
                    "_" => self.node(&mut sc)?,
                    other => {
                        return Err(self.err_here(format!(
                            "unknown statement `{other}` (expected opset, meta, input, capture, const, value, output or a node)"
                        )));
                    }
                },
                Tok::Value(_) | Tok::Punct("(") => self.node(&mut sc)?,
                t => return Err(self.err_here(format!("expected a statement, found {t}"))),
            }
        }
        Ok(sc.g)
    }

    fn decl(&mut self, sc: &mut Scope, kw: &str) -> Result<ValueId, ParseError> {
        let name = match self.next() {
            Tok::Value(v) => v,
            t => return Err(self.err_prev(format!("expected `%name` after `{kw}`, found {t}"))),
        };
        let id = sc.value(&name);
        // `Some(None)` is an explicit `: ?`.
        let mut ty: Option<Option<ValueType>> = None;
        if self.eat_punct(":") {
            ty = Some(if self.eat_punct("?") { None } else { Some(self.ty()?) });
        }
        let mut constant = None;
        if self.eat_punct("=") {
            constant = Some(self.tensor()?);
        } else if kw == "const" {
            return Err(self.err_here(format!("constant `%{name}` needs `= <tensor>`")));
        }
        let v = sc.g.value_mut(id);
        v.ty = match (ty, &constant) {
            (Some(t), _) => t,
            (None, Some(t)) => Some(natural_type(t)),
            (None, None) => v.ty.take(),
        };
        if constant.is_some() {
            v.constant = constant;
        }
        Ok(id)
    }

    fn node(&mut self, sc: &mut Scope) -> Result<(), ParseError> {
        let mut outputs = Vec::new();
        if self.eat_punct("(") {
            self.expect_punct(")", "(a node without outputs is written `() = Op(...)`)")?;
        } else {
            loop {
                match self.next() {
                    Tok::Ident(u) if u == "_" => outputs.push(None),
                    Tok::Value(v) => {
                        let id = sc.value(&v);
                        if self.eat_punct(":") {
                            let t = self.ty()?;
                            sc.g.value_mut(id).ty = Some(t);
                        }
                        outputs.push(Some(id));
                    }
                    t => return Err(self.err_prev(format!("expected a node output (`%name` or `_`), found {t}"))),
                }
                if !self.eat_punct(",") {
                    break;
                }
            }
        }
        self.expect_punct("=", "between node outputs and the op")?;
        let first = self.name("an op type")?;
        let (domain, op_type) =
            if self.eat_punct("::") { (first, self.name("an op type after `::`")?) } else { (String::new(), first) };
        self.expect_punct("(", "to open the node's inputs")?;
        let mut inputs = Vec::new();
        if !self.eat_punct(")") {
            loop {
                match self.next() {
                    Tok::Ident(u) if u == "_" => inputs.push(None),
                    Tok::Value(v) => inputs.push(Some(sc.value(&v))),
                    t => return Err(self.err_prev(format!("expected a node input (`%name` or `_`), found {t}"))),
                }
                if self.eat_punct(")") {
                    break;
                }
                self.expect_punct(",", "between node inputs")?;
            }
        }
        let mut attrs = BTreeMap::new();
        if self.eat_punct("{") && !self.eat_punct("}") {
            loop {
                let an = self.name("an attribute name")?;
                self.expect_punct("=", "after the attribute name")?;
                let a = self.attr()?;
                if attrs.insert(an.clone(), a).is_some() {
                    return Err(self.err_prev(format!("attribute `{an}` is given twice")));
                }
                if self.eat_punct("}") {
                    break;
                }
                self.expect_punct(",", "between attributes")?;
            }
        }
        let name = match self.peek() {
            Tok::At(n) => {
                let n = n.clone();
                self.next();
                n
            }
            _ => String::new(),
        };
        sc.g.add_node(Node { name, domain, op_type, inputs, outputs, attrs });
        Ok(())
    }

    fn dtype(&mut self) -> Result<DType, ParseError> {
        match self.next() {
            Tok::Ident(s) => s.parse::<DType>().map_err(|_| self.err_prev(format!("unknown element type `{s}`"))),
            t => Err(self.err_prev(format!("expected an element type, found {t}"))),
        }
    }

    fn ty(&mut self) -> Result<ValueType, ParseError> {
        for (kw, wrap) in [("seq", 0), ("opt", 1)] {
            if self.is_ident(kw) {
                self.next();
                self.expect_punct("<", &format!("after `{kw}`"))?;
                let inner = self.ty()?;
                self.expect_punct(">", &format!("to close `{kw}<`"))?;
                return Ok(if wrap == 0 {
                    ValueType::Sequence(Box::new(inner))
                } else {
                    ValueType::Optional(Box::new(inner))
                });
            }
        }
        if self.is_ident("map") {
            self.next();
            self.expect_punct("<", "after `map`")?;
            let k = self.dtype()?;
            self.expect_punct(",", "between map key and value types")?;
            let v = self.ty()?;
            self.expect_punct(">", "to close `map<`")?;
            return Ok(ValueType::Map(k, Box::new(v)));
        }
        let dtype = self.dtype()?;
        self.expect_punct("[", "to open the shape (`[*]` for unknown rank)")?;
        if self.eat_punct("*") {
            self.expect_punct("]", "after `[*`")?;
            return Ok(ValueType::Tensor { dtype, shape: None });
        }
        let mut dims = Vec::new();
        if !self.eat_punct("]") {
            loop {
                let d = match self.next() {
                    Tok::Punct("?") => Dim::Unknown,
                    Tok::Num(s) => Dim::Known(
                        s.parse::<usize>().map_err(|_| self.err_prev(format!("bad dimension `{s}`")))?,
                    ),
                    Tok::Ident(s) => Dim::Sym(s),
                    Tok::Str(b) => Dim::Sym(
                        String::from_utf8(b).map_err(|_| self.err_prev("symbol names must be valid UTF-8"))?,
                    ),
                    t => return Err(self.err_prev(format!("expected a dimension (number, symbol or `?`), found {t}"))),
                };
                dims.push(d);
                if self.eat_punct("]") {
                    break;
                }
                self.expect_punct(",", "between dimensions")?;
            }
        }
        Ok(ValueType::Tensor { dtype, shape: Some(Shape(dims)) })
    }

    fn tensor(&mut self) -> Result<Tensor, ParseError> {
        let dtype = self.dtype()?;
        let (line, col) = (self.toks[self.pos.saturating_sub(1)].line, self.toks[self.pos.saturating_sub(1)].col);
        self.expect_punct("[", "to open the tensor shape")?;
        let mut shape = Vec::new();
        if !self.eat_punct("]") {
            loop {
                match self.next() {
                    Tok::Num(s) => shape.push(
                        s.parse::<usize>().map_err(|_| self.err_prev(format!("bad tensor dimension `{s}`")))?,
                    ),
                    t => return Err(self.err_prev(format!("constant tensors have concrete shapes; found {t}"))),
                }
                if self.eat_punct("]") {
                    break;
                }
                self.expect_punct(",", "between dimensions")?;
            }
        }
        let at = |msg: String| ParseError { line, col, msg };
        if self.is_punct("<") {
            return Err(self.err_here(
                "this constant was elided when the listing was printed; such a listing cannot be parsed back",
            ));
        }
        if self.is_ident("hex") {
            self.next();
            let s = self.string("hex bytes")?;
            let bytes = decode_hex(&s).ok_or_else(|| self.err_prev("hex bytes: an even number of hex digits expected"))?;
            return Tensor::from_bytes(dtype, shape, bytes.into()).map_err(|e| at(e.to_string()));
        }
        self.expect_punct("[", "to open the tensor elements (or `hex\"…\"`)")?;
        let mut items: Vec<(Tok, usize, usize)> = Vec::new();
        if !self.eat_punct("]") {
            loop {
                let s = &self.toks[self.pos];
                let (l, c) = (s.line, s.col);
                items.push((self.next(), l, c));
                if self.eat_punct("]") {
                    break;
                }
                self.expect_punct(",", "between tensor elements")?;
            }
        }
        elements_to_tensor(dtype, shape, &items).map_err(|(l, c, msg)| ParseError { line: l, col: c, msg })
    }

    fn attr(&mut self) -> Result<Attr, ParseError> {
        match self.peek().clone() {
            Tok::Num(s) => {
                self.next();
                if is_int_literal(&s) {
                    s.parse::<i64>().map(Attr::Int).map_err(|_| self.err_prev(format!("integer `{s}` out of range")))
                } else {
                    parse_f32(&s).map(Attr::Float).ok_or_else(|| self.err_prev(format!("bad number `{s}`")))
                }
            }
            Tok::Str(b) => {
                self.next();
                Ok(Attr::String(b))
            }
            Tok::Ident(s) => match s.as_str() {
                "graph" => Ok(Attr::Graph(Box::new(self.graph()?))),
                "type" => {
                    self.next();
                    Ok(Attr::Type(self.ty()?))
                }
                "ints" | "floats" | "strings" | "tensors" | "graphs" | "types" => {
                    self.next();
                    self.expect_punct("[", &format!("after `{s}` (an empty list)"))?;
                    self.expect_punct("]", &format!("`{s}[]` is the empty list"))?;
                    Ok(match s.as_str() {
                        "ints" => Attr::Ints(vec![]),
                        "floats" => Attr::Floats(vec![]),
                        "strings" => Attr::Strings(vec![]),
                        "tensors" => Attr::Tensors(vec![]),
                        "graphs" => Attr::Graphs(vec![]),
                        _ => Attr::Types(vec![]),
                    })
                }
                _ if s.starts_with("inf") || s.starts_with("nan") => {
                    self.next();
                    parse_f32(&s).map(Attr::Float).ok_or_else(|| self.err_prev(format!("bad number `{s}`")))
                }
                _ => Ok(Attr::Tensor(self.tensor()?)),
            },
            Tok::Punct("[") => self.attr_list(),
            t => Err(self.err_here(format!("expected an attribute value, found {t}"))),
        }
    }

    fn attr_list(&mut self) -> Result<Attr, ParseError> {
        self.expect_punct("[", "")?;
        let mut items: Vec<Attr> = Vec::new();
        if !self.eat_punct("]") {
            loop {
                let a = self.attr()?;
                if matches!(a, Attr::Ints(_) | Attr::Floats(_) | Attr::Strings(_) | Attr::Tensors(_) | Attr::Graphs(_) | Attr::Types(_)) {
                    return Err(self.err_prev("attribute lists cannot be nested"));
                }
                if let Some(first) = items.first() {
                    if first.kind() != a.kind() {
                        return Err(self.err_prev(format!(
                            "attribute list mixes {} and {} elements",
                            first.kind(),
                            a.kind()
                        )));
                    }
                }
                items.push(a);
                if self.eat_punct("]") {
                    break;
                }
                self.expect_punct(",", "between list elements")?;
            }
        }
        let kind = items.first().map(|a| a.kind()).unwrap_or("");
        if kind.is_empty() {
            return Err(self.err_prev("an empty attribute list needs its kind: `ints[]`, `floats[]`, `strings[]`, `tensors[]`, `graphs[]` or `types[]`"));
        }
        macro_rules! collect {
            ($v:ident, $ctor:ident) => {
                Attr::$ctor(items.into_iter().filter_map(|a| if let Attr::$v(x) = a { Some(x) } else { None }).collect())
            };
        }
        Ok(match kind {
            "int" => collect!(Int, Ints),
            "float" => collect!(Float, Floats),
            "string" => collect!(String, Strings),
            "tensor" => collect!(Tensor, Tensors),
            "graph" => Attr::Graphs(
                items.into_iter().filter_map(|a| if let Attr::Graph(g) = a { Some(*g) } else { None }).collect(),
            ),
            _ => collect!(Type, Types),
        })
    }
}

fn is_int_literal(s: &str) -> bool {
    let d = s.strip_prefix(['-', '+']).unwrap_or(s);
    !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())
}

fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// NaN bits of a `nan:0x…` literal (any sign prefix is part of the bits).
fn nan_literal_bits(s: &str) -> Option<Option<u64>> {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let rest = body.strip_prefix("nan")?;
    if rest.is_empty() {
        return Some(None);
    }
    let hex = rest.strip_prefix(":0x")?;
    u64::from_str_radix(hex, 16).ok().map(Some)
}

fn parse_f32(s: &str) -> Option<f32> {
    match nan_literal_bits(s) {
        Some(None) => Some(f32::NAN),
        Some(Some(bits)) => {
            let v = f32::from_bits(u32::try_from(bits).ok()?);
            v.is_nan().then_some(v)
        }
        None if s.chars().any(|c| c.is_ascii_digit()) || s.trim_start_matches(['-', '+']) == "inf" => s.parse().ok(),
        None => None,
    }
}

fn parse_f64(s: &str) -> Option<f64> {
    match nan_literal_bits(s) {
        Some(None) => Some(f64::NAN),
        Some(Some(bits)) => {
            let v = f64::from_bits(bits);
            v.is_nan().then_some(v)
        }
        None if s.chars().any(|c| c.is_ascii_digit()) || s.trim_start_matches(['-', '+']) == "inf" => s.parse().ok(),
        None => None,
    }
}

/// Half-precision literals: NaN as raw 16-bit patterns, other values through f32 (exact).
fn parse_half(s: &str, from_f32: fn(f32) -> u16) -> Option<u16> {
    match nan_literal_bits(s) {
        Some(None) => Some(from_f32(f32::NAN)),
        Some(Some(bits)) => u16::try_from(bits).ok(),
        None => parse_f32(s).map(from_f32),
    }
}

type ElemErr = (usize, usize, String);

fn elements_to_tensor(dtype: DType, shape: Vec<usize>, items: &[(Tok, usize, usize)]) -> Result<Tensor, ElemErr> {
    let first = items.first().map(|(_, l, c)| (*l, *c)).unwrap_or((0, 0));
    let whole = |e: qaic_tensor::TensorError| (first.0, first.1, e.to_string());
    fn text<'t>(t: &'t Tok) -> Option<&'t str> {
        match t {
            Tok::Num(s) | Tok::Ident(s) => Some(s),
            _ => None,
        }
    }
    fn each<T>(items: &[(Tok, usize, usize)], what: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, ElemErr> {
        items
            .iter()
            .map(|(t, l, c)| {
                text(t).and_then(&f).ok_or_else(|| (*l, *c, format!("expected {what} element, found {t}")))
            })
            .collect()
    }
    fn ints<T: std::str::FromStr>(s: &str) -> Option<T> {
        if is_int_literal(s) { s.parse().ok() } else { None }
    }
    let t = match dtype {
        DType::F32 => Tensor::from_vec(shape, each(items, "an f32", parse_f32)?),
        DType::F64 => Tensor::from_vec(shape, each(items, "an f64", parse_f64)?),
        DType::F16 => Tensor::from_vec(
            shape,
            each(items, "an f16", |s| parse_half(s, |v| qaic_tensor::f16::from_f32(v).to_bits()))?
                .into_iter()
                .map(qaic_tensor::f16::from_bits)
                .collect(),
        ),
        DType::BF16 => Tensor::from_vec(
            shape,
            each(items, "a bf16", |s| parse_half(s, |v| qaic_tensor::bf16::from_f32(v).to_bits()))?
                .into_iter()
                .map(qaic_tensor::bf16::from_bits)
                .collect(),
        ),
        DType::I8 => Tensor::from_vec(shape, each(items, "an i8", ints::<i8>)?),
        DType::U8 => Tensor::from_vec(shape, each(items, "a u8", ints::<u8>)?),
        DType::I16 => Tensor::from_vec(shape, each(items, "an i16", ints::<i16>)?),
        DType::U16 => Tensor::from_vec(shape, each(items, "a u16", ints::<u16>)?),
        DType::I32 => Tensor::from_vec(shape, each(items, "an i32", ints::<i32>)?),
        DType::U32 => Tensor::from_vec(shape, each(items, "a u32", ints::<u32>)?),
        DType::I64 => Tensor::from_vec(shape, each(items, "an i64", ints::<i64>)?),
        DType::U64 => Tensor::from_vec(shape, each(items, "a u64", ints::<u64>)?),
        DType::Bool => Tensor::from_vec(
            shape,
            each(items, "a bool (`true`/`false`)", |s| match s {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            })?,
        ),
        DType::String => {
            let strs = items
                .iter()
                .map(|(t, l, c)| match t {
                    Tok::Str(b) => Ok(b.clone()),
                    t => Err((*l, *c, format!("expected a string element, found {t}"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::from_strings(shape, strs)
        }
        other => {
            return Err((first.0, first.1, format!("{other} tensors are written as hex bytes (`hex\"…\"`)")));
        }
    };
    t.map_err(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_positions() {
        let e = parse("graph g {\n  %y = Relu(%x\n}").unwrap_err();
        assert_eq!((e.line, e.col), (3, 1), "{e}");
        let e = parse("graph g {\n  const %c = f32[2] [1.0]\n}").unwrap_err();
        assert!(e.msg.contains("needs 2 elements"), "{e}");
        let e = parse("graph g {\n  const %c = f32[2] <8 bytes elided>\n}").unwrap_err();
        assert!(e.msg.contains("elided"), "{e}");
        let e = parse("graph g {\n  %y = Foo() {a = []}\n}").unwrap_err();
        assert!(e.msg.contains("ints[]"), "{e}");
        let e = parse("graph g {\n  %y = Foo() {a = [1, 2.0]}\n}").unwrap_err();
        assert!(e.msg.contains("mixes"), "{e}");
        let e = parse("graph g {\n  meta \"k\" = \"\\q\"\n}").unwrap_err();
        assert_eq!((e.line, e.col), (2, 15), "{e}");
    }

    #[test]
    fn special_floats() {
        assert_eq!(parse_f32("nan:0xffc00001").map(f32::to_bits), Some(0xffc0_0001));
        assert_eq!(parse_f32("-inf"), Some(f32::NEG_INFINITY));
        assert_eq!(parse_f32("1e-7"), Some(1e-7));
        assert_eq!(parse_f32("nan:0x3f800000"), None, "not a NaN pattern");
        assert_eq!(parse_f32("infinity"), None);
    }
}
