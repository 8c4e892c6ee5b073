//! Jepsen and Knossos histories in EDN.
//!
//! A Jepsen history is a sequence of EDN maps, one per operation record,
//! either one per line or inside a vector or list (`[...]`, `(...)`), with
//! `;` comments anywhere:
//!
//! ```text
//! [{:process 0, :type :invoke, :f :write, :value 3}
//!  {:process 1, :type :invoke, :f :read, :value nil}
//!  {:process 0, :type :ok, :f :write, :value 3}
//!  {:process 1, :type :ok, :f :read, :value 3}]
//! ```
//!
//! [`read_history`] turns one into a [`History`] for
//! [`crate::check_register`] and [`crate::check_kv`]. What it reads:
//!
//! - `:type`: `:invoke`, `:ok`, `:fail`, `:info` (Jepsen's meaning: see
//!   [`crate::history`]); an invocation never completed counts as `:info`.
//! - `:process`: a non-negative integer. Records of other processes (the
//!   `:nemesis`) are skipped and counted.
//! - `:f`: `:read` (or `:get`), `:write` (or `:put`), `:cas` with `:value
//!   [old new]`; a Knossos multi-register `:txn` of one micro-op, `[[:read
//!   :x nil]]` or `[[:write :x 3]]`, is that op on key `:x`. Other
//!   functions (`:append`, `:add`, `:acquire`, ...) and `:txn`s of several
//!   micro-ops are errors here; [`read_calls`] reads any of them for other
//!   models (see [`crate::objects`]).
//! - Keys, for maps: a `:key` field (Porcupine's key-value histories), or
//!   with [`EdnOptions::tuple_keys`] a `[k v]` value (Jepsen's
//!   `independent` histories: `:value [:k 1]`, a cas `[:k [1 2]]`). A key
//!   is its EDN text (`"0"` is `0`, `:x` is `:x`).
//! - Values: `nil`, integers, strings, keywords (as their text, `:a`),
//!   vectors and lists of those; anything else (floats, booleans, maps,
//!   sets) as its EDN text, compared as such.
//! - Order: the order of the records, as Knossos reads them; `:time` is
//!   ignored (real histories' times are not always in record order). Record
//!   `i` (counting from 0, skipped ones included) gets time `i` µs, so a
//!   counterexample's `[0.000012s .. 0.000015s]` means records 12 to 15;
//!   [`EdnHistory::lines`] gives each op's line.
//! - Reads: an `:ok` read of `nil` means the register held `nil`. Knossos
//!   instead takes it as "read nothing" (it accepts any value):
//!   [`EdnOptions::nil_reads_unknown`] does the same.
//!
//! Errors name the source and the line: a form that is not EDN, a record
//! that is not a map or lacks `:process`, `:type` or `:f`, a completion
//! whose process has no operation in flight, an invocation while one is,
//! a completion whose `:f` differs from its invocation's.

use crate::history::{History, HistoryError, OpKind, Value, F};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// An EDN value.
#[derive(Clone, Debug, PartialEq)]
pub enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    /// A float, or a number too big for `i64`, or a ratio: its text.
    Number(String),
    Str(String),
    Char(char),
    /// Without its colon: `:f` is `Keyword("f")`.
    Keyword(String),
    Symbol(String),
    List(Vec<Edn>),
    Vector(Vec<Edn>),
    Set(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
    /// `#tag value`.
    Tagged(String, Box<Edn>),
}

impl Edn {
    /// The value of `:name` in a map.
    pub fn get(&self, name: &str) -> Option<&Edn> {
        match self {
            Edn::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Edn::Keyword(n) if n == name))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The items of a vector or list.
    pub fn items(&self) -> Option<&[Edn]> {
        match self {
            Edn::Vector(v) | Edn::List(v) => Some(v),
            _ => None,
        }
    }

    /// As a history [`Value`] (see the module docs).
    pub fn to_value(&self) -> Value {
        match self {
            Edn::Nil => Value::Nil,
            Edn::Int(i) => Value::Int(*i),
            Edn::Str(s) => Value::Str(s.clone()),
            Edn::Vector(v) | Edn::List(v) => Value::List(v.iter().map(Edn::to_value).collect()),
            other => Value::Str(other.to_string()),
        }
    }

    /// A key's text: a string as is, anything else as EDN.
    pub fn key_text(&self) -> String {
        match self {
            Edn::Str(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Edn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = |f: &mut fmt::Formatter<'_>, open: &str, items: &[Edn], close: &str| {
            f.write_str(open)?;
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{x}")?;
            }
            f.write_str(close)
        };
        match self {
            Edn::Nil => f.write_str("nil"),
            Edn::Bool(b) => write!(f, "{b}"),
            Edn::Int(i) => write!(f, "{i}"),
            Edn::Number(n) => f.write_str(n),
            Edn::Str(s) => write!(f, "{s:?}"),
            Edn::Char(c) => write!(f, "\\{c}"),
            Edn::Keyword(k) => write!(f, ":{k}"),
            Edn::Symbol(s) => f.write_str(s),
            Edn::List(v) => seq(f, "(", v, ")"),
            Edn::Vector(v) => seq(f, "[", v, "]"),
            Edn::Set(v) => seq(f, "#{", v, "}"),
            Edn::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} {v}")?;
                }
                f.write_str("}")
            }
            Edn::Tagged(tag, v) => write!(f, "#{tag} {v}"),
        }
    }
}

