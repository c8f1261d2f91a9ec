//! PromQL evaluation over the store, with Prometheus' semantics: expressions parsed by
//! the `promql-parser` crate; instant vectors look back 5 minutes and stop at
//! staleness markers; `rate` and friends extrapolate as Prometheus 2.x does.
//!
//! An expression is evaluated once over every step of a query (an instant query is a
//! range of one step), as Prometheus' engine does: each selector reads the store once,
//! range functions slide a window along each series, and label sets are worked out
//! once per series, not once per step. Operations that need a whole instant vector at
//! a time (`topk`, vector matching, `histogram_quantile`…) run step by step on the
//! already evaluated inputs.
#![forbid(unsafe_code)]

use mobius_series::{is_stale, valid_label_name, Labels, MatchOp, Matcher, METRIC_NAME};
use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
pub use promql_parser::parser::Expr;
use promql_parser::parser::{self, AtModifier, BinaryExpr, LabelModifier, VectorMatchCardinality, VectorSelector};
use std::collections::{BTreeMap, HashMap, HashSet};

pub use mobius_series::Series;

/// What evaluation reads from storage: the samples of every series the matchers
/// select, between two times (inclusive, milliseconds). Storage does not know this
/// trait; `mobius_tsdb::Db` answers it below, and tests can answer it from memory.
pub trait Querier {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series>;
}

impl<Q: Querier + ?Sized> Querier for std::sync::Arc<Q> {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        Q::select(self, matchers, mint, maxt)
    }
}

impl Querier for mobius_tsdb::Db {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        mobius_tsdb::Db::select(self, matchers, mint, maxt)
    }
}

/// How far back an instant vector looks for a sample (Prometheus' default).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// The deepest expression a query may have: each operator, call and parenthesis
/// counts one level. Checked on the text before it is parsed, as the deepest
/// nesting of parentheses plus the number of operators, so 3,000 chained `+` are
/// refused without building a tree that deep.
pub const MAX_DEPTH: usize = 1000;

/// Prometheus' `--query.timeout` default.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Prometheus' `--query.max-samples` default.
pub const DEFAULT_MAX_SAMPLES: usize = 50_000_000;

/// A query that cannot be answered, with Prometheus' error type.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    BadData(String),
    #[error("{0}")]
    Execution(String),
    /// The query ran longer than its [`Limits::timeout`].
    #[error("query timed out in expression evaluation")]
    Timeout,
    /// The query loaded more than [`Limits::max_samples`] samples.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
}

/// What one query may spend, as Prometheus' `--query.timeout` and `--query.max-samples`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub timeout: std::time::Duration,
    pub max_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout: DEFAULT_TIMEOUT, max_samples: DEFAULT_MAX_SAMPLES }
    }
}

/// A query's running account against its [`Limits`].
struct Budget {
    deadline: Option<std::time::Instant>,
    max_samples: usize,
    samples: std::cell::Cell<usize>,
}

impl Budget {
    fn new(limits: Limits) -> Budget {
        Budget {
            deadline: std::time::Instant::now().checked_add(limits.timeout),
            max_samples: limits.max_samples,
            samples: std::cell::Cell::new(0),
        }
    }

    fn check_time(&self) -> Result<(), QueryError> {
        match self.deadline {
            Some(deadline) if std::time::Instant::now() > deadline => Err(QueryError::Timeout),
            _ => Ok(()),
        }
    }

    /// Counts `n` more samples held by the query.
    fn take(&self, n: usize) -> Result<(), QueryError> {
        let total = self.samples.get().saturating_add(n);
        self.samples.set(total);
        if total > self.max_samples {
            return Err(QueryError::TooManySamples);
        }
        self.check_time()
    }
}

/// The largest bare number of seconds an offset, range or subquery step may be
/// (about 31,700 years): promql-parser turns bare numbers into durations and panics
/// on ones a `Duration` cannot hold (found by the `promql` fuzz target).
pub const MAX_DURATION_SECONDS: f64 = 1e12;

