//! LogQL as Loki reads it: a stream selector, then a pipeline of line filters
//! (`|=`, `!=`, `|~`, `!~`), parsers (`| json`, `| logfmt`, `| regexp "(?P<x>...)"`),
//! label filters (`| status >= 500 and method="GET"`, durations and byte sizes
//! compared as numbers), `| line_format "{{.level}}: ..."`, `| drop`, `| keep` and
//! `| unwrap`; and metric queries over it: `count_over_time`, `rate`,
//! `bytes_over_time`, `bytes_rate`, the unwrapped `*_over_time` family and
//! `quantile_over_time`, aggregated with `sum`/`avg`/`min`/`max`/`count`/`stddev`/
//! `stdvar`/`topk`/`bottomk` by or without labels, and arithmetic between them and
//! with numbers.
//!
//! Labels a parser extracts join the stream's (a name the stream already has gets
//! `_extracted`); a line a parser cannot read gets `__error__`, which a metric query
//! refuses unless a label filter drops it, as Loki does.

use gotmpl::{Template, Value as TemplateValue};
use mobius_series::labels::{Labels, Matcher};
use mobius_template::with_functions;
use regex::Regex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The label a parser sets when it cannot read a line.
pub const ERROR_LABEL: &str = "__error__";

/// A line filter.
#[derive(Clone, Debug)]
pub enum LineFilter {
    Contains(String),
    NotContains(String),
    Matches(Regex),
    NotMatches(Regex),
}

impl LineFilter {
    pub fn accepts(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(s) => line.contains(s.as_str()),
            LineFilter::NotContains(s) => !line.contains(s.as_str()),
            LineFilter::Matches(r) => r.is_match(line),
            LineFilter::NotMatches(r) => !r.is_match(line),
        }
    }
}

/// A comparison of a label filter.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// What a label is compared with: text (`=`, `!=`, `=~`, `!~`) or a number, which a
/// duration (`1.5s`) or a size (`20KB`) also is, read the same way from the label.
#[derive(Clone, Debug)]
enum LabelTest {
    Text(Matcher),
    Number { name: String, cmp: Cmp, value: f64, kind: NumberKind },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum NumberKind {
    Plain,
    Duration,
    Bytes,
}

#[derive(Clone, Debug)]
enum LabelFilter {
    Test(LabelTest),
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

impl LabelFilter {
    fn accepts(&self, labels: &[(String, String)]) -> bool {
        let get = |name: &str| labels.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str());
        match self {
            LabelFilter::And(a, b) => a.accepts(labels) && b.accepts(labels),
            LabelFilter::Or(a, b) => a.accepts(labels) || b.accepts(labels),
            LabelFilter::Test(LabelTest::Text(m)) => m.matches(get(&m.name)),
            LabelFilter::Test(LabelTest::Number { name, cmp, value, kind }) => {
                let Some(have) = number(get(name), *kind) else { return false };
                match cmp {
                    Cmp::Eq => have == *value,
                    Cmp::Ne => have != *value,
                    Cmp::Gt => have > *value,
                    Cmp::Ge => have >= *value,
                    Cmp::Lt => have < *value,
                    Cmp::Le => have <= *value,
                }
            }
        }
    }
}

/// A label's value as a number of `kind` (seconds for durations, bytes for sizes).
fn number(text: &str, kind: NumberKind) -> Option<f64> {
    let text = text.trim();
    match kind {
        NumberKind::Plain => text.parse().ok(),
        NumberKind::Duration => go_duration(text),
        NumberKind::Bytes => bytes_size(text),
    }
}

/// Go's duration syntax (`1h2m3.5s`, `250ms`, `-1.5us`) in seconds.
fn go_duration(text: &str) -> Option<f64> {
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(sign * total)
}

/// A size such as `20KB`, `1.5MiB` or `512` (bytes), as Loki's `bytes` reads it.
fn bytes_size(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let value: f64 = text[..split].parse().ok()?;
    let scale = match text[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" | "ki" => 1024.0,
        "mib" | "mi" => 1024.0 * 1024.0,
        "gib" | "gi" => 1024.0 * 1024.0 * 1024.0,
        "tib" | "ti" => 1024f64.powi(4),
        _ => return None,
    };
    Some(value * scale)
}

/// One stage of a pipeline.
#[derive(Clone, Debug)]
enum Stage {
    Line(LineFilter),
    Json,
    Logfmt,
    Regexp(Regex),
    Labels(LabelFilter),
    LineFormat(LineTemplate),
    Drop(Vec<String>),
    Keep(Vec<String>),
}

/// A `line_format` template, parsed once.
#[derive(Clone)]
struct LineTemplate(Arc<Template>, String);

impl std::fmt::Debug for LineTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line_format {:?}", self.1)
    }
}

/// `| unwrap NAME` (or `duration(NAME)`, `bytes(NAME)`): the label a metric query reads
/// its values from.
#[derive(Clone, Debug)]
pub struct Unwrap {
    pub label: String,
    kind: NumberKind,
}