/// Parse EDN text into its top-level forms, each with the line it starts
/// on. A top-level vector or list of maps (records) is opened: its items
/// come back one by one, each with its own line. `name` names the source in
/// errors.
pub fn parse(name: &str, text: &str) -> Result<Vec<(usize, Edn)>, HistoryError> {
    let mut p = Parser {
        name,
        depth: 0,
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
    };
    let mut forms = Vec::new();
    loop {
        p.skip_space()?;
        let Some(c) = p.peek() else { break };
        let line = p.line;
        if c == '[' || c == '(' {
            // A collection of records (maps): its items are the forms.
            let close = if c == '[' { ']' } else { ')' };
            p.pos += 1;
            let mut items = Vec::new();
            loop {
                p.skip_space()?;
                match p.peek() {
                    None => {
                        return Err(p.error_at(line, format!("a `{c}` never closed")));
                    }
                    Some(x) if x == close => {
                        p.pos += 1;
                        break;
                    }
                    Some(_) => {
                        let at = p.line;
                        items.push((at, p.form()?));
                    }
                }
            }
            if items.iter().all(|(_, f)| matches!(f, Edn::Map(_))) {
                forms.extend(items);
            } else {
                let items = items.into_iter().map(|(_, f)| f).collect();
                forms.push((
                    line,
                    if c == '[' {
                        Edn::Vector(items)
                    } else {
                        Edn::List(items)
                    },
                ));
            }
        } else {
            forms.push((line, p.form()?));
        }
    }
    Ok(forms)
}

/// How deep forms may nest (a history needs a handful of levels).
pub const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    name: &'a str,
    depth: usize,
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Parser<'_> {
    fn error(&self, reason: impl Into<String>) -> HistoryError {
        self.error_at(self.line, reason)
    }

    fn error_at(&self, line: usize, reason: impl Into<String>) -> HistoryError {
        HistoryError::BadLine {
            file: self.name.to_string(),
            line,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Skip whitespace, commas, comments and `#_` discarded forms.
    fn skip_space(&mut self) -> Result<(), HistoryError> {
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == ',' {
                self.bump();
            } else if c == ';' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else if c == '#' && self.chars.get(self.pos + 1) == Some(&'_') {
                self.pos += 2;
                self.form()?;
            } else {
                break;
            }
        }
        Ok(())
    }

    /// One form, nested at most [`MAX_DEPTH`] deep (deeper input is an
    /// error, not a stack overflow).
    fn form(&mut self) -> Result<Edn, HistoryError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(format!("forms nested more than {MAX_DEPTH} deep")));
        }
        self.depth += 1;
        let form = self.form_inner();
        self.depth -= 1;
        form
    }

    fn form_inner(&mut self) -> Result<Edn, HistoryError> {
        self.skip_space()?;
        let line = self.line;
        let Some(c) = self.bump() else {
            return Err(self.error("unexpected end of input"));
        };
        match c {
            '(' => Ok(Edn::List(self.seq(')', line)?)),
            '[' => Ok(Edn::Vector(self.seq(']', line)?)),
            '{' => {
                let items = self.seq('}', line)?;
                if items.len() % 2 != 0 {
                    return Err(self.error_at(line, "a map with an odd number of forms"));
                }
                let mut it = items.into_iter();
                let mut entries = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    entries.push((k, v));
                }
                Ok(Edn::Map(entries))
            }
            ')' | ']' | '}' => Err(self.error(format!("an unmatched `{c}`"))),
            '"' => self.string(line),
            '\\' => self.character(),
            '#' => match self.peek() {
                Some('{') => {
                    self.bump();
                    Ok(Edn::Set(self.seq('}', line)?))
                }
                Some(c) if c.is_alphabetic() => {
                    let tag = self.token();
                    let value = self.form()?;
                    Ok(Edn::Tagged(tag, Box::new(value)))
                }
                _ => Err(self.error("a `#` that starts no set, tag or discard")),
            },
            ':' => {
                let name = self.token();
                if name.is_empty() {
                    return Err(self.error("a `:` without a keyword name"));
                }
                Ok(Edn::Keyword(name))
            }
            _ => {
                self.pos -= 1;
                let tok = self.token();
                if tok.is_empty() {
                    self.pos += 1;
                    return Err(self.error(format!("unexpected character {c:?}")));
                }
                Ok(atom(tok))
            }
        }
    }

    /// Forms up to `close` (the opener at `line`, for errors).
    fn seq(&mut self, close: char, line: usize) -> Result<Vec<Edn>, HistoryError> {
        let mut items = Vec::new();
        loop {
            self.skip_space()?;
            match self.peek() {
                None => {
                    return Err(self.error_at(line, format!("a form never closed by `{close}`")))
                }
                Some(c) if c == close => {
                    self.bump();
                    return Ok(items);
                }
                Some(_) => items.push(self.form()?),
            }
        }
    }

    fn string(&mut self, line: usize) -> Result<Edn, HistoryError> {
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error_at(line, "a string never closed")),
                Some('"') => return Ok(Edn::Str(s)),
                Some('\\') => match self.bump() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some('b') => s.push('\u{8}'),
                    Some('f') => s.push('\u{c}'),
                    Some('u') => s.push(self.unicode()?),
                    Some(c @ ('"' | '\\')) => s.push(c),
                    other => return Err(self.error(format!("a bad escape in a string: {other:?}"))),
                },
                Some(c) => s.push(c),
            }
        }
    }

    fn unicode(&mut self) -> Result<char, HistoryError> {
        let hex: String = (0..4).filter_map(|_| self.bump()).collect();
        u32::from_str_radix(&hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| self.error(format!("a bad \\u escape: {hex:?}")))
    }

    fn character(&mut self) -> Result<Edn, HistoryError> {
        let tok = self.token();
        let c = match tok.as_str() {
            "newline" => '\n',
            "space" => ' ',
            "tab" => '\t',
            "return" => '\r',
            t if t.starts_with('u') && t.len() == 5 => u32::from_str_radix(&t[1..], 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| self.error(format!("a bad character: \\{t}")))?,
            t if t.chars().count() == 1 => t.chars().next().unwrap_or(' '),
            "" => match self.bump() {
                Some(c) => c,
                None => return Err(self.error("a `\\` at the end of input")),
            },
            t => return Err(self.error(format!("a bad character: \\{t}"))),
        };
        Ok(Edn::Char(c))
    }

    /// A symbol, number or keyword name: up to a delimiter.
    fn token(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, ',' | '(' | ')' | '[' | ']' | '{' | '}' | '"' | ';')
            {
                break;
            }
            s.push(c);
            self.bump();
        }
        s
    }
}