/// The index just past the quoted string that starts at `start`.
fn skip_quoted(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() && bytes[i] != quote {
        if bytes[i] == b'\\' && quote != b'`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Refuses the bare number at `i` (after spaces) when it is used as a duration and
/// is not finite or above [`MAX_DURATION_SECONDS`]; anything else is the parser's.
fn check_bare_duration(query: &str, mut i: usize) -> Result<(), QueryError> {
    let bytes = query.as_bytes();
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    if i < bytes.len() && matches!(bytes[i], b'+' | b'-') {
        i += 1;
    }
    while i < bytes.len() {
        let b = bytes[i];
        let exponent_sign = matches!(b, b'+' | b'-') && matches!(bytes[i - 1], b'e' | b'E');
        if !(b.is_ascii_alphanumeric() || b == b'.' || exponent_sign) {
            break;
        }
        i += 1;
    }
    let token = &query[start..i];
    match token.parse::<f64>() {
        Ok(v) if !v.is_finite() || v.abs() > MAX_DURATION_SECONDS => Err(QueryError::BadData(format!(
            "invalid parameter \"query\": the duration `{token}` is out of range (at most {MAX_DURATION_SECONDS} seconds)"
        ))),
        _ => Ok(()),
    }
}

/// One pass over a query's text, outside strings, comments and label matchers,
/// before promql-parser sees it:
/// - its levels, the deepest nesting of parentheses plus the number of operators (an
///   upper bound of the depth of the tree the parser would build), at most [`MAX_DEPTH`];
/// - every bare number used as a duration (after `offset`, after `[`, after `:` inside
///   brackets) within [`MAX_DURATION_SECONDS`].
fn prescan(query: &str) -> Result<(), QueryError> {
    let bytes = query.as_bytes();
    let (mut nesting, mut deepest, mut operators) = (0usize, 0usize, 0usize);
    let mut in_brackets = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_quoted(bytes, i);
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                // Label matchers: their strings may hold anything.
                while i < bytes.len() && bytes[i] != b'}' {
                    i = if matches!(bytes[i], b'"' | b'\'' | b'`') { skip_quoted(bytes, i) } else { i + 1 };
                }
            }
            b'(' => {
                nesting += 1;
                deepest = deepest.max(nesting);
            }
            b')' => nesting = nesting.saturating_sub(1),
            b'[' => {
                in_brackets = true;
                check_bare_duration(query, i + 1)?;
            }
            b']' => in_brackets = false,
            b':' if in_brackets => check_bare_duration(query, i + 1)?,
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' => operators += 1,
            b'=' | b'!' if bytes.get(i + 1) == Some(&b'=') => {
                operators += 1;
                i += 1;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let start = i;
                // Metric names may hold `:`; inside brackets it separates a range from a step.
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || (bytes[i] == b':' && !in_brackets))
                {
                    i += 1;
                }
                let word = &query[start..i];
                if matches!(word, "and" | "or" | "unless" | "atan2") {
                    operators += 1;
                } else if word.eq_ignore_ascii_case("offset") {
                    check_bare_duration(query, i)?;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let levels = deepest.saturating_add(operators);
    if levels > MAX_DEPTH {
        return Err(QueryError::BadData(format!(
            "invalid parameter \"query\": the expression has {levels} levels of operators, calls and parentheses, \
             more than the limit of {MAX_DEPTH}"
        )));
    }
    Ok(())
}

/// What an expression evaluates to at one instant.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<(Labels, f64)>),
    Matrix(Vec<Series>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Parses a query, refusing one deeper than [`MAX_DEPTH`] or with an impossible
/// duration before parsing it.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    prescan(query)?;
    // Defence in depth: should promql-parser still panic on some input, a query must
    // never take a thread down with it.
    match std::panic::catch_unwind(|| parser::parse(query)) {
        Ok(parsed) => parsed.map_err(|e| QueryError::BadData(format!("invalid parameter \"query\": {e}"))),
        Err(_) => Err(QueryError::BadData(
            "invalid parameter \"query\": the expression cannot be parsed (a number or duration out of range?)".into(),
        )),
    }
}

fn unsupported(what: impl std::fmt::Display) -> QueryError {
    QueryError::BadData(format!("{what} is not supported by Mobius yet"))
}

/// Evaluates `expr` at `t` (milliseconds) within the default [`Limits`].
pub fn instant(db: &dyn Querier, expr: &Expr, t: i64) -> Result<Value, QueryError> {
    instant_within(db, expr, t, Limits::default())
}

/// Evaluates `expr` at `t` (milliseconds) within `limits`.
pub fn instant_within(db: &dyn Querier, expr: &Expr, t: i64, limits: Limits) -> Result<Value, QueryError> {
    check_time("time", t)?;
    let budget = Budget::new(limits);
    let eval = Eval { db, grid: Grid { start: t, step: 1, len: 1 }, query: (t, t), budget: &budget };
    if let Expr::MatrixSelector(_) | Expr::Subquery(_) = expr {
        let windows = eval.windows_of(expr)?;
        return Ok(Value::Matrix(windows.series.into_iter().filter(|(_, s)| !s.is_empty()).collect()));
    }
    Ok(match eval.eval(expr)? {
        Steps::Scalar(v) => Value::Scalar(v.first().copied().unwrap_or(f64::NAN)),
        Steps::String(s) => Value::String(s),
        Steps::Vector(rows) => {
            Value::Vector(rows.into_iter().filter_map(|(l, points)| points.first().map(|p| (l, p.1))).collect())
        }
    })
}

/// Evaluates `expr` at every step from `start` to `end`: one series per label set,
/// within the default [`Limits`].
pub fn range(db: &dyn Querier, expr: &Expr, start: i64, end: i64, step: i64) -> Result<Vec<Series>, QueryError> {
    range_within(db, expr, start, end, step, Limits::default())
}

/// The earliest and latest instants a query may name, in milliseconds (about
/// ±292,000 years around 1970): a thousandth of `i64`'s range, so that a query's
/// times, ranges and offsets can be added and subtracted without overflowing.
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974;
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974;

/// Refuses a time outside [`MIN_TIME_MS`]..=[`MAX_TIME_MS`], naming the parameter.
pub fn check_time(name: &str, t: i64) -> Result<(), QueryError> {
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&t) {
        Ok(())
    } else {
        Err(QueryError::BadData(format!(
            "invalid parameter \"{name}\": {t} ms is outside the times a query may name \
             ({MIN_TIME_MS} to {MAX_TIME_MS} ms)"
        )))
    }
}

/// Evaluates `expr` at every step from `start` to `end` within `limits`.
pub fn range_within(
    db: &dyn Querier,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
    limits: Limits,
) -> Result<Vec<Series>, QueryError> {
    if step <= 0 {
        return Err(QueryError::BadData("zero or negative query resolution step widths are not accepted".into()));
    }
    check_time("start", start)?;
    check_time("end", end)?;
    if end < start {
        return Ok(Vec::new());
    }
    // Both ends are within ±2^63/1000, so their difference cannot overflow.
    if (end - start) / step > 11_000 {
        return Err(QueryError::BadData("exceeded maximum resolution of 11,000 points per timeseries".into()));
    }
    if matches!(expr, Expr::MatrixSelector(_) | Expr::Subquery(_)) {
        return Err(QueryError::BadData(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
        ));
    }
    let len = usize::try_from((end - start) / step + 1).unwrap_or(1);
    let budget = Budget::new(limits);
    let eval = Eval { db, grid: Grid { start, step, len }, query: (start, end), budget: &budget };
    match eval.eval(expr)? {
        Steps::Scalar(values) => {
            Ok(vec![(Labels::default(), values.into_iter().enumerate().map(|(i, v)| (eval.grid.at(i), v)).collect())])
        }
        Steps::Vector(rows) => Ok(merge(rows)),
        Steps::String(_) => Err(QueryError::BadData(
            "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
        )),
    }
}

/// Rows with the same labels made one series, in time order, sorted by labels.
fn merge(rows: Vec<Series>) -> Vec<Series> {
    let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for (labels, points) in rows {
        match out.entry(labels) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(points);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                e.get_mut().extend(points);
                e.get_mut().sort_by_key(|p| p.0);
            }
        }
    }
    out.into_iter().collect()
}

/// The instants an expression is evaluated at: `start`, `start + step`, … (`len` of them).
#[derive(Clone, Copy)]
struct Grid {
    start: i64,
    step: i64,
    len: usize,
}

impl Grid {
    fn at(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    fn index(&self, t: i64) -> usize {
        usize::try_from((t - self.start) / self.step).unwrap_or(0)
    }
}

/// An expression's value at every instant of the grid.
enum Steps {
    Scalar(Vec<f64>),
    String(String),
    /// Series with a point `(instant, value)` at the instants where they have a value.
    Vector(Vec<Series>),
}

impl Steps {
    fn type_name(&self) -> &'static str {
        match self {
            Steps::Scalar(_) => "scalar",
            Steps::String(_) => "string",
            Steps::Vector(_) => "vector",
        }
    }
}

/// A function of the samples in a window: `(samples, start, end, step index)`.
type WindowFn<'f> = &'f dyn Fn(&[(i64, f64)], i64, i64, usize) -> Option<f64>;
/// A function of the samples in a window.
type SamplesFn<'f> = &'f dyn Fn(&[(i64, f64)]) -> f64;

/// One instant of a vector: `(row, value)` for each row with a point there.
type Instant = Vec<(usize, f64)>;

struct Eval<'a> {
    db: &'a dyn Querier,
    grid: Grid,
    /// The query's own start and end (`@ start()`, `@ end()`), also inside subqueries.
    query: (i64, i64),
    /// Time and samples spent so far, shared with subqueries.
    budget: &'a Budget,
}

/// A range vector over the grid: its series, and for each instant where its window
/// ends and which samples `(from, to)` of each series fall in `[end - range, end]`.
struct Windows {
    series: Vec<Series>,
    range: i64,
    ends: Vec<i64>,
    spans: Vec<Vec<(usize, usize)>>,
}

/// The default resolution of a subquery without a step (Prometheus' default
/// evaluation interval).
const SUBQUERY_STEP_MS: i64 = 60_000;

/// The matcher sets of a series selector (`match[]` of the metadata endpoints):
/// one set, or one per `or` alternative.
pub fn selector_matchers(text: &str) -> Result<Vec<Vec<Matcher>>, QueryError> {
    match parse(text)? {
        Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => matchers(&vs),
        _ => Err(QueryError::BadData(format!("invalid parameter \"match[]\": {text} is not a series selector"))),
    }
}

