//! PromQL evaluation over the store, with Prometheus' semantics: expressions parsed by
//! the `promql-parser` crate; instant vectors look back 5 minutes and stop at
//! staleness markers; `rate` and friends extrapolate as Prometheus 2.x does.

use crate::db::Db;
use crate::labels::{Labels, MatchOp, Matcher, METRIC_NAME};
use crate::scrape::is_stale;
use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
pub use promql_parser::parser::Expr;
use promql_parser::parser::{self, BinaryExpr, LabelModifier, VectorMatchCardinality, VectorSelector};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

/// A series with its samples `(milliseconds, value)`.
pub type Series = (Labels, Vec<(i64, f64)>);
/// A range vector at one instant, with the range's bounds `(start, end]`.
type RangeVector = (Vec<Series>, i64, i64);

/// How far back an instant vector looks for a sample (Prometheus' default).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// A query that cannot be answered, with Prometheus' error type.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    BadData(String),
    #[error("{0}")]
    Execution(String),
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

pub fn parse(query: &str) -> Result<Expr, QueryError> {
    parser::parse(query).map_err(|e| QueryError::BadData(format!("invalid parameter \"query\": {e}")))
}

fn unsupported(what: impl std::fmt::Display) -> QueryError {
    QueryError::BadData(format!("{what} is not supported by Mobius yet"))
}

/// Evaluates `expr` at `t` (milliseconds).
pub fn instant(db: &Db, expr: &Expr, t: i64) -> Result<Value, QueryError> {
    Eval { db, cache: None }.eval(expr, t)
}

/// Evaluates `expr` at every step from `start` to `end`: one series per label set.
pub fn range(db: &Db, expr: &Expr, start: i64, end: i64, step: i64) -> Result<Vec<Series>, QueryError> {
    if step <= 0 {
        return Err(QueryError::BadData("zero or negative query resolution step widths are not accepted".into()));
    }
    if (end - start) / step > 11_000 {
        return Err(QueryError::BadData("exceeded maximum resolution of 11,000 points per timeseries".into()));
    }
    let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    // Each selector reads the store once, up to `end`; every step then takes its window
    // from what was read.
    let eval = Eval { db, cache: Some(Cache { until: end, selections: RefCell::new(HashMap::new()) }) };
    let mut t = start;
    while t <= end {
        match eval.eval(expr, t)? {
            Value::Scalar(v) => out.entry(Labels::default()).or_default().push((t, v)),
            Value::Vector(samples) => {
                for (labels, v) in samples {
                    out.entry(labels).or_default().push((t, v));
                }
            }
            other => {
                return Err(QueryError::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    other.type_name()
                )))
            }
        }
        t += step;
    }
    Ok(out.into_iter().collect())
}

type PointsFn = dyn Fn(&[(i64, f64)]) -> f64;

struct Eval<'a> {
    db: &'a Db,
    /// For range queries: what each matcher set selected, from its first window to the end.
    cache: Option<Cache>,
}

struct Cache {
    until: i64,
    selections: RefCell<HashMap<String, (i64, Vec<Series>)>>,
}

impl Eval<'_> {
    /// The store's series for `set` with samples in `[mint, maxt]`.
    fn select(&self, set: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let Some(cache) = &self.cache else { return self.db.select(set, mint, maxt) };
        let key = format!("{set:?}");
        let mut selections = cache.selections.borrow_mut();
        let fresh = selections.get(&key).is_some_and(|(lo, _)| *lo <= mint) && maxt <= cache.until;
        if !fresh {
            let hi = maxt.max(cache.until);
            selections.insert(key.clone(), (mint, self.db.select(set, mint, hi)));
        }
        let Some((_, series)) = selections.get(&key) else { return Vec::new() };
        series
            .iter()
            .filter_map(|(labels, points)| {
                let from = points.partition_point(|(t, _)| *t < mint);
                let to = points.partition_point(|(t, _)| *t <= maxt);
                (from < to).then(|| (labels.clone(), points[from..to].to_vec()))
            })
            .collect()
    }
}

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

fn offset_ms(vs: &VectorSelector) -> Result<i64, QueryError> {
    if vs.at.is_some() {
        return Err(unsupported("the @ modifier"));
    }
    Ok(match &vs.offset {
        Some(parser::Offset::Pos(d)) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Some(parser::Offset::Neg(d)) => -i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        None => 0,
    })
}