/// A symbol or number token.
fn atom(tok: String) -> Edn {
    match tok.as_str() {
        "nil" => return Edn::Nil,
        "true" => return Edn::Bool(true),
        "false" => return Edn::Bool(false),
        _ => {}
    }
    let first = tok.chars().next().unwrap_or(' ');
    let second = tok.chars().nth(1);
    let numeric = first.is_ascii_digit()
        || ((first == '-' || first == '+') && second.is_some_and(|c| c.is_ascii_digit()));
    if !numeric {
        return Edn::Symbol(tok);
    }
    let int = tok.strip_suffix('N').unwrap_or(&tok);
    match int.parse::<i64>() {
        Ok(i) => Edn::Int(i),
        Err(_) => Edn::Number(tok),
    }
}

/// One operation record of a history.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Where it starts in the source.
    pub line: usize,
    /// Its position among the records (skipped ones included).
    pub index: usize,
    pub process: u64,
    pub kind: OpKind,
    /// `:f`, without its colon.
    pub f: String,
    /// `:key`, if there.
    pub key: Option<Edn>,
    /// `:value` (`nil` if absent).
    pub value: Edn,
}

/// The `:type` of an operation (a map), or what is wrong with it.
pub(crate) fn op_kind(form: &Edn) -> Result<OpKind, String> {
    match form.get("type") {
        Some(Edn::Keyword(t)) => match t.as_str() {
            "invoke" => Ok(OpKind::Invoke),
            "ok" => Ok(OpKind::Ok),
            "fail" => Ok(OpKind::Fail),
            "info" => Ok(OpKind::Info),
            other => Err(format!(
                ":type :{other} (expected :invoke, :ok, :fail or :info)"
            )),
        },
        Some(other) => Err(format!("a :type that is not a keyword: {other}")),
        None => Err("an operation without :type".into()),
    }
}