fn matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let convert = |m: &PMatcher| -> Result<Matcher, QueryError> {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        Matcher::new(op, &m.name, &m.value).map_err(|e| QueryError::BadData(e.to_string()))
    };
    let mut base: Vec<Matcher> = vs.matchers.matchers.iter().map(convert).collect::<Result<_, _>>()?;
    if let Some(name) = &vs.name {
        base.push(Matcher::equal(METRIC_NAME, name));
    }
    if vs.matchers.or_matchers.is_empty() {
        return Ok(vec![base]);
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|group| {
            let mut set = base.clone();
            for m in group {
                set.push(convert(m)?);
            }
            Ok(set)
        })
        .collect()
}

fn offset_ms(offset: &Option<parser::Offset>) -> i64 {
    match offset {
        Some(parser::Offset::Pos(d)) => range_ms(*d),
        Some(parser::Offset::Neg(d)) => -range_ms(*d),
        None => 0,
    }
}

fn drop_name(labels: &Labels) -> Labels {
    labels.without(METRIC_NAME)
}

/// A duration of a query (range, offset, `@` time) in milliseconds, at most
/// [`MAX_TIME_MS`], so that sums of a few of them and a query's times never overflow.
fn range_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).min(MAX_TIME_MS)
}

impl Eval<'_> {
    /// Series of a selector with samples in `(mint, maxt]`, read from the store once.
    fn series(&self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<Series>, QueryError> {
        let mut sets = matchers(vs)?;
        self.budget.check_time()?;
        let counted = |found: Vec<Series>| -> Result<Vec<Series>, QueryError> {
            self.budget.take(found.iter().map(|(_, s)| s.len()).sum())?;
            Ok(found)
        };
        if sets.len() == 1 {
            // One matcher set: the store's answer is already one entry per series, sorted.
            return counted(self.db.select(&sets.remove(0), mint.saturating_add(1), maxt));
        }
        let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for set in sets {
            for (labels, samples) in counted(self.db.select(&set, mint.saturating_add(1), maxt))? {
                out.insert(labels, samples);
            }
        }
        Ok(out.into_iter().collect())
    }

    fn eval(&self, expr: &Expr) -> Result<Steps, QueryError> {
        self.budget.check_time()?;
        let steps = self.eval_node(expr)?;
        if let Steps::Vector(rows) = &steps {
            // What each node holds counts too, as Prometheus counts the points of every step.
            self.budget.take(rows.iter().map(|(_, points)| points.len()).sum())?;
        }
        Ok(steps)
    }

    fn eval_node(&self, expr: &Expr) -> Result<Steps, QueryError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Steps::Scalar(vec![n.val; self.grid.len])),
            Expr::StringLiteral(s) => Ok(Steps::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Steps::Scalar(v) => Ok(Steps::Scalar(v.into_iter().map(|v| -v).collect())),
                Steps::Vector(rows) => Ok(Steps::Vector(
                    rows.into_iter()
                        .map(|(l, points)| (drop_name(&l), points.into_iter().map(|(t, v)| (t, -v)).collect()))
                        .collect(),
                )),
                other => Err(QueryError::BadData(format!("unary minus on a {}", other.type_name()))),
            },
            Expr::VectorSelector(vs) => self.selector(vs, false),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                Err(QueryError::BadData("a range vector is only an argument of a function here".into()))
            }
            Expr::Call(call) => self.call(call),
            Expr::Aggregate(agg) => self.aggregate(agg),
            Expr::Binary(b) => self.binary(b),
            Expr::Extension(_) => Err(unsupported("an extension")),
        }
    }

    /// An instant vector selector: at each instant, each series' last sample in the
    /// lookback window (which includes its start, as in Prometheus 2.x), unless stale;
    /// with `stamps`, the sample's time in seconds instead of its value.
    fn selector(&self, vs: &VectorSelector, stamps: bool) -> Result<Steps, QueryError> {
        let ends = self.ends(&vs.offset, &vs.at);
        let (first, last) = (ends[0], ends[ends.len() - 1]);
        let mut out = Vec::new();
        for (labels, samples) in self.series(vs, first - LOOKBACK_MS - 1, last)? {
            let mut points = Vec::new();
            // `samples[..next]` are at or before the instant.
            let mut next = 0;
            for (i, &at) in ends.iter().enumerate() {
                while next < samples.len() && samples[next].0 <= at {
                    next += 1;
                }
                let Some((t, v)) = next.checked_sub(1).map(|k| samples[k]) else { continue };
                if t >= at - LOOKBACK_MS && !is_stale(v) {
                    points.push((self.grid.at(i), if stamps { t as f64 / 1000.0 } else { v }));
                }
            }
            if !points.is_empty() {
                out.push((labels, points));
            }
        }
        Ok(Steps::Vector(out))
    }

    /// The time each instant of the grid reads at: the instant, or the fixed time of
    /// an `@` modifier, minus the offset. Never decreasing.
    fn ends(&self, offset: &Option<parser::Offset>, at: &Option<AtModifier>) -> Vec<i64> {
        let offset = offset_ms(offset);
        let fixed = at.as_ref().map(|at| match at {
            AtModifier::Start => self.query.0,
            AtModifier::End => self.query.1,
            AtModifier::At(time) => match time.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => range_ms(d),
                Err(e) => -range_ms(e.duration()),
            },
        });
        (0..self.grid.len).map(|i| fixed.unwrap_or(self.grid.at(i)) - offset).collect()
    }

    /// A range selector (staleness markers dropped) or a subquery (its expression
    /// evaluated at its own steps, aligned as Prometheus aligns them), with each
    /// instant's window `[end - range, end]`, both ends included as in Prometheus 2.x.
    fn windows_of(&self, arg: &Expr) -> Result<Windows, QueryError> {
        let (mut series, range, ends) = match arg {
            Expr::MatrixSelector(ms) => {
                let range = range_ms(ms.range);
                let ends = self.ends(&ms.vs.offset, &ms.vs.at);
                let mut series = self.series(&ms.vs, ends[0] - range - 1, ends[ends.len() - 1])?;
                for (_, samples) in &mut series {
                    samples.retain(|(_, v)| !is_stale(*v));
                }
                (series, range, ends)
            }
            Expr::Subquery(sq) => {
                let range = range_ms(sq.range);
                let step = sq.step.map_or(SUBQUERY_STEP_MS, range_ms).max(1);
                let ends = self.ends(&sq.offset, &sq.at);
                let (from, to) = (ends[0] - range, ends[ends.len() - 1]);
                // The first multiple of the step at or after the first window's start.
                let start = from.div_euclid(step) * step + if from.rem_euclid(step) == 0 { 0 } else { step };
                if (to - start) / step > 1_000_000 {
                    return Err(QueryError::BadData("a subquery of more than 1,000,000 steps".into()));
                }
                let series = if to < start {
                    Vec::new()
                } else {
                    let len = usize::try_from((to - start) / step + 1).unwrap_or(1);
                    let inner =
                        Eval { db: self.db, grid: Grid { start, step, len }, query: self.query, budget: self.budget };
                    inner.vectors(&sq.expr)?
                };
                (series, range, ends)
            }
            _ => return Err(QueryError::BadData("expected a range vector".into())),
        };
        series.retain(|(_, s)| !s.is_empty());
        let mut spans = Vec::with_capacity(series.len());
        for (_, samples) in &series {
            let (mut from, mut to) = (0, 0);
            let mut row = Vec::with_capacity(ends.len());
            for &end in &ends {
                while to < samples.len() && samples[to].0 <= end {
                    to += 1;
                }
                while from < to && samples[from].0 < end - range {
                    from += 1;
                }
                row.push((from, to));
            }
            spans.push(row);
        }
        Ok(Windows { series, range, ends, spans })
    }

    /// A function of a range vector, `f(window, start, end, step)` at each instant.
    fn over_range(&self, arg: &Expr, keep_name: bool, f: WindowFn) -> Result<Steps, QueryError> {
        let Windows { series, range, ends, spans } = self.windows_of(arg)?;
        let mut out = Vec::new();
        for ((labels, samples), row) in series.into_iter().zip(spans) {
            let mut points = Vec::new();
            for (i, (from, to)) in row.into_iter().enumerate() {
                if from == to {
                    continue;
                }
                if let Some(v) = f(&samples[from..to], ends[i] - range, ends[i], i) {
                    points.push((self.grid.at(i), v));
                }
            }
            if !points.is_empty() {
                out.push((if keep_name { labels } else { drop_name(&labels) }, points));
            }
        }
        Ok(Steps::Vector(out))
    }

    fn vectors(&self, expr: &Expr) -> Result<Vec<Series>, QueryError> {
        match self.eval(expr)? {
            Steps::Vector(rows) => Ok(rows),
            other => Err(QueryError::BadData(format!("expected an instant vector, got {}", other.type_name()))),
        }
    }

    fn scalars(&self, expr: &Expr) -> Result<Vec<f64>, QueryError> {
        match self.eval(expr)? {
            Steps::Scalar(v) => Ok(v),
            other => Err(QueryError::BadData(format!("expected a scalar, got {}", other.type_name()))),
        }
    }

    /// The rows' points regrouped by instant.
    fn by_instant(&self, rows: &[Series]) -> Vec<Instant> {
        let mut out: Vec<Instant> = vec![Vec::new(); self.grid.len];
        for (row, (_, points)) in rows.iter().enumerate() {
            for (t, v) in points {
                if let Some(at) = out.get_mut(self.grid.index(*t)) {
                    at.push((row, *v));
                }
            }
        }
        out
    }

    /// Instant vectors computed step by step, made rows again.
    fn rows_of_instants(&self, instants: Vec<Vec<(Labels, f64)>>) -> Steps {
        let mut rows: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for (i, vector) in instants.into_iter().enumerate() {
            for (labels, v) in vector {
                rows.entry(labels).or_default().push((self.grid.at(i), v));
            }
        }
        Steps::Vector(rows.into_iter().collect())
    }

    /// `absent` and `absent_over_time`: `labels` with 1 at each instant that is empty.
    fn absent(&self, labels: Labels, empty: &[bool]) -> Steps {
        let points: Vec<(i64, f64)> =
            empty.iter().enumerate().filter(|(_, e)| **e).map(|(i, _)| (self.grid.at(i), 1.0)).collect();
        Steps::Vector(if points.is_empty() { Vec::new() } else { vec![(labels, points)] })
    }

    /// The date functions: a part of each value read as Unix seconds in UTC, or of the
    /// instant itself without an argument.
    fn date(&self, name: &str, arg: Option<&Expr>) -> Result<Steps, QueryError> {
        let part = |seconds: f64| -> Option<f64> {
            use chrono::{Datelike, Timelike};
            // Go's conversion truncates toward zero, as `as` does.
            let t = chrono::DateTime::from_timestamp(seconds as i64, 0).filter(|_| seconds.is_finite())?;
            Some(f64::from(match name {
                "minute" => t.minute(),
                "hour" => t.hour(),
                "day_of_week" => t.weekday().num_days_from_sunday(),
                "day_of_month" => t.day(),
                "day_of_year" => t.ordinal(),
                "days_in_month" => match t.month() {
                    2 if t.date_naive().leap_year() => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                },
                "month" => t.month(),
                _ => return Some(f64::from(t.year())),
            }))
        };
        match arg {
            Some(arg) => self.map(arg, &|v, _| Some(part(v).unwrap_or(f64::NAN))),
            None => {
                // The instant in whole seconds, as Prometheus divides it.
                let at = |i: usize| self.grid.at(i);
                let points =
                    (0..self.grid.len).map(|i| (at(i), part((at(i) / 1000) as f64).unwrap_or(f64::NAN))).collect();
                Ok(Steps::Vector(vec![(Labels::default(), points)]))
            }
        }
    }

    /// A function of each value (the metric name is dropped); `None` drops the point.
    fn map(&self, arg: &Expr, f: &dyn Fn(f64, usize) -> Option<f64>) -> Result<Steps, QueryError> {
        let mut out = Vec::new();
        for (labels, points) in self.vectors(arg)? {
            let points: Vec<(i64, f64)> =
                points.into_iter().filter_map(|(t, v)| f(v, self.grid.index(t)).map(|r| (t, r))).collect();
            if !points.is_empty() {
                out.push((drop_name(&labels), points));
            }
        }
        Ok(Steps::Vector(out))
    }

    fn call(&self, call: &parser::Call) -> Result<Steps, QueryError> {
        let name = call.func.name;
        let args = &call.args.args;
        let arg = |i: usize| {
            args.get(i).map(|b| b.as_ref()).ok_or_else(|| QueryError::BadData(format!("{name}: missing argument")))
        };
        let scalar_arg = |i: usize, default: f64| -> Result<Vec<f64>, QueryError> {
            match args.get(i) {
                Some(e) => self.scalars(e),
                None => Ok(vec![default; self.grid.len]),
            }
        };
        let over_time = |f: SamplesFn, keep_name: bool| self.over_range(arg(0)?, keep_name, &|s, _, _, _| Some(f(s)));
        match name {
            "rate" | "increase" | "delta" => self.over_range(arg(0)?, false, &|s, start, end, _| {
                extrapolated(s, start, end, name != "delta", name == "rate")
            }),
            "irate" | "idelta" => self.over_range(arg(0)?, false, &|s, _, _, _| {
                let [.., (t0, v0), (t1, v1)] = s else { return None };
                let mut dv = v1 - v0;
                if name == "irate" {
                    if v1 < v0 {
                        dv = *v1;
                    }
                    dv /= (t1 - t0) as f64 / 1000.0;
                }
                Some(dv)
            }),
            "avg_over_time" => over_time(&|s| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64, false),
            "sum_over_time" => over_time(&|s| s.iter().map(|p| p.1).sum(), false),
            "min_over_time" => over_time(&|s| s.iter().map(|p| p.1).fold(f64::NAN, f64::min), false),
            "max_over_time" => over_time(&|s| s.iter().map(|p| p.1).fold(f64::NAN, f64::max), false),
            "count_over_time" => over_time(&|s| s.len() as f64, false),
            "last_over_time" => over_time(&|s| s.last().map_or(f64::NAN, |p| p.1), true),
            "present_over_time" => over_time(&|_| 1.0, false),
            "abs" => self.map(arg(0)?, &|v, _| Some(v.abs())),
            "ceil" => self.map(arg(0)?, &|v, _| Some(v.ceil())),
            "floor" => self.map(arg(0)?, &|v, _| Some(v.floor())),
            "exp" => self.map(arg(0)?, &|v, _| Some(v.exp())),
            "sqrt" => self.map(arg(0)?, &|v, _| Some(v.sqrt())),
            "ln" => self.map(arg(0)?, &|v, _| Some(v.ln())),
            "log2" => self.map(arg(0)?, &|v, _| Some(v.log2())),
            "log10" => self.map(arg(0)?, &|v, _| Some(v.log10())),
            "sgn" => self.map(arg(0)?, &|v, _| Some(if v == 0.0 || v.is_nan() { v } else { v.signum() })),
            "sin" => self.map(arg(0)?, &|v, _| Some(v.sin())),
            "cos" => self.map(arg(0)?, &|v, _| Some(v.cos())),
            "tan" => self.map(arg(0)?, &|v, _| Some(v.tan())),
            "asin" => self.map(arg(0)?, &|v, _| Some(v.asin())),
            "acos" => self.map(arg(0)?, &|v, _| Some(v.acos())),
            "atan" => self.map(arg(0)?, &|v, _| Some(v.atan())),
            "sinh" => self.map(arg(0)?, &|v, _| Some(v.sinh())),
            "cosh" => self.map(arg(0)?, &|v, _| Some(v.cosh())),
            "tanh" => self.map(arg(0)?, &|v, _| Some(v.tanh())),
            "asinh" => self.map(arg(0)?, &|v, _| Some(v.asinh())),
            "acosh" => self.map(arg(0)?, &|v, _| Some(v.acosh())),
            "atanh" => self.map(arg(0)?, &|v, _| Some(v.atanh())),
            "deg" => self.map(arg(0)?, &|v, _| Some(v * 180.0 / std::f64::consts::PI)),
            "rad" => self.map(arg(0)?, &|v, _| Some(v * std::f64::consts::PI / 180.0)),
            "round" => {
                let to = scalar_arg(1, 1.0)?;
                self.map(arg(0)?, &|v, i| Some((v / to[i] + 0.5).floor() * to[i]))
            }
            "clamp" => {
                let (lo, hi) = (self.scalars(arg(1)?)?, self.scalars(arg(2)?)?);
                // A minimum above the maximum gives an empty vector.
                self.map(arg(0)?, &|v, i| (lo[i] <= hi[i]).then(|| v.max(lo[i]).min(hi[i])))
            }
            "clamp_min" => {
                let lo = self.scalars(arg(1)?)?;
                self.map(arg(0)?, &|v, i| Some(v.max(lo[i])))
            }
            "clamp_max" => {
                let hi = self.scalars(arg(1)?)?;
                self.map(arg(0)?, &|v, i| Some(v.min(hi[i])))
            }
            "time" => Ok(Steps::Scalar((0..self.grid.len).map(|i| self.grid.at(i) as f64 / 1000.0).collect())),
            "vector" => {
                let values = self.scalars(arg(0)?)?;
                let points = values.into_iter().enumerate().map(|(i, v)| (self.grid.at(i), v)).collect();
                Ok(Steps::Vector(vec![(Labels::default(), points)]))
            }
            "scalar" => {
                let rows = self.vectors(arg(0)?)?;
                let values = self
                    .by_instant(&rows)
                    .into_iter()
                    .map(|at| if let [(_, v)] = at.as_slice() { *v } else { f64::NAN })
                    .collect();
                Ok(Steps::Scalar(values))
            }
            "absent" => {
                let rows = self.vectors(arg(0)?)?;
                let labels = match arg(0)? {
                    Expr::VectorSelector(vs) => absent_labels(vs),
                    _ => Labels::default(),
                };
                let empty: Vec<bool> = self.by_instant(&rows).iter().map(Vec::is_empty).collect();
                Ok(self.absent(labels, &empty))
            }
            "absent_over_time" => {
                let Windows { spans, .. } = self.windows_of(arg(0)?)?;
                let labels = match arg(0)? {
                    Expr::MatrixSelector(ms) => absent_labels(&ms.vs),
                    _ => Labels::default(),
                };
                let empty: Vec<bool> =
                    (0..self.grid.len).map(|i| spans.iter().all(|row| row[i].0 == row[i].1)).collect();
                Ok(self.absent(labels, &empty))
            }
            "changes" => over_time(
                &|s| s.windows(2).filter(|w| w[0].1 != w[1].1 && !(w[0].1.is_nan() && w[1].1.is_nan())).count() as f64,
                false,
            ),
            "resets" => over_time(&|s| s.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64, false),
            "deriv" => {
                self.over_range(arg(0)?, false, &|s, _, _, _| (s.len() >= 2).then(|| linear_regression(s, s[0].0).0))
            }
            "predict_linear" => {
                let seconds = self.scalars(arg(1)?)?;
                self.over_range(arg(0)?, false, &|s, _, _, i| {
                    (s.len() >= 2).then(|| {
                        let (slope, intercept) = linear_regression(s, self.grid.at(i));
                        slope * seconds[i] + intercept
                    })
                })
            }
            "stdvar_over_time" => over_time(&|s| variance(s.iter().map(|p| p.1)), false),
            "stddev_over_time" => over_time(&|s| variance(s.iter().map(|p| p.1)).sqrt(), false),
            "quantile_over_time" => {
                let q = self.scalars(arg(0)?)?;
                self.over_range(arg(1)?, false, &|s, _, _, i| Some(quantile(q[i], s.iter().map(|p| p.1).collect())))
            }
            "holt_winters" => {
                let (sf, tf) = (self.scalars(arg(1)?)?, self.scalars(arg(2)?)?);
                for (name, factors) in [("smoothing", &sf), ("trend", &tf)] {
                    if let Some(f) = factors.iter().find(|f| !(**f > 0.0 && **f < 1.0)) {
                        return Err(QueryError::BadData(format!(
                            "invalid {name} factor. Expected: 0 < {}f < 1, got: {f}",
                            &name[..1]
                        )));
                    }
                }
                self.over_range(arg(0)?, false, &|s, _, _, i| holt_winters(s, sf[i], tf[i]))
            }
            "timestamp" => {
                let mut inner = arg(0)?;
                while let Expr::Paren(p) = inner {
                    inner = &p.expr;
                }
                // A selector's samples keep their own times; anything computed is at
                // the instant it was evaluated.
                let rows = match inner {
                    Expr::VectorSelector(vs) => match self.selector(vs, true)? {
                        Steps::Vector(rows) => rows,
                        _ => Vec::new(),
                    },
                    other => self
                        .vectors(other)?
                        .into_iter()
                        .map(|(l, points)| (l, points.into_iter().map(|(t, _)| (t, t as f64 / 1000.0)).collect()))
                        .collect(),
                };
                Ok(Steps::Vector(rows.into_iter().map(|(l, points)| (drop_name(&l), points)).collect()))
            }
            "sort" | "sort_desc" => {
                let mut rows = self.vectors(arg(0)?)?;
                // Only an instant query's answer has an order; NaN sorts last both ways.
                if self.grid.len == 1 {
                    let value = |row: &Series| row.1.first().map_or(f64::NAN, |p| p.1);
                    rows.sort_by(|a, b| {
                        let (x, y) = (value(a), value(b));
                        match (x.is_nan(), y.is_nan()) {
                            (false, false) if name == "sort" => x.total_cmp(&y),
                            (false, false) => y.total_cmp(&x),
                            (nan_x, nan_y) => nan_x.cmp(&nan_y),
                        }
                    });
                }
                Ok(Steps::Vector(rows))
            }
            "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year" | "days_in_month" | "month" | "year" => {
                self.date(name, args.first().map(|b| b.as_ref()))
            }
            "pi" => Ok(Steps::Scalar(vec![std::f64::consts::PI; self.grid.len])),
            "histogram_quantile" => {
                let q = self.scalars(arg(0)?)?;
                let rows = self.vectors(arg(1)?)?;
                let le_label = ["le".to_string()];
                // Each bucket's series: its histogram (labels without `le` and the name) and bound.
                let buckets: Vec<Option<(Labels, f64)>> = rows
                    .iter()
                    .map(|(l, _)| {
                        let le = l.get("le").and_then(mobius_series::parse_le)?;
                        Some((l.except(&le_label), le))
                    })
                    .collect();
                let instants = self
                    .by_instant(&rows)
                    .into_iter()
                    .enumerate()
                    .map(|(i, at)| {
                        let mut groups: BTreeMap<&Labels, Vec<(f64, f64)>> = BTreeMap::new();
                        for (row, v) in at {
                            if let Some((key, le)) = &buckets[row] {
                                groups.entry(key).or_default().push((*le, v));
                            }
                        }
                        groups.into_iter().map(|(l, b)| (l.clone(), bucket_quantile(q[i], b))).collect()
                    })
                    .collect();
                Ok(self.rows_of_instants(instants))
            }
            "label_replace" | "label_join" => self.relabel(name, args),
            other => Err(unsupported(format!("the function {other}()"))),
        }
    }

    /// `count_values("label", v)`: per group and instant, how many members have each
    /// value, the value (as Go formats it) in `label`.
    fn count_values(&self, agg: &parser::AggregateExpr, rows: Vec<Series>) -> Result<Steps, QueryError> {
        let Some(Expr::StringLiteral(label)) = agg.param.as_deref() else {
            return Err(QueryError::BadData("count_values(): the parameter must be a string".into()));
        };
        let label = label.val.clone();
        if !valid_label_name(&label) {
            return Err(QueryError::BadData(format!("invalid label name {label:?}")));
        }
        let mut counts: BTreeMap<Labels, Vec<u32>> = BTreeMap::new();
        for (labels, points) in rows {
            let group = group_key(agg, &labels);
            for (t, v) in points {
                let value = match v {
                    v if v.is_nan() => "NaN".to_string(),
                    v if v == f64::INFINITY => "+Inf".to_string(),
                    v if v == f64::NEG_INFINITY => "-Inf".to_string(),
                    v => v.to_string(),
                };
                let key = group.with(&label, value);
                counts.entry(key).or_insert_with(|| vec![0; self.grid.len])[self.grid.index(t)] += 1;
            }
        }
        let rows = counts
            .into_iter()
            .map(|(labels, n)| {
                let points =
                    n.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| (self.grid.at(i), f64::from(*n)));
                (labels, points.collect())
            })
            .collect();
        Ok(Steps::Vector(rows))
    }

    /// `label_replace(v, dst, replacement, src, regex)` and `label_join(v, dst, sep,
    /// src...)`: each series' labels rewritten, its points and metric name kept.
    fn relabel(&self, name: &str, args: &[Box<Expr>]) -> Result<Steps, QueryError> {
        let text = |i: usize| match args.get(i).map(|b| b.as_ref()) {
            Some(Expr::StringLiteral(s)) => Ok(s.val.clone()),
            _ => Err(QueryError::BadData(format!("{name}(): argument {} must be a string", i + 1))),
        };
        let dst = text(1)?;
        if !valid_label_name(&dst) {
            return Err(QueryError::BadData(format!("invalid destination label name in {name}(): {dst}")));
        }
        // The destination's new value for a series; `None` leaves the series as it is.
        type NewValue = Box<dyn Fn(&Labels) -> Option<String>>;
        let value: NewValue = if name == "label_replace" {
            let (replacement, src, pattern) = (text(2)?, text(3)?, text(4)?);
            let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|_| {
                QueryError::BadData(format!("invalid regular expression in label_replace(): {pattern}"))
            })?;
            Box::new(move |l: &Labels| {
                let captures = re.captures(l.get(&src).unwrap_or(""))?;
                let mut out = String::new();
                captures.expand(&replacement, &mut out);
                Some(out)
            })
        } else {
            let sep = text(2)?;
            let sources = (3..args.len()).map(text).collect::<Result<Vec<_>, _>>()?;
            Box::new(move |l: &Labels| {
                Some(sources.iter().map(|s| l.get(s).unwrap_or("")).collect::<Vec<_>>().join(&sep))
            })
        };
        let arg = args.first().ok_or_else(|| QueryError::BadData(format!("{name}: missing argument")))?;
        let mut merged: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for (labels, points) in self.vectors(arg)? {
            let labels = match value(&labels) {
                // An empty value removes the label.
                Some(v) => labels.with(&dst, v),
                None => labels,
            };
            let row = merged.entry(labels).or_default();
            if points.iter().any(|(t, _)| row.binary_search_by_key(t, |p| p.0).is_ok()) {
                return Err(QueryError::Execution("vector cannot contain metrics with the same labelset".into()));
            }
            row.extend(points);
            row.sort_by_key(|p| p.0);
        }
        Ok(Steps::Vector(merged.into_iter().collect()))
    }

    fn aggregate(&self, agg: &parser::AggregateExpr) -> Result<Steps, QueryError> {
        let op = agg.op.to_string();
        let rows = self.vectors(&agg.expr)?;
        if op == "count_values" {
            return self.count_values(agg, rows);
        }
        let param = match &agg.param {
            Some(p) => Some(self.scalars(p)?),
            None => None,
        };
        // Each row's group, worked out once.
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut keys: Vec<Labels> = Vec::new();
        let mut group_of_row = Vec::with_capacity(rows.len());
        for (labels, _) in &rows {
            let key = group_key(agg, labels);
            let next = keys.len();
            let group = *index.entry(key.clone()).or_insert(next);
            if group == next {
                keys.push(key);
            }
            group_of_row.push(group);
        }
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
        if matches!(op.as_str(), "sum" | "avg" | "count" | "group" | "min" | "max") {
            // Folded along each series: per group, one accumulator per instant.
            let len = self.grid.len;
            let mut acc = vec![0.0f64; keys.len() * len];
            let mut count = vec![0u32; keys.len() * len];
            for ((_, points), group) in rows.iter().zip(&group_of_row) {
                for (t, v) in points {
                    let k = group * len + self.grid.index(*t);
                    let (a, v) = (acc[k], *v);
                    acc[k] = if count[k] == 0 {
                        v
                    } else {
                        match op.as_str() {
                            "min" if a.is_nan() || v < a => v,
                            "max" if a.is_nan() || v > a => v,
                            "min" | "max" => a,
                            _ => a + v,
                        }
                    };
                    count[k] += 1;
                }
            }
            let mut out = Vec::with_capacity(keys.len());
            for group in order {
                let points: Vec<(i64, f64)> = (0..len)
                    .filter(|i| count[group * len + i] > 0)
                    .map(|i| {
                        let (a, n) = (acc[group * len + i], f64::from(count[group * len + i]));
                        let value = match op.as_str() {
                            "avg" => a / n,
                            "count" => n,
                            "group" => 1.0,
                            _ => a,
                        };
                        (self.grid.at(i), value)
                    })
                    .collect();
                out.push((keys[group].clone(), points));
            }
            return Ok(Steps::Vector(out));
        }
        if !matches!(op.as_str(), "stddev" | "stdvar" | "topk" | "bottomk" | "quantile") {
            return Err(unsupported(format!("the aggregation {op}")));
        }
        // The rest need every member's value at an instant.
        let mut instants = Vec::with_capacity(self.grid.len);
        for (i, at) in self.by_instant(&rows).into_iter().enumerate() {
            let mut members: Vec<Vec<(usize, f64)>> = vec![Vec::new(); keys.len()];
            for (row, v) in at {
                members[group_of_row[row]].push((row, v));
            }
            let p = param.as_ref().map_or(f64::NAN, |p| p[i]);
            let mut vector = Vec::new();
            for &group in &order {
                let mut m = std::mem::take(&mut members[group]);
                if m.is_empty() {
                    continue;
                }
                let value = match op.as_str() {
                    "stddev" => variance(m.iter().map(|x| x.1)).sqrt(),
                    "stdvar" => variance(m.iter().map(|x| x.1)),
                    "quantile" => quantile(p, m.iter().map(|x| x.1).collect()),
                    _ => {
                        // topk and bottomk keep their members' labels.
                        if p < 1.0 || p.is_nan() {
                            continue;
                        }
                        m.sort_by(|a, b| {
                            let ord = a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal);
                            if op == "topk" {
                                ord.reverse()
                            } else {
                                ord
                            }
                        });
                        vector.extend(m.into_iter().take(p as usize).map(|(row, v)| (rows[row].0.clone(), v)));
                        continue;
                    }
                };
                vector.push((keys[group].clone(), value));
            }
            instants.push(vector);
        }
        Ok(self.rows_of_instants(instants))
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Steps, QueryError> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let comparison = b.op.is_comparison_operator();
        let (lhs, rhs) = (self.eval(&b.lhs)?, self.eval(&b.rhs)?);
        // One value of a vector/scalar operation: `None` drops the point; a filtering
        // comparison keeps the vector's value.
        let combine = |x: f64, s: f64, scalar_left: bool| -> Option<f64> {
            let (a, c) = if scalar_left { (s, x) } else { (x, s) };
            if comparison {
                let keep = compare(&op, a, c);
                if return_bool {
                    Some(f64::from(u8::from(keep)))
                } else {
                    keep.then_some(x)
                }
            } else {
                apply(&op, a, c)
            }
        };
        let vector_scalar = |rows: Vec<Series>, s: Vec<f64>, scalar_left: bool| {
            let mut out = Vec::with_capacity(rows.len());
            for (labels, points) in rows {
                let points: Vec<(i64, f64)> = points
                    .into_iter()
                    .filter_map(|(t, x)| combine(x, s[self.grid.index(t)], scalar_left).map(|r| (t, r)))
                    .collect();
                if !points.is_empty() {
                    // A filtering comparison keeps the metric name.
                    let labels = if comparison && !return_bool { labels } else { drop_name(&labels) };
                    out.push((labels, points));
                }
            }
            Steps::Vector(out)
        };
        match (lhs, rhs) {
            (Steps::Scalar(a), Steps::Scalar(c)) => Ok(Steps::Scalar(
                a.into_iter()
                    .zip(c)
                    .map(|(a, c)| {
                        if comparison {
                            f64::from(u8::from(compare(&op, a, c)))
                        } else {
                            apply(&op, a, c).unwrap_or(f64::NAN)
                        }
                    })
                    .collect(),
            )),
            (Steps::Vector(v), Steps::Scalar(s)) => Ok(vector_scalar(v, s, false)),
            (Steps::Scalar(s), Steps::Vector(v)) => Ok(vector_scalar(v, s, true)),
            (Steps::Vector(l), Steps::Vector(r)) => {
                let matching = Matching::new(b, &op, comparison, return_bool, &l, &r);
                let (left, right) = (self.by_instant(&l), self.by_instant(&r));
                let instants =
                    left.iter().zip(&right).map(|(a, c)| matching.apply(a, c)).collect::<Result<Vec<_>, _>>()?;
                Ok(self.rows_of_instants(instants))
            }
            (a, c) => Err(QueryError::BadData(format!("binary {op} between {} and {}", a.type_name(), c.type_name()))),
        }
    }
}