fn drop_name(labels: &Labels) -> Labels {
    labels.without(METRIC_NAME)
}

impl Eval<'_> {
    /// Series of a selector with samples in `(mint, maxt]`, staleness markers dropped.
    fn series(&self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<Series>, QueryError> {
        let mut sets = matchers(vs)?;
        if sets.len() == 1 {
            // One matcher set: the store's answer is already one entry per series, sorted.
            return Ok(self.select(&sets.remove(0), mint + 1, maxt));
        }
        let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for set in sets {
            for (labels, samples) in self.select(&set, mint + 1, maxt) {
                out.insert(labels, samples);
            }
        }
        Ok(out.into_iter().collect())
    }

    fn eval(&self, expr: &Expr, t: i64) -> Result<Value, QueryError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(samples) => {
                    Ok(Value::Vector(samples.into_iter().map(|(l, v)| (drop_name(&l), -v)).collect()))
                }
                other => Err(QueryError::BadData(format!("unary minus on a {}", other.type_name()))),
            },
            Expr::VectorSelector(vs) => {
                let at = t - offset_ms(vs)?;
                let mut out = Vec::new();
                // Prometheus 2.x: the lookback window includes its start.
                for (labels, samples) in self.series(vs, at - LOOKBACK_MS - 1, at)? {
                    if let Some((_, v)) = samples.last() {
                        if !is_stale(*v) {
                            out.push((labels, *v));
                        }
                    }
                }
                Ok(Value::Vector(out))
            }
            Expr::MatrixSelector(ms) => {
                let at = t - offset_ms(&ms.vs)?;
                let range = i64::try_from(ms.range.as_millis()).unwrap_or(i64::MAX);
                // Prometheus 2.x (the Debian package): `[t - range, t]`, both ends included.
                let mut out = self.series(&ms.vs, at - range - 1, at)?;
                for (_, samples) in &mut out {
                    samples.retain(|(_, v)| !is_stale(*v));
                }
                out.retain(|(_, s)| !s.is_empty());
                Ok(Value::Matrix(out))
            }
            Expr::Call(call) => self.call(call, t),
            Expr::Aggregate(agg) => self.aggregate(agg, t),
            Expr::Binary(b) => self.binary(b, t),
            Expr::Subquery(_) => Err(unsupported("a subquery")),
            Expr::Extension(_) => Err(unsupported("an extension")),
        }
    }

    fn vector(&self, expr: &Expr, t: i64) -> Result<Vec<(Labels, f64)>, QueryError> {
        match self.eval(expr, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(QueryError::BadData(format!("expected an instant vector, got {}", other.type_name()))),
        }
    }

    fn scalar(&self, expr: &Expr, t: i64) -> Result<f64, QueryError> {
        match self.eval(expr, t)? {
            Value::Scalar(v) => Ok(v),
            other => Err(QueryError::BadData(format!("expected a scalar, got {}", other.type_name()))),
        }
    }

    fn matrix(&self, expr: &Expr, t: i64) -> Result<RangeVector, QueryError> {
        let Expr::MatrixSelector(ms) = expr else {
            return Err(QueryError::BadData("expected a range vector".into()));
        };
        let range = i64::try_from(ms.range.as_millis()).unwrap_or(i64::MAX);
        let end = t - offset_ms(&ms.vs)?;
        match self.eval(expr, t)? {
            Value::Matrix(m) => Ok((m, end - range, end)),
            _ => Err(QueryError::BadData("expected a range vector".into())),
        }
    }

    fn call(&self, call: &parser::Call, t: i64) -> Result<Value, QueryError> {
        let name = call.func.name;
        let args = &call.args.args;
        let arg = |i: usize| {
            args.get(i).map(|b| b.as_ref()).ok_or_else(|| QueryError::BadData(format!("{name}: missing argument")))
        };
        let over_time = |f: &PointsFn, keep_name: bool| -> Result<Value, QueryError> {
            let (m, _, _) = self.matrix(arg(0)?, t)?;
            Ok(Value::Vector(m.into_iter().map(|(l, s)| (if keep_name { l } else { drop_name(&l) }, f(&s))).collect()))
        };
        let map = |f: &dyn Fn(f64) -> f64| -> Result<Value, QueryError> {
            Ok(Value::Vector(self.vector(arg(0)?, t)?.into_iter().map(|(l, v)| (drop_name(&l), f(v))).collect()))
        };
        match name {
            "rate" | "increase" | "delta" => {
                let (m, start, end) = self.matrix(arg(0)?, t)?;
                let out = m
                    .into_iter()
                    .filter_map(|(l, s)| {
                        extrapolated(&s, start, end, name != "delta", name == "rate").map(|v| (drop_name(&l), v))
                    })
                    .collect();
                Ok(Value::Vector(out))
            }
            "irate" | "idelta" => {
                let (m, _, _) = self.matrix(arg(0)?, t)?;
                let out = m
                    .into_iter()
                    .filter_map(|(l, s)| {
                        let [.., (t0, v0), (t1, v1)] = s.as_slice() else { return None };
                        let mut dv = v1 - v0;
                        if name == "irate" {
                            if v1 < v0 {
                                dv = *v1;
                            }
                            dv /= (t1 - t0) as f64 / 1000.0;
                        }
                        Some((drop_name(&l), dv))
                    })
                    .collect();
                Ok(Value::Vector(out))
            }
            "avg_over_time" => over_time(&|s| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64, false),
            "sum_over_time" => over_time(&|s| s.iter().map(|p| p.1).sum(), false),
            "min_over_time" => over_time(&|s| s.iter().map(|p| p.1).fold(f64::NAN, f64::min), false),
            "max_over_time" => over_time(&|s| s.iter().map(|p| p.1).fold(f64::NAN, f64::max), false),
            "count_over_time" => over_time(&|s| s.len() as f64, false),
            "last_over_time" => over_time(&|s| s.last().map_or(f64::NAN, |p| p.1), true),
            "present_over_time" => over_time(&|_| 1.0, false),
            "abs" => map(&f64::abs),
            "ceil" => map(&f64::ceil),
            "floor" => map(&f64::floor),
            "round" => {
                let to = match args.get(1) {
                    Some(e) => self.scalar(e, t)?,
                    None => 1.0,
                };
                map(&|v| (v / to + 0.5).floor() * to)
            }
            "clamp" => {
                let (lo, hi) = (self.scalar(arg(1)?, t)?, self.scalar(arg(2)?, t)?);
                if lo > hi {
                    return Ok(Value::Vector(Vec::new()));
                }
                map(&|v| v.max(lo).min(hi))
            }
            "clamp_min" => {
                let lo = self.scalar(arg(1)?, t)?;
                map(&|v| v.max(lo))
            }
            "clamp_max" => {
                let hi = self.scalar(arg(1)?, t)?;
                map(&|v| v.min(hi))
            }
            "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
            "vector" => Ok(Value::Vector(vec![(Labels::default(), self.scalar(arg(0)?, t)?)])),
            "scalar" => {
                let v = self.vector(arg(0)?, t)?;
                Ok(Value::Scalar(if v.len() == 1 { v[0].1 } else { f64::NAN }))
            }
            "absent" => {
                if !self.vector(arg(0)?, t)?.is_empty() {
                    return Ok(Value::Vector(Vec::new()));
                }
                // The labels of equality matchers become the result's.
                let pairs = match arg(0)? {
                    Expr::VectorSelector(vs) => vs
                        .matchers
                        .matchers
                        .iter()
                        .filter(|m| matches!(m.op, PMatchOp::Equal) && m.name != METRIC_NAME)
                        .map(|m| (m.name.clone(), m.value.clone()))
                        .collect(),
                    _ => Vec::new(),
                };
                Ok(Value::Vector(vec![(Labels::new(pairs), 1.0)]))
            }
            "histogram_quantile" => {
                let q = self.scalar(arg(0)?, t)?;
                let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
                for (l, v) in self.vector(arg(1)?, t)? {
                    let Some(le) = l.get("le").and_then(crate::exposition::parse_le) else { continue };
                    let key = Labels::new(
                        l.iter()
                            .filter(|(k, _)| *k != "le" && *k != METRIC_NAME)
                            .map(|(k, v)| (k.into(), v.into()))
                            .collect(),
                    );
                    groups.entry(key).or_default().push((le, v));
                }
                Ok(Value::Vector(groups.into_iter().map(|(l, b)| (l, bucket_quantile(q, b))).collect()))
            }
            other => Err(unsupported(format!("the function {other}()"))),
        }
    }

    fn aggregate(&self, agg: &parser::AggregateExpr, t: i64) -> Result<Value, QueryError> {
        let op = agg.op.to_string();
        let input = self.vector(&agg.expr, t)?;
        let everything = Labels::default();
        let group_of = |l: &Labels| -> Labels {
            match &agg.modifier {
                Some(LabelModifier::Include(by)) => Labels::new(
                    l.iter()
                        .filter(|(k, _)| by.labels.iter().any(|b| b == k))
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect(),
                ),
                Some(LabelModifier::Exclude(without)) => Labels::new(
                    l.iter()
                        .filter(|(k, _)| *k != METRIC_NAME && !without.labels.iter().any(|w| w == k))
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect(),
                ),
                None => everything.clone(),
            }
        };
        let mut groups: BTreeMap<Labels, Vec<(Labels, f64)>> = BTreeMap::new();
        for (l, v) in input {
            groups.entry(group_of(&l)).or_default().push((l, v));
        }
        let param = match &agg.param {
            Some(p) => Some(self.scalar(p, t)?),
            None => None,
        };
        let mut out = Vec::new();
        for (key, members) in groups {
            let values: Vec<f64> = members.iter().map(|m| m.1).collect();
            let n = values.len() as f64;
            let value = match op.as_str() {
                "sum" => values.iter().sum(),
                "avg" => values.iter().sum::<f64>() / n,
                "count" => n,
                "group" => 1.0,
                "min" => values.iter().copied().fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }),
                "max" => values.iter().copied().fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }),
                "stddev" | "stdvar" => {
                    let mean = values.iter().sum::<f64>() / n;
                    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                    if op == "stddev" {
                        var.sqrt()
                    } else {
                        var
                    }
                }
                "topk" | "bottomk" => {
                    let k = param.unwrap_or(0.0);
                    if k < 1.0 {
                        continue;
                    }
                    let mut sorted = members;
                    sorted.sort_by(|a, b| {
                        let ord = a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal);
                        if op == "topk" {
                            ord.reverse()
                        } else {
                            ord
                        }
                    });
                    out.extend(sorted.into_iter().take(k as usize));
                    continue;
                }
                other => return Err(unsupported(format!("the aggregation {other}"))),
            };
            out.push((key, value));
        }
        Ok(Value::Vector(out))
    }

    fn binary(&self, b: &BinaryExpr, t: i64) -> Result<Value, QueryError> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let comparison = b.op.is_comparison_operator();
        let (lhs, rhs) = (self.eval(&b.lhs, t)?, self.eval(&b.rhs, t)?);
        let vector_scalar = |v: Vec<(Labels, f64)>, s: f64, scalar_left: bool| {
            let mut out = Vec::new();
            for (l, x) in v {
                let (a, c) = if scalar_left { (s, x) } else { (x, s) };
                if comparison {
                    let keep = compare(&op, a, c);
                    if return_bool {
                        out.push((drop_name(&l), f64::from(u8::from(keep))));
                    } else if keep {
                        out.push((l, x));
                    }
                } else if let Some(r) = apply(&op, a, c) {
                    out.push((drop_name(&l), r));
                }
            }
            Value::Vector(out)
        };
        match (lhs, rhs) {
            (Value::Scalar(a), Value::Scalar(c)) => Ok(Value::Scalar(if comparison {
                f64::from(u8::from(compare(&op, a, c)))
            } else {
                apply(&op, a, c).unwrap_or(f64::NAN)
            })),
            (Value::Vector(v), Value::Scalar(s)) => Ok(vector_scalar(v, s, false)),
            (Value::Scalar(s), Value::Vector(v)) => Ok(vector_scalar(v, s, true)),
            (Value::Vector(l), Value::Vector(r)) => self.vector_binary(b, &op, comparison, return_bool, l, r),
            (a, c) => Err(QueryError::BadData(format!("binary {op} between {} and {}", a.type_name(), c.type_name()))),
        }
    }

    fn vector_binary(
        &self,
        b: &BinaryExpr,
        op: &str,
        comparison: bool,
        return_bool: bool,
        lhs: Vec<(Labels, f64)>,
        rhs: Vec<(Labels, f64)>,
    ) -> Result<Value, QueryError> {
        let modifier = b.modifier.as_ref();
        let matching = modifier.and_then(|m| m.matching.as_ref());
        let card = modifier.map(|m| &m.card);
        let signature = |l: &Labels| -> Labels {
            match matching {
                Some(LabelModifier::Include(on)) => Labels::new(
                    l.iter()
                        .filter(|(k, _)| on.labels.iter().any(|o| o == k))
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect(),
                ),
                Some(LabelModifier::Exclude(ignoring)) => Labels::new(
                    l.iter()
                        .filter(|(k, _)| *k != METRIC_NAME && !ignoring.labels.iter().any(|i| i == k))
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect(),
                ),
                None => drop_name(l),
            }
        };
        if b.op.is_set_operator() {
            let right: std::collections::HashSet<Labels> = rhs.iter().map(|(l, _)| signature(l)).collect();
            let out: Vec<(Labels, f64)> = match op {
                "and" => lhs.into_iter().filter(|(l, _)| right.contains(&signature(l))).collect(),
                "unless" => lhs.into_iter().filter(|(l, _)| !right.contains(&signature(l))).collect(),
                _ => {
                    let left: std::collections::HashSet<Labels> = lhs.iter().map(|(l, _)| signature(l)).collect();
                    let mut out = lhs;
                    out.extend(rhs.into_iter().filter(|(l, _)| !left.contains(&signature(l))));
                    out
                }
            };
            return Ok(Value::Vector(out));
        }
        // The "one" side is indexed by signature; each sample of the "many" side finds its match.
        let (many, one, swapped, include) = match card {
            Some(VectorMatchCardinality::OneToMany(include)) => (rhs, lhs, true, include.labels.clone()),
            Some(VectorMatchCardinality::ManyToOne(include)) => (lhs, rhs, false, include.labels.clone()),
            _ => (lhs, rhs, false, Vec::new()),
        };
        let one_to_one =
            !matches!(card, Some(VectorMatchCardinality::OneToMany(_) | VectorMatchCardinality::ManyToOne(_)));
        let mut index: HashMap<Labels, (Labels, f64)> = HashMap::new();
        for (l, v) in one {
            let sig = signature(&l);
            if index.insert(sig, (l, v)).is_some() {
                return Err(QueryError::Execution(
                    "found duplicate series for the match group on the right hand-side of the operation".into(),
                ));
            }
        }
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (l, v) in many {
            let sig = signature(&l);
            let Some((other_labels, w)) = index.get(&sig) else { continue };
            if one_to_one && !seen.insert(sig.clone()) {
                return Err(QueryError::Execution(
                    "found duplicate series for the match group on the left hand-side of the operation".into(),
                ));
            }
            let (a, c) = if swapped { (*w, v) } else { (v, *w) };
            let value = if comparison {
                let keep = compare(op, a, c);
                if return_bool {
                    f64::from(u8::from(keep))
                } else if keep {
                    a
                } else {
                    continue;
                }
            } else {
                match apply(op, a, c) {
                    Some(r) => r,
                    None => continue,
                }
            };
            let keep_name = comparison && !return_bool;
            let base = if keep_name { l.clone() } else { drop_name(&l) };
            let labels = if one_to_one {
                match matching {
                    Some(LabelModifier::Include(_)) if !keep_name => sig,
                    Some(LabelModifier::Exclude(_)) if !keep_name => sig,
                    _ => base,
                }
            } else {
                let mut pairs: Vec<(String, String)> = base.iter().map(|(k, v)| (k.into(), v.into())).collect();
                for name in &include {
                    pairs.retain(|(k, _)| k != name);
                    if let Some(v) = other_labels.get(name) {
                        pairs.push((name.clone(), v.to_string()));
                    }
                }
                Labels::new(pairs)
            };
            out.push((labels, value));
        }
        Ok(Value::Vector(out))
    }
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
