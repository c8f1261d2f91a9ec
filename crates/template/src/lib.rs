//! Rule templates as Prometheus expands them: Go's text/template (the `gotmpl` crate)
//! with `$labels`, `$value`, `$externalLabels` and `$externalURL` defined, and the
//! functions rule files use (`humanize`, `humanizeDuration`, `humanizePercentage`,
//! `humanize1024`, `toUpper`, `toLower`, `title`, `match`, `reReplaceAll`, `stripPort`).
//! Alertmanager's notification templates and LogQL's `line_format` add to the same set.
#![forbid(unsafe_code)]

use gotmpl::{MissingKey, Template, TemplateError, Value};
use mobius_series::labels::{Labels, METRIC_NAME};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a rule's label and annotation templates can refer to.
#[derive(Clone, Debug, Default)]
pub struct TemplateData<'a> {
    pub labels: Option<&'a Labels>,
    pub value: f64,
    pub external_labels: &'a [(String, String)],
    pub external_url: &'a str,
}

/// The definitions Prometheus puts before every rule template.
const PRELUDE: &str =
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

fn string_map<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let map: BTreeMap<Arc<str>, Value> = pairs.map(|(k, v)| (Arc::from(k), Value::from(v))).collect();
    Value::from(map)
}

fn float_arg(args: &[Value], name: &str) -> Result<f64, TemplateError> {
    match args.first() {
        Some(Value::Float(v)) => Ok(*v),
        Some(Value::Int(v)) => Ok(*v as f64),
        Some(Value::Uint(v)) => Ok(*v as f64),
        Some(Value::String(s)) => {
            s.trim().parse().map_err(|_| TemplateError::Exec(format!("{name}: `{s}` is not a number")))
        }
        _ => Err(TemplateError::Exec(format!("{name} takes one number"))),
    }
}

pub fn string_args<const N: usize>(args: &[Value], name: &str) -> Result<[String; N], TemplateError> {
    if args.len() != N {
        return Err(TemplateError::Exec(format!("{name} takes {N} arguments")));
    }
    Ok(std::array::from_fn(|i| match &args[i] {
        Value::String(s) => s.to_string(),
        other => other.to_string(),
    }))
}

/// Go's `%.<prec>g`: shortest of fixed or exponent form, trailing zeros removed.
pub fn format_g(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return "0".into();
    }
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= prec as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
}

fn humanize(mut v: f64, base: f64, big: &[&str], small: &[&str]) -> String {
    if v == 0.0 || !v.is_finite() {
        return format_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in big {
            if v.abs() < base {
                break;
            }
            prefix = p;
            v /= base;
        }
    } else {
        for p in small {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= base;
        }
    }
    format!("{}{prefix}", format_g(v, 4))
}

/// Prometheus' `humanizeDuration` of seconds.
pub fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return format_g(v, 4);
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let whole = v.abs() as i64;
        let (days, hours, minutes, seconds) = (whole / 86_400, whole / 3600 % 24, whole / 60 % 60, whole % 60);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", format_g(v.abs(), 4))
        };
    }
    format!("{}s", humanize(v, 1000.0, &[], &["m", "u", "n", "p", "f", "a", "z", "y"]))
}

fn template(name: &str, text: &str) -> Result<Template, TemplateError> {
    with_functions(Template::new(name).missing_key(MissingKey::ZeroValue)).parse(&format!("{PRELUDE}{text}"))
}