/// A binary operation between two vectors, with each series' matching signature and
/// name-less labels worked out once.
struct Matching<'a> {
    b: &'a BinaryExpr,
    op: &'a str,
    comparison: bool,
    return_bool: bool,
    left: Side,
    right: Side,
}

/// Per row of one operand: its labels, its signature and its labels without the name.
struct Side {
    labels: Vec<Labels>,
    signatures: Vec<Labels>,
    nameless: Vec<Labels>,
}

impl<'a> Matching<'a> {
    fn new(
        b: &'a BinaryExpr,
        op: &'a str,
        comparison: bool,
        return_bool: bool,
        lhs: &[Series],
        rhs: &[Series],
    ) -> Matching<'a> {
        let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
        let side = |rows: &[Series]| {
            let labels: Vec<Labels> = rows.iter().map(|(l, _)| l.clone()).collect();
            let nameless: Vec<Labels> = labels.iter().map(drop_name).collect();
            let signatures = labels
                .iter()
                .zip(&nameless)
                .map(|(l, nameless)| match matching {
                    Some(LabelModifier::Include(on)) => l.only(&on.labels),
                    Some(LabelModifier::Exclude(ignoring)) => l.except(&ignoring.labels),
                    None => nameless.clone(),
                })
                .collect();
            Side { labels, signatures, nameless }
        };
        Matching { b, op, comparison, return_bool, left: side(lhs), right: side(rhs) }
    }

    /// The operation at one instant.
    fn apply(&self, lhs: &Instant, rhs: &Instant) -> Result<Vec<(Labels, f64)>, QueryError> {
        let modifier = self.b.modifier.as_ref();
        let matching = modifier.and_then(|m| m.matching.as_ref());
        let card = modifier.map(|m| &m.card);
        let (left, right) = (&self.left, &self.right);
        if self.b.op.is_set_operator() {
            let right_signatures: HashSet<&Labels> = rhs.iter().map(|(r, _)| &right.signatures[*r]).collect();
            let own = |rows: &Instant, side: &Side| -> Vec<(Labels, f64)> {
                rows.iter().map(|(r, v)| (side.labels[*r].clone(), *v)).collect()
            };
            return Ok(match self.op {
                "and" => own(lhs, left)
                    .into_iter()
                    .zip(lhs)
                    .filter(|(_, (r, _))| right_signatures.contains(&left.signatures[*r]))
                    .map(|(x, _)| x)
                    .collect(),
                "unless" => own(lhs, left)
                    .into_iter()
                    .zip(lhs)
                    .filter(|(_, (r, _))| !right_signatures.contains(&left.signatures[*r]))
                    .map(|(x, _)| x)
                    .collect(),
                _ => {
                    let left_signatures: HashSet<&Labels> = lhs.iter().map(|(r, _)| &left.signatures[*r]).collect();
                    let mut out = own(lhs, left);
                    out.extend(
                        rhs.iter()
                            .filter(|(r, _)| !left_signatures.contains(&right.signatures[*r]))
                            .map(|(r, v)| (right.labels[*r].clone(), *v)),
                    );
                    out
                }
            });
        }
        // The "one" side is indexed by signature; each sample of the "many" side finds its match.
        let ((many, many_side), (one, one_side), swapped, include) = match card {
            Some(VectorMatchCardinality::OneToMany(include)) => ((rhs, right), (lhs, left), true, &include.labels[..]),
            Some(VectorMatchCardinality::ManyToOne(include)) => ((lhs, left), (rhs, right), false, &include.labels[..]),
            _ => ((lhs, left), (rhs, right), false, &[][..]),
        };
        let one_to_one =
            !matches!(card, Some(VectorMatchCardinality::OneToMany(_) | VectorMatchCardinality::ManyToOne(_)));
        let mut index: HashMap<&Labels, (usize, f64)> = HashMap::new();
        for (r, v) in one {
            if index.insert(&one_side.signatures[*r], (*r, *v)).is_some() {
                return Err(QueryError::Execution(
                    "found duplicate series for the match group on the right hand-side of the operation".into(),
                ));
            }
        }
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (r, v) in many {
            let signature = &many_side.signatures[*r];
            let Some((other, w)) = index.get(signature) else { continue };
            if one_to_one && !seen.insert(signature) {
                return Err(QueryError::Execution(
                    "found duplicate series for the match group on the left hand-side of the operation".into(),
                ));
            }
            let (a, c) = if swapped { (*w, *v) } else { (*v, *w) };
            let value = if self.comparison {
                let keep = compare(self.op, a, c);
                if self.return_bool {
                    f64::from(u8::from(keep))
                } else if keep {
                    a
                } else {
                    continue;
                }
            } else {
                match apply(self.op, a, c) {
                    Some(r) => r,
                    None => continue,
                }
            };
            let keep_name = self.comparison && !self.return_bool;
            let base = if keep_name { &many_side.labels[*r] } else { &many_side.nameless[*r] };
            let labels = if one_to_one {
                match matching {
                    Some(LabelModifier::Include(_) | LabelModifier::Exclude(_)) if !keep_name => signature.clone(),
                    _ => base.clone(),
                }
            } else {
                let mut pairs: Vec<(String, String)> = base.iter().map(|(k, v)| (k.into(), v.into())).collect();
                for name in include {
                    pairs.retain(|(k, _)| k != name);
                    if let Some(v) = one_side.labels[*other].get(name) {
                        pairs.push((name.clone(), v.to_string()));
                    }
                }
                Labels::new(pairs)
            };
            out.push((labels, value));
        }
        Ok(out)
    }
}