/// A log query: stream matchers and a pipeline.
#[derive(Clone, Debug)]
pub struct LogQuery {
    pub matchers: Vec<Matcher>,
    stages: Vec<Stage>,
    pub unwrap: Option<Unwrap>,
}

impl LogQuery {
    /// Whether the query only filters lines (no parser, label filter or formatting),
    /// so a line's labels are its stream's.
    pub fn only_filters_lines(&self) -> bool {
        self.stages.iter().all(|s| matches!(s, Stage::Line(_)))
    }

    /// Runs the pipeline over one line of a stream: `None` when a stage drops it,
    /// otherwise the line's labels (the stream's and those extracted) and text.
    pub fn process(&self, stream: &Labels, line: &str) -> Option<(Labels, String)> {
        if !self.matchers.iter().all(|m| m.matches(stream.get(&m.name).unwrap_or(""))) {
            return None;
        }
        if self.only_filters_lines() {
            return self
                .stages
                .iter()
                .all(|s| matches!(s, Stage::Line(f) if f.accepts(line)))
                .then(|| (stream.clone(), line.to_string()));
        }
        let mut labels: Vec<(String, String)> = stream.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let stream_names: Vec<String> = labels.iter().map(|(k, _)| k.clone()).collect();
        let mut line = line.to_string();
        for stage in &self.stages {
            match stage {
                Stage::Line(f) => {
                    if !f.accepts(&line) {
                        return None;
                    }
                }
                Stage::Json => match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(serde_json::Value::Object(map)) => {
                        let mut found = Vec::new();
                        flatten_json("", &serde_json::Value::Object(map), &mut found);
                        for (k, v) in found {
                            extract(&mut labels, &stream_names, &k, v);
                        }
                    }
                    _ => set_label(&mut labels, ERROR_LABEL, "JSONParserErr".into()),
                },
                Stage::Logfmt => match logfmt(&line) {
                    Some(pairs) => {
                        for (k, v) in pairs {
                            extract(&mut labels, &stream_names, &k, v);
                        }
                    }
                    None => set_label(&mut labels, ERROR_LABEL, "LogfmtParserErr".into()),
                },
                Stage::Regexp(re) => {
                    if let Some(caps) = re.captures(&line) {
                        for name in re.capture_names().flatten() {
                            if let Some(m) = caps.name(name) {
                                extract(&mut labels, &stream_names, name, m.as_str().to_string());
                            }
                        }
                    }
                }
                Stage::Labels(filter) => {
                    if !filter.accepts(&labels) {
                        return None;
                    }
                }
                Stage::LineFormat(t) => {
                    let data: BTreeMap<Arc<str>, TemplateValue> =
                        labels.iter().map(|(k, v)| (Arc::from(k.as_str()), TemplateValue::from(v.as_str()))).collect();
                    match t.0.execute_to_string(&TemplateValue::from(data)) {
                        Ok(text) => line = text.replace("<no value>", ""),
                        Err(_) => set_label(&mut labels, ERROR_LABEL, "TemplateFormatErr".into()),
                    }
                }
                Stage::Drop(names) => labels.retain(|(k, _)| !names.contains(k)),
                Stage::Keep(names) => labels.retain(|(k, _)| names.contains(k)),
            }
        }
        Some((Labels::new(labels), line))
    }
}

fn set_label(labels: &mut Vec<(String, String)>, name: &str, value: String) {
    match labels.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => slot.1 = value,
        None => labels.push((name.to_string(), value)),
    }
}

/// Adds a parsed label: its name made a valid label name, `_extracted` appended when
/// the stream has one of that name.
fn extract(labels: &mut Vec<(String, String)>, stream_names: &[String], name: &str, value: String) {
    let mut clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if clean.is_empty() {
        return;
    }
    if clean.starts_with(|c: char| c.is_ascii_digit()) {
        clean.insert(0, '_');
    }
    if stream_names.contains(&clean) {
        clean.push_str("_extracted");
    }
    set_label(labels, &clean, value);
}

/// A JSON object's scalar members by path (`a_b` for `{"a":{"b":..}}`); arrays are left out.
fn flatten_json(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}_{k}") };
                flatten_json(&path, v, out);
            }
        }
        Value::Array(_) => {}
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Null => out.push((prefix.to_string(), String::new())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// `key=value key2="quoted value" flag` pairs; `None` when a quote is not closed.
fn logfmt(line: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(pairs);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next()? {
                            'n' => value.push('\n'),
                            't' => value.push('\t'),
                            c => value.push(c),
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                if !closed {
                    return None;
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        if !key.is_empty() {
            pairs.push((key, value));
        }
    }
}

/// A range aggregation over log lines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RangeFn {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
    SumOverTime,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    FirstOverTime,
    LastOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
}

const RANGE_FNS: [(&str, RangeFn); 13] = [
    ("count_over_time", RangeFn::CountOverTime),
    ("rate", RangeFn::Rate),
    ("bytes_over_time", RangeFn::BytesOverTime),
    ("bytes_rate", RangeFn::BytesRate),
    ("sum_over_time", RangeFn::SumOverTime),
    ("avg_over_time", RangeFn::AvgOverTime),
    ("min_over_time", RangeFn::MinOverTime),
    ("max_over_time", RangeFn::MaxOverTime),
    ("first_over_time", RangeFn::FirstOverTime),
    ("last_over_time", RangeFn::LastOverTime),
    ("stddev_over_time", RangeFn::StddevOverTime),
    ("stdvar_over_time", RangeFn::StdvarOverTime),
    ("quantile_over_time", RangeFn::QuantileOverTime),
];

/// A vector aggregation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
}