/// The records of an EDN history (see the module docs), and how many were
/// skipped (those of processes that are not integers: the nemesis).
pub fn read_records(name: &str, text: &str) -> Result<(Vec<Record>, usize), HistoryError> {
    let mut records = Vec::new();
    let mut skipped = 0;
    for (index, (line, form)) in parse(name, text)?.into_iter().enumerate() {
        let bad = |reason: String| HistoryError::BadLine {
            file: name.to_string(),
            line,
            reason,
        };
        if !matches!(form, Edn::Map(_)) {
            return Err(bad(format!("not an operation (a map): {form}")));
        }
        let process = match form.get("process") {
            Some(Edn::Int(p)) if *p >= 0 => *p as u64,
            Some(Edn::Int(p)) => return Err(bad(format!("a negative :process {p}"))),
            Some(Edn::Keyword(_) | Edn::Symbol(_) | Edn::Str(_)) => {
                skipped += 1;
                continue;
            }
            Some(other) => return Err(bad(format!("a :process that is not an integer: {other}"))),
            None => return Err(bad("an operation without :process".into())),
        };
        let kind = op_kind(&form).map_err(bad)?;
        let f = match form.get("f") {
            Some(Edn::Keyword(f) | Edn::Symbol(f)) => f.clone(),
            Some(other) => return Err(bad(format!("an :f that is not a keyword: {other}"))),
            None => return Err(bad("an operation without :f".into())),
        };
        records.push(Record {
            line,
            index,
            process,
            kind,
            f,
            key: form.get("key").cloned(),
            value: form.get("value").cloned().unwrap_or(Edn::Nil),
        });
    }
    Ok((records, skipped))
}

/// An operation: an invocation record with its completion, for any `:f`.
#[derive(Clone, Debug, PartialEq)]
pub struct EdnCall {
    pub process: u64,
    pub f: String,
    pub key: Option<Edn>,
    /// The invocation's value.
    pub value: Edn,
    /// `Ok`, `Fail` or `Info` (also for an invocation never completed).
    pub outcome: OpKind,
    /// The completion's value (`nil` for none).
    pub result: Edn,
    pub invoke_line: usize,
    pub complete_line: Option<usize>,
    /// The invocation's record position, as a time (see the module docs).
    pub invoked: Duration,
    /// The completion's, unless `Info`.
    pub completed: Option<Duration>,
}

impl fmt::Display for EdnCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{:<3} {}", self.process, self.f)?;
        if let Some(k) = &self.key {
            write!(f, " {k}")?;
        }
        write!(f, " {} -> {}", self.value, self.outcome)?;
        if self.outcome == OpKind::Ok && self.result != self.value {
            write!(f, " {}", self.result)?;
        }
        match self.complete_line {
            Some(c) => write!(f, "  [lines {} .. {c}]", self.invoke_line),
            None => write!(f, "  [line {} .. never]", self.invoke_line),
        }
    }
}

/// Pair invocations with completions (Jepsen's rules: one op in flight per
/// process; an `:info` ends it), in invocation order. Errors name the line.
pub fn pair(name: &str, records: &[Record]) -> Result<Vec<EdnCall>, HistoryError> {
    let mut calls: Vec<EdnCall> = Vec::new();
    let mut in_flight: BTreeMap<u64, usize> = BTreeMap::new();
    let us = |i: usize| Duration::from_micros(i as u64);
    for r in records {
        let bad = |reason: String| HistoryError::BadLine {
            file: name.to_string(),
            line: r.line,
            reason,
        };
        if r.kind == OpKind::Invoke {
            if let Some(&c) = in_flight.get(&r.process) {
                return Err(bad(format!(
                    "process {} invokes while its op of line {} is in flight",
                    r.process, calls[c].invoke_line
                )));
            }
            in_flight.insert(r.process, calls.len());
            calls.push(EdnCall {
                process: r.process,
                f: r.f.clone(),
                key: r.key.clone(),
                value: r.value.clone(),
                outcome: OpKind::Info,
                result: Edn::Nil,
                invoke_line: r.line,
                complete_line: None,
                invoked: us(r.index),
                completed: None,
            });
            continue;
        }
        let Some(c) = in_flight.remove(&r.process) else {
            return Err(bad(format!(
                "process {} completes (:{}) an op it never invoked",
                r.process, r.kind
            )));
        };
        let call = &mut calls[c];
        if call.f != r.f {
            return Err(bad(format!(
                "completes :f :{} but the invocation of line {} is :f :{}",
                r.f, call.invoke_line, call.f
            )));
        }
        if r.key.is_some() && call.key.is_some() && r.key != call.key {
            return Err(bad(format!(
                "completes key {} but the invocation of line {} is on key {}",
                r.key.as_ref().map(Edn::to_string).unwrap_or_default(),
                call.invoke_line,
                call.key.as_ref().map(Edn::to_string).unwrap_or_default()
            )));
        }
        call.outcome = r.kind;
        call.result = r.value.clone();
        call.complete_line = Some(r.line);
        if r.kind != OpKind::Info {
            call.completed = Some(us(r.index));
        }
    }
    Ok(calls)
}

/// The records and pairs of an EDN history: [`read_records`] then [`pair`].
pub fn read_calls(name: &str, text: &str) -> Result<Vec<EdnCall>, HistoryError> {
    let (records, _) = read_records(name, text)?;
    pair(name, &records)
}

/// How to read an EDN history as a register or key-value history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdnOptions {
    /// Values are `[key value]` tuples (Jepsen's `independent`).
    pub tuple_keys: bool,
    /// An `:ok` read of `nil` read nothing (Knossos's reading), rather than
    /// "the value was `nil`": it is taken as `:info`.
    pub nil_reads_unknown: bool,
}