/// The φ-quantile of sorted values, interpolated as Prometheus' `quantile` does.
/// The labels `absent` gives a selector's answer: those of its equality matchers,
/// except a name that has another matcher too.
fn absent_labels(vs: &VectorSelector) -> Labels {
    let all = &vs.matchers.matchers;
    let pairs = all
        .iter()
        .filter(|m| m.name != METRIC_NAME && matches!(m.op, PMatchOp::Equal))
        .filter(|m| all.iter().filter(|o| o.name == m.name).count() == 1)
        .map(|m| (m.name.clone(), m.value.clone()))
        .collect();
    Labels::new(pairs)
}

/// One step of Neumaier's compensated summation: `(sum, compensation)`.
fn kahan_add(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() { c + ((sum - t) + inc) } else { c + ((inc - t) + sum) };
    (t, c)
}

/// The least-squares line through the samples, times in seconds from `intercept_t`:
/// `(slope per second, value at intercept_t)`. Constant values give slope 0.
fn linear_regression(samples: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let first = samples.first().map_or(f64::NAN, |p| p.1);
    if samples.iter().all(|p| p.1 == first) {
        return if first.is_infinite() { (f64::NAN, f64::NAN) } else { (0.0, first) };
    }
    let n = samples.len() as f64;
    let (mut x, mut y, mut xy, mut x2) = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0));
    for &(t, v) in samples {
        let dx = (t - intercept_t) as f64 / 1000.0;
        x = kahan_add(dx, x.0, x.1);
        y = kahan_add(v, y.0, y.1);
        xy = kahan_add(dx * v, xy.0, xy.1);
        x2 = kahan_add(dx * dx, x2.0, x2.1);
    }
    let (x, y, xy, x2) = (x.0 + x.1, y.0 + y.1, xy.0 + xy.1, x2.0 + x2.1);
    let slope = (xy - x * y / n) / (x2 - x * x / n);
    (slope, y / n - slope * x / n)
}

