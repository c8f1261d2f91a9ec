//! Line charts as SVG, drawn here (no script): one polyline per series over a shared
//! time axis, the value axis from the data's range, a legend, and gaps where a series
//! has no points.

use super::graph::escape;
use std::fmt::Write;

const COLOURS: [&str; 8] = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#ec4899", "#14b8a6", "#6b7280"];

/// A number as an axis label: short, with k/M/G or m/µ suffixes.
fn short(v: f64) -> String {
    let a = v.abs();
    let (scaled, unit) = match a {
        _ if a == 0.0 => return "0".into(),
        _ if a >= 1e9 => (v / 1e9, "G"),
        _ if a >= 1e6 => (v / 1e6, "M"),
        _ if a >= 1e3 => (v / 1e3, "k"),
        _ if a >= 1.0 => (v, ""),
        _ if a >= 1e-3 => (v * 1e3, "m"),
        _ => (v * 1e6, "µ"),
    };
    let text = format!("{scaled:.2}");
    format!("{}{unit}", text.trim_end_matches('0').trim_end_matches('.'))
}

fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(String::new, |t| t.format("%H:%M:%S").to_string())
}

/// Draws `series` (name, points in milliseconds) between `start` and `end`.
pub fn line_chart(series: &[(String, Vec<(i64, f64)>)], start: i64, end: i64, step: i64) -> String {
    let (w, h, left, bottom, top) = (760.0, 260.0, 56.0, 24.0, 8.0);
    let finite = || series.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| *v)).filter(|v| v.is_finite());
    let (mut lo, mut hi) = (finite().fold(f64::INFINITY, f64::min), finite().fold(f64::NEG_INFINITY, f64::max));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if lo > 0.0 && lo < hi * 0.5 {
        lo = 0.0;
    }
    if (hi - lo).abs() < f64::EPSILON {
        hi = lo + 1.0;
    }
    let span = (end - start).max(1) as f64;
    let x = |t: i64| left + (t - start) as f64 / span * (w - left - 8.0);
    let y = |v: f64| top + (hi - v) / (hi - lo) * (h - top - bottom);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="chart"><rect x="{left}" y="{top}" width="{}" height="{}" fill="#fff" stroke="#d0d7de"/>"##,
        w - left - 8.0,
        h - top - bottom
    );
    for i in 0..=4 {
        let v = lo + (hi - lo) * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eaeef2"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            w - 8.0,
            left - 4.0,
            y(v) + 3.0,
            short(v),
            y = y(v)
        );
    }
    for (i, t) in [start, start + (end - start) / 2, end].iter().enumerate() {
        let anchor = ["start", "middle", "end"][i];
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="{anchor}">{}</text>"#,
            x(*t),
            h - 8.0,
            clock(*t)
        );
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        // A gap longer than two steps breaks the line.
        let mut path = String::new();
        let mut previous: Option<i64> = None;
        for (t, v) in points.iter().filter(|(_, v)| v.is_finite()) {
            let jump = previous.is_none_or(|p| t - p > 2 * step.max(1));
            let _ = write!(path, "{}{:.1},{:.1} ", if jump { "M" } else { "L" }, x(*t), y(*v));
            previous = Some(*t);
        }
        let _ = write!(
            svg,
            r#"<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.5"><title>{}</title></path>"#,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg.push_str(r#"<ul class="legend">"#);
    for (i, (name, _)) in series.iter().enumerate() {
        let _ = write!(
            svg,
            // An SVG fill, not a style attribute: the UI's Content-Security-Policy allows no inline styles.
            r#"<li><svg class="swatch" viewBox="0 0 1 1"><rect width="1" height="1" fill="{}"/></svg>{}</li>"#,
            COLOURS[i % COLOURS.len()],
            escape(name)
        );
    }
    svg.push_str("</ul>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_path_per_series_breaks_at_gaps_and_escapes_names() {
        let svg = line_chart(
            &[("up{job=\"<a>\"}".into(), vec![(0, 1.0), (1000, 2.0), (5000, 3.0)]), ("b".into(), vec![(0, 0.5)])],
            0,
            5000,
            1000,
        );
        assert_eq!(svg.matches("<path").count(), 2);
        let first = svg.split("<path d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(first.matches('M').count(), 2, "a gap of 4 s breaks the line: {first}");
        assert!(svg.contains("up{job=&quot;&lt;a&gt;&quot;}"));
        assert_eq!(short(1500.0), "1.5k");
        assert_eq!(short(0.0025), "2.5m");
    }
}