/// A history read from EDN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdnHistory {
    pub history: History,
    /// The source line of each op of `history`.
    pub lines: Vec<usize>,
    /// Records skipped (of processes that are not integers: the nemesis).
    pub skipped: usize,
}

impl EdnHistory {
    /// Whether its ops have keys (check it with [`crate::check_kv`]) or
    /// not ([`crate::check_register`]).
    pub fn has_keys(&self) -> bool {
        self.history.ops().iter().any(|o| o.key.is_some())
    }
}

/// Read an EDN file (see [`read_history`]).
pub fn read_history_file(path: &Path, options: &EdnOptions) -> Result<EdnHistory, HistoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_history(&path.display().to_string(), &text, options)
}

/// Read a register or key-value history from EDN (see the module docs).
/// `name` names the source in errors.
pub fn read_history(
    name: &str,
    text: &str,
    options: &EdnOptions,
) -> Result<EdnHistory, HistoryError> {
    let (records, skipped) = read_records(name, text)?;
    // Pairing first: its errors name lines.
    pair(name, &records)?;
    let mut out = EdnHistory {
        skipped,
        ..EdnHistory::default()
    };
    let mut invoked: BTreeMap<u64, (F, Option<String>)> = BTreeMap::new();
    for r in &records {
        let bad = |reason: String| HistoryError::BadLine {
            file: name.to_string(),
            line: r.line,
            reason,
        };
        let (f, key, value) = register_op(r, options).map_err(bad)?;
        let time = Duration::from_micros(r.index as u64);
        let mut kind = r.kind;
        if r.kind == OpKind::Invoke {
            invoked.insert(r.process, (f, key.clone()));
            let value = if f == F::Read { Value::Nil } else { value };
            out.history.push(crate::history::Op::new(
                r.process,
                kind,
                f,
                key.as_deref(),
                value,
                time,
            ));
        } else {
            // The invocation's f and key (pairing checked it exists).
            let (f, key) = invoked.remove(&r.process).unwrap_or((f, key));
            if options.nil_reads_unknown
                && f == F::Read
                && kind == OpKind::Ok
                && value == Value::Nil
            {
                kind = OpKind::Info;
            }
            out.history.push(crate::history::Op::new(
                r.process,
                kind,
                f,
                key.as_deref(),
                value,
                time,
            ));
        }
        out.lines.push(r.line);
    }
    Ok(out)
}

/// Read a Jepsen log of register operations, as Knossos's and Porcupine's
/// etcd test data hold them: lines `INFO  jepsen.util - 3\t:invoke\t:cas\t[1 2]`
/// (process, type, f, value); every other line is ignored. A read that
/// failed with `:timed-out` is taken as unknown (`:info`), as Porcupine
/// does; an invocation never completed is unknown too. Then as
/// [`read_history`] (errors name the log's line).
pub fn read_jepsen_log(name: &str, text: &str) -> Result<EdnHistory, HistoryError> {
    let mut edn = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        // One EDN line per log line, so errors name the log's lines.
        if let Some((_, rest)) = line.split_once("jepsen.util - ") {
            let mut parts = rest.split_whitespace();
            let (Some(process), Some(kind), Some(f)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(HistoryError::BadLine {
                    file: name.to_string(),
                    line: i + 1,
                    reason: "a jepsen.util line without process, type and f".into(),
                });
            };
            let value = parts.collect::<Vec<_>>().join(" ");
            let value = if value.is_empty() {
                "nil".into()
            } else {
                value
            };
            if f == ":read" && kind == ":fail" && value == ":timed-out" {
                edn.push_str(&format!(
                    "{{:process {process}, :type :info, :f :read, :value nil}}"
                ));
            } else {
                edn.push_str(&format!(
                    "{{:process {process}, :type {kind}, :f {f}, :value {value}}}"
                ));
            }
        }
        edn.push('\n');
    }
    read_history(name, &edn, &EdnOptions::default())
}