/// The population variance, by Welford's method with compensated sums.
pub fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut aux) = (0.0, (0.0, 0.0), (0.0, 0.0));
    for v in values {
        count += 1.0;
        let delta = v - (mean.0 + mean.1);
        mean = kahan_add(delta / count, mean.0, mean.1);
        aux = kahan_add(delta * (v - (mean.0 + mean.1)), aux.0, aux.1);
    }
    (aux.0 + aux.1) / count
}

/// Double exponential smoothing: the last smoothed value, from two samples on.
fn holt_winters(samples: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    let [(_, first), (_, second), ..] = samples else { return None };
    let (mut s0, mut s1, mut b) = (0.0, *first, second - first);
    for (i, &(_, v)) in samples.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        (s0, s1) = (s1, sf * v + (1.0 - sf) * (s1 + b));
    }
    Some(s1)
}

/// The `q` quantile of the values, interpolated as Prometheus does; NaN sorts first,
/// as in Prometheus.
pub fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| b.is_nan().cmp(&a.is_nan()).then(a.total_cmp(b)));
    let rank = q * (values.len() - 1) as f64;
    let lower = rank.floor().max(0.0) as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

fn compare(op: &str, a: f64, c: f64) -> bool {
    match op {
        "==" => a == c,
        "!=" => a != c,
        ">" => a > c,
        "<" => a < c,
        ">=" => a >= c,
        "<=" => a <= c,
        _ => false,
    }
}