const AGG_OPS: [(&str, AggOp); 9] = [
    ("sum", AggOp::Sum),
    ("avg", AggOp::Avg),
    ("min", AggOp::Min),
    ("max", AggOp::Max),
    ("count", AggOp::Count),
    ("stddev", AggOp::Stddev),
    ("stdvar", AggOp::Stdvar),
    ("topk", AggOp::Topk),
    ("bottomk", AggOp::Bottomk),
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

/// A LogQL expression.
#[derive(Clone, Debug)]
pub enum Expr {
    /// A log query: lines, not numbers.
    Log(LogQuery),
    Range {
        func: RangeFn,
        param: Option<f64>,
        query: LogQuery,
        range_ns: i64,
        offset_ns: i64,
        /// `by (...)` or `without (...)` after an unwrapped range aggregation: the
        /// points of series with the same grouping labels are taken together.
        grouping: Option<(bool, Vec<String>)>,
    },
    Agg {
        op: AggOp,
        param: Option<f64>,
        without: bool,
        labels: Option<Vec<String>>,
        inner: Box<Expr>,
    },
    Number(f64),
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
}

impl Expr {
    pub fn is_metric(&self) -> bool {
        !matches!(self, Expr::Log(_))
    }
}

/// A parse error with the byte offset where it was found.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at column {}: {}", self.offset + 1, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Why a LogQL query was refused or could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The text does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A metric query where a log query is wanted (a log search, a tail).
    #[error("this is a metric query; a log search takes a log query such as {{service=\"web\"}} |= \"error\"")]
    NotLogQuery,
    /// A log query evaluated for numbers.
    #[error("a log query has no numbers; wrap it in count_over_time({{...}}[5m]) or rate")]
    NotMetric,
    /// An aggregation over a number.
    #[error("an aggregation takes a metric query, not a number")]
    AggregateNumber,
    /// A line the pipeline marked with `__error__`, or an unwrapped label that is not a number.
    #[error("{0}")]
    Sample(String),
    /// The log store could not be read (not the query's fault).
    #[error("reading the logs: {0}")]
    Read(#[source] std::io::Error),
}

/// The deepest query LogQL parsing accepts: each operator (arithmetic, `and`,
/// `or`, `,` between label filters), aggregation and parenthesis counts one level,
/// counted as the deepest nesting plus the number of operators.
pub const MAX_DEPTH: usize = 1000;

/// Parses a LogQL expression: a log query or a metric query.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser { text, at: 0, nesting: 0, deepest: 0, operators: 0 };
    let expr = p.expr(0)?;
    p.ws();
    if p.at < text.len() {
        return Err(p.error(format!("unexpected `{}`", p.rest().chars().take(20).collect::<String>())));
    }
    if let Expr::Log(q) = &expr {
        if q.unwrap.is_some() {
            return Err(ParseError {
                offset: 0,
                message: "`unwrap` belongs in a metric query, such as sum_over_time(... | unwrap x [1m])".into(),
            });
        }
    }
    Ok(expr)
}