/// A record as a register op: (f, key, value), or why not.
fn register_op(r: &Record, options: &EdnOptions) -> Result<(F, Option<String>, Value), String> {
    let mut key = r.key.as_ref().map(Edn::key_text);
    let mut value = &r.value;
    let mut f = r.f.as_str();
    let txn_op;
    if f == "txn" {
        let Some(ops) = value.items() else {
            return Err(format!("a :txn whose value is not a vector: {value}"));
        };
        let [op] = ops else {
            return Err(format!(
                "a :txn of {} micro-ops: only single-op transactions are read (as an op on \
                 their key)",
                ops.len()
            ));
        };
        let Some([Edn::Keyword(mf), k, v]) = op.items() else {
            return Err(format!("a :txn micro-op that is not [f key value]: {op}"));
        };
        txn_op = (mf.clone(), k.key_text(), v.clone());
        f = &txn_op.0;
        key = Some(txn_op.1.clone());
        value = &txn_op.2;
    } else if options.tuple_keys {
        match value.items() {
            Some([k, v]) => {
                key = Some(k.key_text());
                value = v;
            }
            // A failed or unknown outcome need not repeat the key.
            _ if matches!(r.kind, OpKind::Fail | OpKind::Info) => value = &Edn::Nil,
            _ => {
                return Err(format!(
                    "a value that is not a [key value] tuple (EdnOptions::tuple_keys): {value}"
                ))
            }
        }
    }
    let f = match f {
        "read" | "get" => F::Read,
        "write" | "put" => F::Write,
        "cas" => F::Cas,
        other => {
            return Err(format!(
                ":f :{other} is not a register op (read here: :read or :get, :write or :put, \
                 :cas, single-op :txn; other models read histories with edn::read_calls)"
            ))
        }
    };
    if f == F::Cas && r.kind == OpKind::Invoke && !matches!(value.items(), Some([_, _])) {
        return Err(format!("a :cas whose value is not [old new]: {value}"));
    }
    Ok((f, key, value.to_value()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;
    use crate::{check_kv, check_register, Budget};

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Knossos's `rethink-fail-minimal.edn`: a list, comments, one map per line.
    const RETHINK: &str = r#"({:type :invoke, :f :write, :value 0, :process 0}
 {:type :ok, :f :write, :value 0, :process 0}
 ; Value is 0, then we concurrently write 4, read 3.
 {:type :invoke, :f :read, :value nil, :process 1}
 {:type :invoke, :f :write, :value 4, :process 2}
 ; Nonlinearizable! Could have been 0 or 4 but not 3
 {:type :ok, :f :read, :value 3, :process 1}
 {:type :ok, :f :write, :value 4, :process 2}
 {:type :invoke, :f :read, :value nil, :process 3}
 {:type :ok, :f :read, :value 4, :process 3}
)
"#;

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!(
            "{{:process 0, :type :ok, :f :read, :value {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = parse("deep.edn", &deep).unwrap_err().to_string();
        assert!(
            e.starts_with("deep.edn:1: forms nested more than 128 deep"),
            "{e}"
        );
        let e = parse("deep.edn", &"#_".repeat(100_000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nested more than"), "{e}");
        let ok = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(parse("ok.edn", &ok).is_ok());
    }

    #[test]
    fn register_histories_of_every_op_kind_are_read() {
        let h = read_history("rethink.edn", RETHINK, &EdnOptions::default()).unwrap();
        assert_eq!(h.skipped, 0);
        assert!(!h.has_keys());
        assert_eq!(h.lines, vec![1, 2, 4, 5, 7, 8, 9, 10]);
        assert_eq!(
            &h.history.ops()[..3],
            &[
                Op::invoke(0, F::Write, None, 0, us(0)),
                Op::new(0, OpKind::Ok, F::Write, None, 0, us(1)),
                Op::invoke(1, F::Read, None, Value::Nil, us(2)),
            ][..]
        );
        let v = check_register(&h.history, &Budget::default()).unwrap();
        let f = v.failure().unwrap_or_else(|| panic!("{v}"));
        assert!(f.minimal);
        assert!(f.ops.iter().any(|c| c.result == Value::Int(3)), "{v}");

        // Vector form, all outcomes, cas, a nemesis, commas, #_ discards.
        let text = r#"[{:process 0, :type :invoke, :f :write, :value 1}
{:process 0, :type :ok, :f :write, :value 1}
{:process :nemesis, :type :info, :f :start, :value nil}
{:process 1, :type :invoke, :f :cas, :value [1 2]}
{:process 2, :type :invoke, :f :cas, :value [5 6]} #_{:ignored true}
{:process 1, :type :ok, :f :cas, :value [1 2]}
{:process 2, :type :fail, :f :cas, :value [5 6]}
{:process 3, :type :invoke, :f :write, :value 9}
{:process 3, :type :info, :f :write, :value 9}
{:process 4, :type :invoke, :f :read, :value nil}
{:process 4, :type :ok, :f :read, :value 2}
{:process 5, :type :invoke, :f :read, :value nil}]"#;
        let h = read_history("all.edn", text, &EdnOptions::default()).unwrap();
        assert_eq!(h.skipped, 1);
        let calls = h.history.calls().unwrap();
        let summary: Vec<(u64, F, Value, OpKind, Value)> = calls
            .iter()
            .map(|c| (c.process, c.f, c.value.clone(), c.outcome, c.result.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, F::Write, Value::Int(1), OpKind::Ok, Value::Int(1)),
                (1, F::Cas, Value::cas(1, 2), OpKind::Ok, Value::cas(1, 2)),
                (2, F::Cas, Value::cas(5, 6), OpKind::Fail, Value::Nil),
                (3, F::Write, Value::Int(9), OpKind::Info, Value::Nil),
                (4, F::Read, Value::Nil, OpKind::Ok, Value::Int(2)),
                (5, F::Read, Value::Nil, OpKind::Info, Value::Nil),
            ]
        );
        // Record 2 (the nemesis) counts in the times: record i is i µs.
        assert_eq!(calls[1].invoked, us(3));
        assert!(check_register(&h.history, &Budget::default())
            .unwrap()
            .is_linearizable());
    }

    #[test]
    fn key_value_histories_in_three_forms_are_read() {
        // Porcupine's: a :key field, :get and :put, one map per line.
        let text = r#"{:process 0, :type :invoke, :f :put, :key "0", :value "x"}
{:process 1, :type :invoke, :f :get, :key "1", :value nil}
{:process 0, :type :ok, :f :put, :key "0", :value "x"}
{:process 1, :type :ok, :f :get, :key "1", :value nil}
{:process 1, :type :invoke, :f :get, :key "0", :value nil}
{:process 1, :type :ok, :f :get, :key "0", :value "y"}
"#;
        let h = read_history("kv.edn", text, &EdnOptions::default()).unwrap();
        assert!(h.has_keys());
        let calls = h.history.calls().unwrap();
        assert_eq!(calls[0].key.as_deref(), Some("0"));
        assert_eq!(calls[0].value, Value::from("x"));
        let v = check_kv(&h.history, &Budget::default()).unwrap();
        assert_eq!(
            v.failure().and_then(|f| f.partition.as_deref()),
            Some("0"),
            "{v}"
        );

        // Jepsen's independent tuples, with a keyword key and a cas.
        let text = r#"[{:process 0, :type :invoke, :f :write, :value [:k 1]}
 {:process 0, :type :ok, :f :write, :value [:k 1]}
 {:process 0, :type :invoke, :f :cas, :value [:k [1 2]]}
 {:process 0, :type :ok, :f :cas, :value [:k [1 2]]}
 {:process 0, :type :invoke, :f :read, :value [:k nil]}
 {:process 0, :type :ok, :f :read, :value [:k 2]}
 {:process 1, :type :invoke, :f :write, :value [:j 5]}
 {:process 1, :type :info, :f :write, :value nil}]"#;
        let o = EdnOptions {
            tuple_keys: true,
            ..EdnOptions::default()
        };
        let h = read_history("independent.edn", text, &o).unwrap();
        let calls = h.history.calls().unwrap();
        assert_eq!(calls[1].key.as_deref(), Some(":k"));
        assert_eq!(calls[1].value, Value::cas(1, 2));
        assert_eq!(calls[2].result, Value::Int(2));
        assert_eq!(calls[3].outcome, OpKind::Info);
        assert!(check_kv(&h.history, &Budget::default())
            .unwrap()
            .is_linearizable());
        // Without the option the tuple is a value, and a cas of a tuple is no cas.
        let plain = read_history("independent.edn", text, &EdnOptions::default()).unwrap();
        assert!(!plain.has_keys());

        // Knossos's multi-register, single-op transactions, over several lines.
        let text = r#"; x and y start at 0
[{:type :invoke,
 :f :txn,
 :value [[:read :x nil]],
 :process 3}
{:type :invoke, :f :txn, :value [[:write :y 2]], :process 4}
{:type :ok,
 :f :txn,
 :value [[:read :x 0]],
 :process 3}
{:type :ok, :f :txn, :value [[:write :y 2]], :process 4}]"#;
        let h = read_history("multi.edn", text, &EdnOptions::default()).unwrap();
        assert_eq!(h.lines, vec![2, 6, 7, 11]);
        let calls = h.history.calls().unwrap();
        assert_eq!(calls[0].key.as_deref(), Some(":x"));
        assert_eq!(calls[0].result, Value::Int(0));
        assert_eq!(calls[1].f, F::Write);
        // x starts at 0: not with the default initial value, yes with 0.
        assert!(check_kv(&h.history, &Budget::default())
            .unwrap()
            .is_not_linearizable());
        let model = crate::KvModel::with_initial(0);
        let r = crate::check_kv_with(&h.history, &model, &Budget::default(), &Default::default())
            .unwrap();
        assert!(r.verdict.is_linearizable(), "{}", r.verdict);
    }

    #[test]
    fn knossos_nil_reads_may_be_read_as_unknown() {
        let text = "{:process 0, :type :invoke, :f :write, :value 1}\n\
                    {:process 0, :type :ok, :f :write, :value 1}\n\
                    {:process 1, :type :invoke, :f :read, :value nil}\n\
                    {:process 1, :type :ok, :f :read, :value nil}\n";
        let strict = read_history("n.edn", text, &EdnOptions::default()).unwrap();
        assert!(check_register(&strict.history, &Budget::default())
            .unwrap()
            .is_not_linearizable());
        let o = EdnOptions {
            nil_reads_unknown: true,
            ..EdnOptions::default()
        };
        let knossos = read_history("n.edn", text, &o).unwrap();
        assert_eq!(knossos.history.calls().unwrap()[1].outcome, OpKind::Info);
        assert!(check_register(&knossos.history, &Budget::default())
            .unwrap()
            .is_linearizable());
    }

    fn error_of(text: &str) -> String {
        read_history("h.edn", text, &EdnOptions::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_input_is_an_error_naming_the_line() {
        let ok = "{:process 0, :type :invoke, :f :read, :value nil}\n";
        let cases = [
            (
                format!("{ok}{{:process 1, :type :invoke\n"),
                "h.edn:2: a form never closed by `}`",
            ),
            (format!("{ok}\n[1 2\n"), "h.edn:3: a `[` never closed"),
            (
                format!("{ok}{ok}"),
                "h.edn:2: process 0 invokes while its op of line 1 is in flight",
            ),
            (
                "{:process 0, :type :ok, :f :read, :value 1}\n".to_string(),
                "h.edn:1: process 0 completes (:ok) an op it never invoked",
            ),
            (
                format!("{ok}{{:process 0, :type :ok, :f :write, :value 1}}\n"),
                "h.edn:2: completes :f :write but the invocation of line 1 is :f :read",
            ),
            (
                format!("{ok}[:a :b]\n"),
                "h.edn:2: not an operation (a map): [:a :b]",
            ),
            (
                format!("{ok}{{:type :ok, :f :read}}\n"),
                "h.edn:2: an operation without :process",
            ),
            (
                format!("{ok}{{:process 1, :f :read}}\n"),
                "h.edn:2: an operation without :type",
            ),
            (
                format!("{ok}{{:process 1, :type :done, :f :read}}\n"),
                "h.edn:2: :type :done (expected :invoke, :ok, :fail or :info)",
            ),
            (
                "\n{:process 0, :type :invoke, :f :cas, :value 3}\n".to_string(),
                "h.edn:2: a :cas whose value is not [old new]: 3",
            ),
            (
                "{:process 0, :type :invoke, :f :append, :key \"0\", :value \"x\"}\n".to_string(),
                "h.edn:1: :f :append is not a register op",
            ),
            (
                "{:process 0, :type :invoke, :f :txn, :value [[:read :x nil] [:read :y nil]]}"
                    .to_string(),
                "h.edn:1: a :txn of 2 micro-ops",
            ),
            (
                format!("{ok}{{:process 1 :type}}\n"),
                "h.edn:2: a map with an odd number of forms",
            ),
            (format!("{ok}}}\n"), "h.edn:2: an unmatched `}`"),
            (format!("{ok}\"abc\n\n"), "h.edn:2: a string never closed"),
        ];
        for (text, expected) in cases {
            let e = error_of(&text);
            assert!(
                e.starts_with(expected),
                "{text:?}:\n  got      {e}\n  expected {expected}"
            );
        }
        // Tuple keys demand tuples.
        let e = read_history(
            "t.edn",
            "{:process 0, :type :invoke, :f :write, :value 3}",
            &EdnOptions {
                tuple_keys: true,
                ..EdnOptions::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("t.edn:1: a value that is not a [key value] tuple"),
            "{e}"
        );
    }

    #[test]
    fn edn_values_parse_and_print() {
        let forms = parse(
            "v.edn",
            r#"{:a "s\"q\n" :b -12 :c 3.5 :d 12345678901234567890N :e \x :f #{1 2} :g #inst "2020" :h (1 [2]) :i true :j sym}"#,
        )
        .unwrap();
        let m = &forms[0].1;
        assert_eq!(m.get("a"), Some(&Edn::Str("s\"q\n".into())));
        assert_eq!(m.get("b"), Some(&Edn::Int(-12)));
        assert_eq!(m.get("c"), Some(&Edn::Number("3.5".into())));
        assert_eq!(
            m.get("d"),
            Some(&Edn::Number("12345678901234567890N".into()))
        );
        assert_eq!(m.get("e"), Some(&Edn::Char('x')));
        assert_eq!(m.get("f"), Some(&Edn::Set(vec![Edn::Int(1), Edn::Int(2)])));
        assert_eq!(
            m.get("g"),
            Some(&Edn::Tagged(
                "inst".into(),
                Box::new(Edn::Str("2020".into()))
            ))
        );
        assert_eq!(m.get("h").map(Edn::to_string).as_deref(), Some("(1 [2])"));
        assert_eq!(m.get("i"), Some(&Edn::Bool(true)));
        assert_eq!(m.get("j"), Some(&Edn::Symbol("sym".into())));
        assert_eq!(
            m.get("h").map(Edn::to_value),
            Some(Value::List(vec![
                Value::Int(1),
                Value::List(vec![Value::Int(2)])
            ]))
        );
        assert_eq!(Edn::Keyword("a".into()).to_value(), Value::from(":a"));
    }
}