fn apply(op: &str, a: f64, c: f64) -> Option<f64> {
    Some(match op {
        "+" => a + c,
        "-" => a - c,
        "*" => a * c,
        "/" => a / c,
        "%" => a % c,
        "^" => a.powf(c),
        "atan2" => a.atan2(c),
        _ => return None,
    })
}

/// Prometheus' extrapolated rate, increase and delta over `(start, end]`.
fn extrapolated(samples: &[(i64, f64)], start: i64, end: i64, counter: bool, per_second: bool) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        for pair in samples.windows(2) {
            if pair[1].1 < pair[0].1 {
                result += pair[0].1;
            }
        }
    }
    let mut to_start = (first.0 - start) as f64 / 1000.0;
    let to_end = (end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let average = sampled / (samples.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { average / 2.0 };
    interval += if to_end < threshold { to_end } else { average / 2.0 };
    result *= interval / sampled;
    if per_second {
        result /= (end - start) as f64 / 1000.0;
    }
    Some(result)
}

/// The φ-quantile of cumulative buckets `(upper bound, count)`, as Prometheus computes it.
fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.len() < 2 || buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Counts must not decrease (Prometheus makes them monotonic).
    for i in 1..buckets.len() {
        if buckets[i].1 < buckets[i - 1].1 {
            buckets[i].1 = buckets[i - 1].1;
        }
    }
    let total = buckets[buckets.len() - 1].1;
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let b = buckets.iter().position(|x| x.1 >= rank).unwrap_or(buckets.len() - 1);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end) = (0.0, buckets[b].0);
    let (mut count, mut rank) = (buckets[b].1, rank);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// The labels an aggregation groups a series by (`by`, `without`, or one group).
fn group_key(agg: &parser::AggregateExpr, labels: &Labels) -> Labels {
    match &agg.modifier {
        Some(LabelModifier::Include(by)) => labels.only(&by.labels),
        Some(LabelModifier::Exclude(without)) => labels.except(&without.labels),
        None => Labels::default(),
    }
}