/// Parses a log query (no metric query), as the log search and tail take.
pub fn parse_log_query(text: &str) -> Result<LogQuery, QueryError> {
    match parse(text)? {
        Expr::Log(q) => Ok(q),
        _ => Err(QueryError::NotLogQuery),
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
    /// Parentheses and aggregations open around `at`, the most so far, and the
    /// operators read so far: together bounded by [`MAX_DEPTH`].
    nesting: usize,
    deepest: usize,
    operators: usize,
}

impl<'a> Parser<'a> {
    fn check_levels(&self) -> Result<(), ParseError> {
        let levels = self.deepest.saturating_add(self.operators);
        if levels > MAX_DEPTH {
            return Err(self.error(format!(
                "the query has more than {MAX_DEPTH} levels of operators, aggregations and parentheses (the limit)"
            )));
        }
        Ok(())
    }

    /// One more operator.
    fn operator(&mut self) -> Result<(), ParseError> {
        self.operators += 1;
        self.check_levels()
    }

    /// Parses with one more level of nesting (a parenthesis or an aggregation).
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, ParseError>) -> Result<T, ParseError> {
        self.nesting += 1;
        self.deepest = self.deepest.max(self.nesting);
        self.check_levels()?;
        let out = f(self);
        self.nesting -= 1;
        out
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError { offset: self.at, message: message.into() }
    }

    fn ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.ws();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), ParseError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(format!("expected `{token}`")))
        }
    }

    /// An identifier (label name or keyword) without consuming it.
    fn peek_ident(&mut self) -> &'a str {
        self.ws();
        let rest = self.rest();
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        &rest[..end]
    }

    fn ident(&mut self) -> Result<&'a str, ParseError> {
        let name = self.peek_ident();
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(self.error("expected a label name"));
        }
        self.at += name.len();
        Ok(name)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.ws();
        let rest = self.rest();
        let (value, after) = crate::quoted(rest).ok_or_else(|| self.error("expected a quoted string"))?;
        self.at += rest.len() - after.len();
        Ok(value)
    }

    fn number(&mut self) -> Option<f64> {
        self.ws();
        let rest = self.rest();
        let end = rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+'))))
            .map_or(rest.len(), |(i, _)| i);
        let value = rest[..end].parse().ok()?;
        self.at += end;
        Some(value)
    }

    /// `[5m]`: a range in nanoseconds.
    fn range(&mut self) -> Result<i64, ParseError> {
        self.expect("[")?;
        let end = self.rest().find(']').ok_or_else(|| self.error("the range has no closing `]`"))?;
        let text = self.rest()[..end].trim();
        let d = promql_duration(text).ok_or_else(|| self.error(format!("`{text}` is not a duration")))?;
        self.at += end + 1;
        Ok(d)
    }

    fn binop(&mut self) -> Option<(BinOp, u8)> {
        self.ws();
        let op = match self.rest().chars().next()? {
            '+' => (BinOp::Add, 1),
            '-' => (BinOp::Sub, 1),
            '*' => (BinOp::Mul, 2),
            '/' => (BinOp::Div, 2),
            '%' => (BinOp::Mod, 2),
            '^' => (BinOp::Pow, 3),
            _ => return None,
        };
        Some(op)
    }

    /// Binary operators by precedence climbing.
    fn expr(&mut self, min: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        while let Some((op, prec)) = self.binop() {
            if prec < min {
                break;
            }
            self.at += 1;
            self.operator()?;
            // `^` is right-associative, the others left.
            let rhs = self.expr(if op == BinOp::Pow { prec } else { prec + 1 })?;
            if matches!(lhs, Expr::Log(_)) || matches!(rhs, Expr::Log(_)) {
                return Err(self.error("arithmetic needs metric queries or numbers, not log queries"));
            }
            lhs = Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        self.ws();
        if self.rest().starts_with('{') {
            return Ok(Expr::Log(self.log_query()?));
        }
        if self.eat("(") {
            return self.nested(|p| {
                let inner = p.expr(0)?;
                p.expect(")")?;
                Ok(inner)
            });
        }
        if let Some(v) = self.number() {
            return Ok(Expr::Number(v));
        }
        let start = self.at;
        let name = self.peek_ident();
        if let Some((_, func)) = RANGE_FNS.iter().find(|(n, _)| *n == name) {
            self.at += name.len();
            return self.range_aggregation(*func, start);
        }
        if let Some((_, op)) = AGG_OPS.iter().find(|(n, _)| *n == name) {
            self.at += name.len();
            return self.nested(|p| p.vector_aggregation(*op));
        }
        Err(self.error(
            "expected a stream selector `{...}`, a function such as count_over_time, an aggregation or a number",
        ))
    }

    // Out of line: the recursion through `unary` must not carry this frame per level.
    #[inline(never)]
    fn range_aggregation(&mut self, func: RangeFn, start: usize) -> Result<Expr, ParseError> {
        self.expect("(")?;
        let param = if func == RangeFn::QuantileOverTime {
            let q = self.number().ok_or_else(|| self.error("quantile_over_time takes a number first"))?;
            self.expect(",")?;
            Some(q)
        } else {
            None
        };
        self.ws();
        if !self.rest().starts_with('{') {
            return Err(self.error("expected a log query `{...}` with a range such as [5m]"));
        }
        let mut query = self.log_query()?;
        let range_ns = self.range()?;
        // Loki also takes the pipeline after the range: `{app="x"}[5m] | json`.
        self.ws();
        if self.rest().starts_with('|') || self.rest().starts_with("!=") || self.rest().starts_with("!~") {
            let more = self.pipeline()?;
            query.stages.extend(more.0);
            if more.1.is_some() {
                query.unwrap = more.1;
            }
        }
        let offset_ns = if self.peek_ident() == "offset" {
            self.at += "offset".len();
            self.ws();
            let end = self.rest().find(|c: char| c == ')' || c.is_whitespace()).unwrap_or(self.rest().len());
            let text = &self.rest()[..end];
            let d = promql_duration(text).ok_or_else(|| self.error(format!("`{text}` is not a duration")))?;
            self.at += end;
            d
        } else {
            0
        };
        self.expect(")")?;
        let needs_unwrap =
            !matches!(func, RangeFn::CountOverTime | RangeFn::Rate | RangeFn::BytesOverTime | RangeFn::BytesRate);
        let name = RANGE_FNS.iter().find(|(_, f)| *f == func).map_or("", |(n, _)| *n);
        if needs_unwrap && query.unwrap.is_none() {
            return Err(ParseError {
                offset: start,
                message: format!("{name} needs `| unwrap LABEL` in its log query"),
            });
        }
        if matches!(func, RangeFn::CountOverTime | RangeFn::BytesOverTime | RangeFn::BytesRate)
            && query.unwrap.is_some()
        {
            return Err(ParseError { offset: start, message: format!("{name} counts lines and takes no `unwrap`") });
        }
        let grouping = self.grouping()?;
        if grouping.is_some() && !needs_unwrap {
            return Err(ParseError {
                offset: start,
                message: format!("{name} takes no `by` or `without`; aggregate it with sum by (...) (...)"),
            });
        }
        Ok(Expr::Range { func, param, query, range_ns, offset_ns, grouping })
    }

    // Out of line: the recursion through `unary` must not carry this frame per level.
    #[inline(never)]
    fn grouping(&mut self) -> Result<Option<(bool, Vec<String>)>, ParseError> {
        let word = self.peek_ident();
        let without = match word {
            "by" => false,
            "without" => true,
            _ => return Ok(None),
        };
        self.at += word.len();
        self.expect("(")?;
        let mut names = Vec::new();
        while !self.eat(")") {
            names.push(self.ident()?.to_string());
            if !self.eat(",") {
                self.expect(")")?;
                break;
            }
        }
        Ok(Some((without, names)))
    }

    fn vector_aggregation(&mut self, op: AggOp) -> Result<Expr, ParseError> {
        let before = self.grouping()?;
        self.expect("(")?;
        let param = if matches!(op, AggOp::Topk | AggOp::Bottomk) {
            let k = self.number().ok_or_else(|| self.error("topk and bottomk take a number first"))?;
            self.expect(",")?;
            Some(k)
        } else {
            None
        };
        let inner = self.expr(0)?;
        if !inner.is_metric() {
            return Err(self.error("an aggregation takes a metric query, such as count_over_time({...}[5m])"));
        }
        self.expect(")")?;
        let after = self.grouping()?;
        let grouping = after.or(before);
        Ok(Expr::Agg {
            op,
            param,
            without: grouping.as_ref().is_some_and(|g| g.0),
            labels: grouping.map(|g| g.1),
            inner: Box::new(inner),
        })
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        self.ws();
        let start = self.at;
        let rest = self.rest();
        let mut in_quote = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in rest.char_indices() {
            match c {
                '\\' if in_quote && !escaped => {
                    escaped = true;
                    continue;
                }
                '"' if !escaped => in_quote = !in_quote,
                '}' if !in_quote => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
            escaped = false;
        }
        let end = end.ok_or_else(|| self.error("the stream selector has no closing `}`"))?;
        let matchers = mobius_promql::selector_matchers(&rest[..=end])
            .map_err(|e| ParseError {
                offset: start,
                message: format!("stream selector: {}", e.to_string().replace("invalid parameter \"match[]\": ", "")),
            })?
            .into_iter()
            .next()
            .unwrap_or_default();
        if matchers.iter().all(|m| m.matches_empty()) {
            return Err(ParseError {
                offset: start,
                message: "the stream selector needs at least one matcher that is not empty-compatible".into(),
            });
        }
        self.at += end + 1;
        Ok(matchers)
    }

    // Out of line: the recursion through `unary` must not carry this frame per level.
    #[inline(never)]
    fn log_query(&mut self) -> Result<LogQuery, ParseError> {
        let matchers = self.selector()?;
        let (stages, unwrap) = self.pipeline()?;
        Ok(LogQuery { matchers, stages, unwrap })
    }

    fn pipeline(&mut self) -> Result<(Vec<Stage>, Option<Unwrap>), ParseError> {
        let mut stages = Vec::new();
        let mut unwrap = None;
        loop {
            self.ws();
            let rest = self.rest();
            let line_op = ["|=", "!=", "|~", "!~"].into_iter().find(|op| rest.starts_with(op));
            if let Some(op) = line_op {
                self.at += 2;
                let value = self.string()?;
                let at = self.at;
                let regex =
                    |v: &str| Regex::new(v).map_err(|e| ParseError { offset: at, message: format!("`{v}`: {e}") });
                stages.push(Stage::Line(match op {
                    "|=" => LineFilter::Contains(value),
                    "!=" => LineFilter::NotContains(value),
                    "|~" => LineFilter::Matches(regex(&value)?),
                    _ => LineFilter::NotMatches(regex(&value)?),
                }));
                continue;
            }
            if !rest.starts_with('|') {
                return Ok((stages, unwrap));
            }
            if unwrap.is_some() {
                return Err(self.error("`unwrap` ends the pipeline"));
            }
            self.at += 1;
            let word = self.peek_ident();
            match word {
                "json" | "logfmt" => {
                    self.at += word.len();
                    stages.push(if word == "json" { Stage::Json } else { Stage::Logfmt });
                }
                "regexp" => {
                    self.at += word.len();
                    let at = self.at;
                    let pattern = self.string()?;
                    let re = Regex::new(&pattern)
                        .map_err(|e| ParseError { offset: at, message: format!("`{pattern}`: {e}") })?;
                    if re.capture_names().flatten().next().is_none() {
                        return Err(ParseError {
                            offset: at,
                            message: "regexp needs at least one named group, such as (?P<status>\\d+)".into(),
                        });
                    }
                    stages.push(Stage::Regexp(re));
                }
                "line_format" => {
                    self.at += word.len();
                    let at = self.at;
                    let text = self.string()?;
                    let t = with_functions(Template::new("line_format"))
                        .parse(&text)
                        .map_err(|e| ParseError { offset: at, message: format!("line_format: {e}") })?;
                    stages.push(Stage::LineFormat(LineTemplate(Arc::new(t), text)));
                }
                "drop" | "keep" => {
                    self.at += word.len();
                    let mut names = vec![self.ident()?.to_string()];
                    while self.eat(",") {
                        names.push(self.ident()?.to_string());
                    }
                    stages.push(if word == "drop" { Stage::Drop(names) } else { Stage::Keep(names) });
                }
                "unwrap" => {
                    self.at += word.len();
                    let conv = self.peek_ident();
                    // `bytes(x)` converts; a label may itself be called `bytes`.
                    let call = self.rest()[conv.len()..].trim_start().starts_with('(');
                    let kind = match conv {
                        "duration" | "duration_seconds" if call => NumberKind::Duration,
                        "bytes" if call => NumberKind::Bytes,
                        _ => NumberKind::Plain,
                    };
                    let label = if kind != NumberKind::Plain {
                        self.at += conv.len();
                        self.expect("(")?;
                        let name = self.ident()?.to_string();
                        self.expect(")")?;
                        name
                    } else {
                        self.ident()?.to_string()
                    };
                    unwrap = Some(Unwrap { label, kind });
                }
                "" => return Err(self.error("expected a parser, a label filter or a line filter after `|`")),
                _ => stages.push(Stage::Labels(self.label_filter_or()?)),
            }
        }
    }

    fn label_filter_or(&mut self) -> Result<LabelFilter, ParseError> {
        let mut lhs = self.label_filter_and()?;
        while self.peek_ident() == "or" {
            self.at += 2;
            self.operator()?;
            let rhs = self.label_filter_and()?;
            lhs = LabelFilter::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_filter_and(&mut self) -> Result<LabelFilter, ParseError> {
        let mut lhs = self.label_filter_one()?;
        loop {
            if self.peek_ident() == "and" {
                self.at += 3;
            } else if !self.eat(",") {
                return Ok(lhs);
            }
            self.operator()?;
            let rhs = self.label_filter_one()?;
            lhs = LabelFilter::And(Box::new(lhs), Box::new(rhs));
        }
    }

    fn label_filter_one(&mut self) -> Result<LabelFilter, ParseError> {
        if self.eat("(") {
            return self.nested(|p| {
                let inner = p.label_filter_or()?;
                p.expect(")")?;
                Ok(inner)
            });
        }
        let name = self.ident()?.to_string();
        self.ws();
        const OPS: [&str; 9] = ["==", "!=", "=~", "!~", ">=", "<=", "=", ">", "<"];
        let op = OPS
            .into_iter()
            .find(|op| self.rest().starts_with(op))
            .ok_or_else(|| self.error(format!("expected a comparison after `{name}`")))?;
        self.at += op.len();
        self.ws();
        let at = self.at;
        if self.rest().starts_with(['"', '`']) {
            let value = self.string()?;
            let op = match op {
                "=" | "==" => mobius_series::labels::MatchOp::Equal,
                "!=" => mobius_series::labels::MatchOp::NotEqual,
                "=~" => mobius_series::labels::MatchOp::Regex,
                "!~" => mobius_series::labels::MatchOp::NotRegex,
                _ => return Err(ParseError { offset: at, message: format!("`{op}` compares numbers, not text") }),
            };
            let m = Matcher::new(op, &name, &value)
                .map_err(|e| ParseError { offset: at, message: format!("`{value}`: {e}") })?;
            return Ok(LabelFilter::Test(LabelTest::Text(m)));
        }
        let end = self
            .rest()
            .find(|c: char| c.is_whitespace() || c == ',' || c == ')' || c == '|' || c == '[')
            .unwrap_or(self.rest().len());
        let text = &self.rest()[..end];
        let (value, kind) = if let Ok(v) = text.parse::<f64>() {
            (v, NumberKind::Plain)
        } else if let Some(v) = go_duration(text) {
            (v, NumberKind::Duration)
        } else if let Some(v) = bytes_size(text) {
            (v, NumberKind::Bytes)
        } else {
            return Err(self.error(format!("`{text}` is not a quoted string, a number, a duration or a size")));
        };
        self.at += end;
        let cmp = match op {
            "=" | "==" => Cmp::Eq,
            "!=" => Cmp::Ne,
            ">" => Cmp::Gt,
            ">=" => Cmp::Ge,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            _ => return Err(ParseError { offset: at, message: format!("`{op}` takes a quoted regular expression") }),
        };
        Ok(LabelFilter::Test(LabelTest::Number { name, cmp, value, kind }))
    }
}

/// A range or offset (`5m`, `1h30m`, `250ms`, as Prometheus writes them) in nanoseconds.
fn promql_duration(text: &str) -> Option<i64> {
    mobius_config::parse_duration(text).filter(|d| !d.is_zero()).and_then(|d| i64::try_from(d.as_nanos()).ok())
}

/// One point of a log line for a metric query: when, and what it counts.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub ts: i64,
    pub value: f64,
}

/// The points of every series a range aggregation reads, by the series' labels.
pub type Samples = BTreeMap<Labels, Vec<Point>>;

/// Turns one line into a point of `query`'s series, if the pipeline keeps it; an
/// `__error__` label or an unreadable unwrapped value is an error, as in Loki.
pub fn sample(
    query: &LogQuery,
    func: RangeFn,
    stream: &Labels,
    ts: i64,
    line: &str,
) -> Result<Option<(Labels, Point)>, QueryError> {
    let Some((labels, line)) = query.process(stream, line) else { return Ok(None) };
    if let Some(e) = labels.get(ERROR_LABEL) {
        return Err(QueryError::Sample(format!(
            "pipeline error `{e}` for series {labels}; drop such lines with a label filter, such as | {ERROR_LABEL}=\"\""
        )));
    }
    let value = match (&query.unwrap, func) {
        (Some(u), _) => {
            let text = labels.get(&u.label).unwrap_or("");
            match number(text, u.kind) {
                Some(v) => v,
                None => {
                    return Err(QueryError::Sample(format!(
                        "unwrap: `{text}` of label `{}` is not a {} in series {labels}; drop such lines with a label filter first",
                        u.label,
                        match u.kind {
                            NumberKind::Plain => "number",
                            NumberKind::Duration => "duration",
                            NumberKind::Bytes => "size",
                        }
                    )))
                }
            }
        }
        (None, RangeFn::BytesOverTime | RangeFn::BytesRate) => line.len() as f64,
        (None, _) => 1.0,
    };
    let labels = match &query.unwrap {
        Some(u) => labels.without(&u.label),
        None => labels,
    };
    Ok(Some((labels, Point { ts, value })))
}

/// Reads the points of a log query's series for a range aggregation, between two
/// times (nanoseconds, both included).
pub type ReadLines<'a> = dyn FnMut(&LogQuery, RangeFn, i64, i64) -> Result<Samples, QueryError> + 'a;

/// A metric query's result: a number at every step, or series of optional values.
#[derive(Clone, Debug)]
pub enum Value {
    Scalar(f64),
    Vector(BTreeMap<Labels, Vec<Option<f64>>>),
}

/// Evaluates a metric query at `steps` (nanoseconds), `read` giving the points of
/// each log query it selects for the window `[from, to]`.
pub fn evaluate(expr: &Expr, steps: &[i64], read: &mut ReadLines<'_>) -> Result<Value, QueryError> {
    match expr {
        Expr::Log(_) => Err(QueryError::NotMetric),
        Expr::Number(v) => Ok(Value::Scalar(*v)),
        Expr::Range { func, param, query, range_ns, offset_ns, grouping } => {
            let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
                return Ok(Value::Vector(BTreeMap::new()));
            };
            // Saturating: a query's times may sit anywhere in i64's range.
            let mut samples = read(
                query,
                *func,
                first.saturating_sub(*offset_ns).saturating_sub(*range_ns),
                last.saturating_sub(*offset_ns),
            )?;
            if let Some((without, names)) = grouping {
                let mut grouped = Samples::new();
                for (labels, points) in samples {
                    let key = if *without { labels.except(names) } else { labels.only(names) };
                    grouped.entry(key).or_default().extend(points);
                }
                samples = grouped;
            }
            let mut out = BTreeMap::new();
            for (labels, mut points) in samples {
                points.sort_by_key(|p| p.ts);
                let mut values = Vec::with_capacity(steps.len());
                let (mut lo, mut hi) = (0, 0);
                for &t in steps {
                    let end = t.saturating_sub(*offset_ns);
                    while hi < points.len() && points[hi].ts <= end {
                        hi += 1;
                    }
                    while lo < hi && points[lo].ts <= end.saturating_sub(*range_ns) {
                        lo += 1;
                    }
                    values.push(range_value(*func, *param, &points[lo..hi], *range_ns));
                }
                if values.iter().any(Option::is_some) {
                    out.insert(labels, values);
                }
            }
            Ok(Value::Vector(out))
        }
        Expr::Agg { op, param, without, labels, inner } => {
            let Value::Vector(series) = evaluate(inner, steps, read)? else {
                return Err(QueryError::AggregateNumber);
            };
            Ok(Value::Vector(aggregate(*op, *param, *without, labels.as_deref(), series, steps.len())))
        }
        Expr::Binary { op, lhs, rhs } => {
            let (l, r) = (evaluate(lhs, steps, read)?, evaluate(rhs, steps, read)?);
            let apply = |a: f64, b: f64| match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div => a / b,
                BinOp::Mod => a % b,
                BinOp::Pow => a.powf(b),
            };
            Ok(match (l, r) {
                (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(apply(a, b)),
                (Value::Vector(v), Value::Scalar(b)) => Value::Vector(
                    v.into_iter()
                        .map(|(k, vs)| (k, vs.into_iter().map(|x| x.map(|a| apply(a, b))).collect()))
                        .collect(),
                ),
                (Value::Scalar(a), Value::Vector(v)) => Value::Vector(
                    v.into_iter()
                        .map(|(k, vs)| (k, vs.into_iter().map(|x| x.map(|b| apply(a, b))).collect()))
                        .collect(),
                ),
                // Two vectors: series with the same labels, at steps where both have a value.
                (Value::Vector(a), Value::Vector(b)) => Value::Vector(
                    a.into_iter()
                        .filter_map(|(k, xs)| {
                            let ys = b.get(&k)?;
                            let values: Vec<Option<f64>> =
                                xs.iter().zip(ys).map(|(x, y)| Some(apply((*x)?, (*y)?))).collect();
                            values.iter().any(Option::is_some).then_some((k, values))
                        })
                        .collect(),
                ),
            })
        }
    }
}

fn range_value(func: RangeFn, param: Option<f64>, points: &[Point], range_ns: i64) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    let seconds = range_ns as f64 / 1e9;
    let values = points.iter().map(|p| p.value);
    let n = points.len() as f64;
    let sum: f64 = values.clone().sum();
    let variance = || mobius_promql::variance(values.clone());
    Some(match func {
        RangeFn::CountOverTime => n,
        RangeFn::Rate | RangeFn::BytesRate => sum / seconds,
        RangeFn::BytesOverTime | RangeFn::SumOverTime => sum,
        RangeFn::AvgOverTime => sum / n,
        RangeFn::MinOverTime => values.fold(f64::INFINITY, f64::min),
        RangeFn::MaxOverTime => values.fold(f64::NEG_INFINITY, f64::max),
        RangeFn::FirstOverTime => points[0].value,
        RangeFn::LastOverTime => points[points.len() - 1].value,
        RangeFn::StdvarOverTime => variance(),
        RangeFn::StddevOverTime => variance().sqrt(),
        RangeFn::QuantileOverTime => mobius_promql::quantile(param.unwrap_or(f64::NAN), values.collect()),
    })
}