/// The functions Prometheus' rule templates and Alertmanager's notification templates
/// share: `humanize*`, `toUpper`, `toLower`, `title`, `match`, `reReplaceAll`, `stripPort`.
pub fn with_functions(t: Template) -> Template {
    t.func("humanize", |a| {
        Ok(humanize(
            float_arg(a, "humanize")?,
            1000.0,
            &["k", "M", "G", "T", "P", "E", "Z", "Y"],
            &["m", "u", "n", "p", "f", "a", "z", "y"],
        )
        .into())
    })
    .func("humanize1024", |a| {
        let v = float_arg(a, "humanize1024")?;
        if v.abs() <= 1.0 || !v.is_finite() {
            return Ok(format_g(v, 4).into());
        }
        Ok(humanize(v, 1024.0, &["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"], &[]).into())
    })
    .func("humanizeDuration", |a| Ok(humanize_duration(float_arg(a, "humanizeDuration")?).into()))
    .func("humanizePercentage", |a| Ok(format!("{}%", format_g(float_arg(a, "humanizePercentage")? * 100.0, 4)).into()))
    .func("toUpper", |a| Ok(string_args::<1>(a, "toUpper")?[0].to_uppercase().into()))
    .func("toLower", |a| Ok(string_args::<1>(a, "toLower")?[0].to_lowercase().into()))
    .func("title", |a| {
        let [s] = string_args::<1>(a, "title")?;
        let mut out = String::with_capacity(s.len());
        let mut start = true;
        for c in s.chars() {
            if start && c.is_alphabetic() {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            start = !c.is_alphanumeric() && c != '_' && c != '\'';
        }
        Ok(out.into())
    })
    .func("match", |a| {
        let [pattern, text] = string_args::<2>(a, "match")?;
        let re = regex::Regex::new(&pattern).map_err(|e| TemplateError::Exec(e.to_string()))?;
        Ok(Value::Bool(re.is_match(&text)))
    })
    .func("reReplaceAll", |a| {
        let [pattern, replacement, text] = string_args::<3>(a, "reReplaceAll")?;
        let re = regex::Regex::new(&pattern).map_err(|e| TemplateError::Exec(e.to_string()))?;
        Ok(re.replace_all(&text, replacement.as_str()).into_owned().into())
    })
    .func("stripPort", |a| {
        let [host] = string_args::<1>(a, "stripPort")?;
        let stripped = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
                h.trim_start_matches('[').trim_end_matches(']').to_string()
            }
            _ => host,
        };
        Ok(stripped.into())
    })
}

/// Whether `text` parses as a rule template (checked when rule files are read).
pub fn check(text: &str) -> Result<(), gotmpl::TemplateError> {
    template("check", text).map(|_| ())
}

/// Expands `text`; on an error the message says what went wrong, as Prometheus puts
/// `<error expanding template: ...>` in place of the annotation.
pub fn expand(name: &str, text: &str, data: &TemplateData) -> Result<String, gotmpl::TemplateError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let labels = data
        .labels
        .map_or_else(|| string_map(std::iter::empty()), |l| string_map(l.iter().filter(|(k, _)| *k != METRIC_NAME)));
    let data = Value::from_entries([
        ("Labels".to_string(), labels),
        ("ExternalLabels".to_string(), string_map(data.external_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))),
        ("ExternalURL".to_string(), Value::from(data.external_url)),
        ("Value".to_string(), Value::Float(data.value)),
    ]);
    // Labels are strings in Prometheus, so an absent one prints empty, where a Go
    // template over untyped values (as `gotmpl`'s are) prints `<no value>`.
    template(name, text).and_then(|t| t.execute_to_string(&data)).map(|s| s.replace("<no value>", ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, value: f64) -> String {
        let labels = Labels::from_pairs(&[("__name__", "up"), ("instance", "db:9100"), ("job", "node")]);
        let data = TemplateData { labels: Some(&labels), value, ..Default::default() };
        expand("t", text, &data).unwrap()
    }

    #[test]
    fn labels_and_value_expand_as_in_prometheus() {
        assert_eq!(run("{{ $labels.instance }} of {{ $labels.job }} is {{ $value }}", 0.5), "db:9100 of node is 0.5");
        assert_eq!(run("[{{ $labels.absent }}]", 1.0), "[]");
        assert_eq!(run("{{ .Labels.job | toUpper }}", 1.0), "NODE");
        assert_eq!(run("{{ $labels.instance | stripPort }}", 1.0), "db");
        assert_eq!(run("{{ if gt $value 0.9 }}high{{ else }}low{{ end }}", 0.95), "high");
        assert_eq!(run(r#"{{ reReplaceAll "(.*):.*" "$1" $labels.instance }}"#, 0.0), "db");
    }

    #[test]
    fn humanize_functions_match_prometheus_output() {
        assert_eq!(run("{{ humanize $value }}", 1234567.0), "1.235M");
        assert_eq!(run("{{ humanize $value }}", 0.0012), "1.2m");
        assert_eq!(run("{{ humanize1024 $value }}", 1048576.0), "1Mi");
        assert_eq!(run("{{ humanizePercentage $value }}", 0.1234), "12.34%");
        assert_eq!(run("{{ humanizeDuration $value }}", 93784.0), "1d 2h 3m 4s");
        assert_eq!(run("{{ humanizeDuration $value }}", 1.5), "1.5s");
        assert_eq!(run("{{ humanizeDuration $value }}", 0.25), "250ms");
        assert_eq!(format_g(123456.0, 4), "1.235e+05");
        assert_eq!(format_g(0.00001234, 4), "1.234e-05");
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(check("{{ $labels.job ").is_err());
        assert!(check("{{ .Labels.job }").is_err());
        assert!(check("{{ humanize $value }} at {{ $externalURL }}").is_ok());
    }
}
