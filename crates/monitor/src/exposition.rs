//! Prometheus' text exposition format 0.0.4 and OpenMetrics 1.0, read without copying:
//! a sample gives its series exactly as written (the scrape loop's cache key) and its
//! labels are parsed only for a series not seen before. Errors name line and column.

use mobius_series::{is_name_byte, parse_value, valid_label_name, valid_metric_name};
use std::fmt;

/// Which format a body is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: timestamps in milliseconds, no `# EOF`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`: timestamps in seconds, ends with `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The `Accept` header a scraper sends: OpenMetrics preferred, the text format accepted.
    pub const ACCEPT: &'static str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    /// The format of a response, from its `Content-Type`.
    pub fn from_content_type(content_type: &str) -> Format {
        if content_type.trim_start().to_ascii_lowercase().starts_with("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// A metric family's declared type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl MetricType {
    fn parse(text: &str) -> Option<MetricType> {
        Some(match text {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "unknown" | "untyped" => MetricType::Unknown,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

/// One line of meaning in a body.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry<'a> {
    Help { metric: &'a str, text: &'a str },
    Type { metric: &'a str, kind: MetricType },
    Unit { metric: &'a str, unit: &'a str },
    Sample(Sample<'a>),
}

/// A sample as written: `series` is the metric name with its label block, verbatim.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    pub series: &'a str,
    pub name: &'a str,
    pub value: f64,
    /// Milliseconds since the epoch, when the target gave one.
    pub timestamp_ms: Option<i64>,
}

/// A body that is not in the format it claims, with where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// Reads a body entry by entry.
pub struct Parser<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    format: Format,
    eof: bool,
}

impl<'a> Parser<'a> {
    pub fn new(text: &'a str, format: Format) -> Parser<'a> {
        Parser { text, pos: 0, line: 0, format, eof: false }
    }

    fn error(&self, column: usize, message: impl Into<String>) -> ParseError {
        ParseError { line: self.line, column: column + 1, message: message.into() }
    }

    fn comment(&self, line: &'a str) -> Result<Option<Entry<'a>>, ParseError> {
        let rest = &line[1..];
        let Some(rest) = rest.strip_prefix(' ') else {
            return Ok(None);
        };
        let (keyword, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let (metric, value) = rest.split_once(' ').unwrap_or((rest, ""));
        let open_metrics = self.format == Format::OpenMetrics;
        match keyword {
            "HELP" | "TYPE" | "UNIT" if !valid_metric_name(metric) => {
                Err(self.error(2 + keyword.len() + 1, format!("invalid metric name `{metric}`")))
            }
            "HELP" => Ok(Some(Entry::Help { metric, text: value })),
            "TYPE" => match MetricType::parse(value.trim()) {
                Some(kind) => Ok(Some(Entry::Type { metric, kind })),
                None => Err(self.error(line.len() - value.len(), format!("unknown metric type `{}`", value.trim()))),
            },
            "UNIT" if open_metrics => Ok(Some(Entry::Unit { metric, unit: value })),
            _ => Ok(None),
        }
    }

    fn sample(&self, line: &'a str) -> Result<Sample<'a>, ParseError> {
        let bytes = line.as_bytes();
        let name_end = bytes.iter().position(|b| !is_name_byte(*b)).unwrap_or(bytes.len());
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(self.error(0, "expected a metric name"));
        }
        let mut i = name_end;
        if bytes.get(i) == Some(&b'{') {
            i = scan_labels(bytes, i + 1).map_err(|(at, message)| self.error(at, message))?;
        }
        let series = &line[..i];
        if !matches!(bytes.get(i), Some(b' ' | b'\t')) {
            return Err(self.error(i, "expected a space and a value after the series"));
        }
        let mut rest = line[i..].trim_start_matches([' ', '\t']);
        if self.format == Format::OpenMetrics {
            // An exemplar follows ` # `: not stored.
            if let Some(at) = rest.find(" # ") {
                rest = &rest[..at];
            }
        }
        let mut fields = rest.split([' ', '\t']).filter(|f| !f.is_empty());
        let value_text = fields.next().unwrap_or("");
        let value_at = line.len() - rest.len();
        let value =
            parse_value(value_text).ok_or_else(|| self.error(value_at, format!("invalid value `{value_text}`")))?;
        let timestamp_ms = match fields.next() {
            None => None,
            Some(t) => {
                let at = value_at + rest[value_text.len()..].find(t).map_or(0, |o| o + value_text.len());
                let ms = match self.format {
                    Format::Text => t.parse::<i64>().ok(),
                    Format::OpenMetrics => {
                        t.parse::<f64>().ok().filter(|s| s.is_finite()).map(|s| (s * 1000.0).round() as i64)
                    }
                };
                Some(ms.ok_or_else(|| self.error(at, format!("invalid timestamp `{t}`")))?)
            }
        };
        if let Some(extra) = fields.next() {
            let at = line.len() - rest.len() + rest.find(extra).unwrap_or(0);
            return Err(self.error(at, format!("unexpected `{extra}` after the timestamp")));
        }
        Ok(Sample { series, name, value, timestamp_ms })
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.pos >= self.text.len() {
                if self.format == Format::OpenMetrics && !self.eof {
                    self.eof = true;
                    self.line += 1;
                    return Some(Err(self.error(0, "the body does not end with `# EOF`")));
                }
                return None;
            }
            let end = self.text[self.pos..].find('\n').map_or(self.text.len(), |i| self.pos + i);
            let line = self.text[self.pos..end].strip_suffix('\r').unwrap_or(&self.text[self.pos..end]);
            self.pos = end + 1;
            self.line += 1;
            if self.eof {
                if line.is_empty() && self.pos >= self.text.len() {
                    continue;
                }
                self.pos = self.text.len();
                return Some(Err(self.error(0, "content after `# EOF`")));
            }
            if line.trim().is_empty() {
                if self.format == Format::OpenMetrics {
                    return Some(Err(self.error(0, "empty line")));
                }
                continue;
            }
            if line.starts_with('#') {
                if self.format == Format::OpenMetrics && line == "# EOF" {
                    self.eof = true;
                    continue;
                }
                match self.comment(line) {
                    Ok(Some(entry)) => return Some(Ok(entry)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
            let line = line.trim_start_matches([' ', '\t']);
            return Some(self.sample(line).map(Entry::Sample));
        }
    }
}

/// Checks a label block from just after `{`; returns the index just after `}`.
fn scan_labels(bytes: &[u8], mut i: usize) -> Result<usize, (usize, String)> {
    loop {
        while matches!(bytes.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        match bytes.get(i) {
            Some(b'}') => return Ok(i + 1),
            None => return Err((i, "the label block is not closed".into())),
            _ => {}
        }
        let start = i;
        while bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            i += 1;
        }
        if start == i || bytes[start].is_ascii_digit() {
            return Err((start, "expected a label name".into()));
        }
        while matches!(bytes.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            return Err((i, "expected `=` after the label name".into()));
        }
        i += 1;
        while matches!(bytes.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'"') {
            return Err((i, "expected a quoted label value".into()));
        }
        i += 1;
        loop {
            match bytes.get(i) {
                None => return Err((i, "the label value is not closed".into())),
                Some(b'\\') => match bytes.get(i + 1) {
                    Some(b'\\' | b'"' | b'n') => i += 2,
                    _ => return Err((i, "invalid escape in a label value (\\\\, \\\" and \\n are allowed)".into())),
                },
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
        while matches!(bytes.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        match bytes.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(i + 1),
            _ => return Err((i, "expected `,` or `}` after a label".into())),
        }
    }
}

/// The labels of a series as written (`name{a="b"}`), the metric name as `__name__`.
pub fn parse_series(series: &str) -> Result<Vec<(String, String)>, String> {
    let (name, block) = match series.find('{') {
        Some(i) => (&series[..i], &series[i + 1..]),
        None => (series, ""),
    };
    if !valid_metric_name(name) {
        return Err(format!("invalid metric name `{name}`"));
    }
    let mut pairs = vec![(mobius_series::labels::METRIC_NAME.to_string(), name.to_string())];
    let bytes = block.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while matches!(bytes.get(i), Some(b' ' | b'\t' | b',')) {
            i += 1;
        }
        if matches!(bytes.get(i), Some(b'}') | None) {
            break;
        }
        let start = i;
        while bytes.get(i).is_some_and(|b| *b != b'=' && *b != b' ' && *b != b'\t') {
            i += 1;
        }
        let label = &block[start..i];
        while matches!(bytes.get(i), Some(b' ' | b'\t' | b'=')) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'"') {
            return Err(format!("expected a quoted value for `{label}`"));
        }
        i += 1;
        let mut value = String::new();
        let mut run = i;
        loop {
            match bytes.get(i) {
                None => return Err(format!("the value of `{label}` is not closed")),
                Some(b'"') => {
                    value.push_str(&block[run..i]);
                    i += 1;
                    break;
                }
                Some(b'\\') => {
                    value.push_str(&block[run..i]);
                    value.push(match bytes.get(i + 1) {
                        Some(b'n') => '\n',
                        Some(b'"') => '"',
                        _ => '\\',
                    });
                    i += 2;
                    run = i;
                }
                Some(_) => i += 1,
            }
        }
        if !valid_label_name(label) {
            return Err(format!("invalid label name `{label}`"));
        }
        pairs.push((label.to_string(), value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(text: &str, format: Format) -> Vec<(String, f64, Option<i64>)> {
        Parser::new(text, format)
            .filter_map(|e| match e.unwrap() {
                Entry::Sample(s) => Some((s.series.to_string(), s.value, s.timestamp_ms)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_text_format_with_escapes_specials_and_timestamps() {
        let body = "# HELP http_requests_total The total.\n# TYPE http_requests_total counter\n\
                    http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                    msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
                    \n# a comment\nmetric_without_labels 12.47\nx{} +Inf\ny -Inf\nz NaN\n";
        let got = samples(body, Format::Text);
        assert_eq!(got.len(), 6);
        assert_eq!(got[0], ("http_requests_total{method=\"post\",code=\"200\"}".into(), 1027.0, Some(1395066363000)));
        assert_eq!(got[2].1, 12.47);
        assert!(got[3].1.is_infinite() && got[4].1 < 0.0 && got[5].1.is_nan());
        let labels = parse_series(&got[1].0).unwrap();
        assert_eq!(labels[1], ("path".into(), "C:\\DIR\\FILE.TXT".into()));
        assert_eq!(labels[2], ("error".into(), "Cannot find file:\n\"FILE.TXT\"".into()));
        let types: Vec<_> = Parser::new(body, Format::Text)
            .filter_map(|e| match e.unwrap() {
                Entry::Type { metric, kind } => Some((metric, kind)),
                _ => None,
            })
            .collect();
        assert_eq!(types, [("http_requests_total", MetricType::Counter)]);
    }

    #[test]
    fn open_metrics_needs_eof_takes_seconds_and_skips_exemplars() {
        let body = "# TYPE a counter\n# UNIT a seconds\na_total 3 1.5 # {trace_id=\"x\"} 1 1.2\n# EOF\n";
        assert_eq!(samples(body, Format::OpenMetrics), [("a_total".into(), 3.0, Some(1500))]);
        let err = Parser::new("a 1\n", Format::OpenMetrics).find_map(Result::err).unwrap();
        assert!(err.message.contains("# EOF"), "{err}");
        let err = Parser::new("# EOF\na 1\n", Format::OpenMetrics).find_map(Result::err).unwrap();
        assert_eq!((err.line, err.message.as_str()), (2, "content after `# EOF`"));
    }

    #[test]
    fn errors_name_line_and_column() {
        let cases = [
            ("ok 1\nbad{a=1} 2\n", 2, 7, "quoted"),
            ("ok 1\n\nx{a=\"1\" 2\n", 3, 9, "`,` or `}`"),
            ("x 1 2 3\n", 1, 7, "unexpected"),
            ("x abc\n", 1, 3, "invalid value"),
            ("x{a=\"\\q\"} 1\n", 1, 6, "escape"),
            ("# TYPE x bogus\n", 1, 10, "unknown metric type"),
            ("1x 2\n", 1, 1, "metric name"),
        ];
        for (body, line, column, message) in cases {
            let err = Parser::new(body, Format::Text).find_map(Result::err).unwrap();
            assert_eq!((err.line, err.column), (line, column), "{body:?}: {err}");
            assert!(err.message.contains(message), "{body:?}: {err}");
        }
    }

    #[test]
    fn content_type_picks_the_format() {
        assert_eq!(Format::from_content_type("application/openmetrics-text; version=1.0.0"), Format::OpenMetrics);
        assert_eq!(Format::from_content_type("text/plain; version=0.0.4; charset=utf-8"), Format::Text);
    }
}