fn aggregate(
    op: AggOp,
    param: Option<f64>,
    without: bool,
    names: Option<&[String]>,
    series: BTreeMap<Labels, Vec<Option<f64>>>,
    steps: usize,
) -> BTreeMap<Labels, Vec<Option<f64>>> {
    let key = |labels: &Labels| -> Labels {
        match names {
            None => Labels::default(),
            Some(names) if without => labels.except(names),
            Some(names) => labels.only(names),
        }
    };
    if matches!(op, AggOp::Topk | AggOp::Bottomk) {
        // Each group keeps its k largest (smallest) series at every step, labels unchanged.
        let k = param.unwrap_or(0.0).max(0.0) as usize;
        let mut groups: BTreeMap<Labels, Vec<&Labels>> = BTreeMap::new();
        for labels in series.keys() {
            groups.entry(key(labels)).or_default().push(labels);
        }
        let mut out: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
        for members in groups.values() {
            for step in 0..steps {
                let mut here: Vec<(&Labels, f64)> =
                    members.iter().filter_map(|l| series.get(*l).and_then(|v| v[step]).map(|v| (*l, v))).collect();
                here.sort_by(|a, b| if op == AggOp::Topk { b.1.total_cmp(&a.1) } else { a.1.total_cmp(&b.1) });
                for (labels, v) in here.into_iter().take(k) {
                    out.entry(labels.clone()).or_insert_with(|| vec![None; steps])[step] = Some(v);
                }
            }
        }
        return out;
    }
    let mut groups: BTreeMap<Labels, Vec<Vec<f64>>> = BTreeMap::new();
    for (labels, values) in &series {
        let group = groups.entry(key(labels)).or_insert_with(|| vec![Vec::new(); steps]);
        for (step, v) in values.iter().enumerate() {
            if let Some(v) = v {
                group[step].push(*v);
            }
        }
    }
    groups
        .into_iter()
        .map(|(labels, per_step)| {
            let values = per_step
                .into_iter()
                .map(|vs| {
                    if vs.is_empty() {
                        return None;
                    }
                    let n = vs.len() as f64;
                    let sum: f64 = vs.iter().sum();
                    let variance = || mobius_promql::variance(vs.iter().copied());
                    Some(match op {
                        AggOp::Sum => sum,
                        AggOp::Avg => sum / n,
                        AggOp::Min => vs.iter().copied().fold(f64::INFINITY, f64::min),
                        AggOp::Max => vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        AggOp::Count => n,
                        AggOp::Stdvar => variance(),
                        AggOp::Stddev => variance().sqrt(),
                        AggOp::Topk | AggOp::Bottomk => sum,
                    })
                })
                .collect();
            (labels, values)
        })
        .collect()
}
