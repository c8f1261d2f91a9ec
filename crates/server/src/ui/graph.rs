//! The job graph of a run as SVG: jobs in columns by their depth in the `needs` graph,
//! edges from each need, boxes coloured by status. Drawn here, so no script is needed.

use std::collections::HashMap;
use std::fmt::Write;

/// One box of the graph.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub label: String,
    pub needs: Vec<String>,
    /// `success`, `failure`, `cancelled`, `skipped`, `in_progress` or `queued`.
    pub state: String,
}

const WIDTH: i64 = 180;
const HEIGHT: i64 = 36;
const GAP_X: i64 = 60;
const GAP_Y: i64 = 16;

/// Text made safe inside HTML and SVG.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn colour(state: &str) -> &'static str {
    match state {
        "success" => "#1a7f37",
        "failure" => "#cf222e",
        "cancelled" => "#6e7781",
        "skipped" => "#afb8c1",
        "in_progress" => "#bf8700",
        _ => "#8c959f",
    }
}

/// Column of each job: 0 for jobs without needs, else one more than its deepest need.
fn depths(nodes: &[Node]) -> HashMap<String, usize> {
    let mut depth: HashMap<String, usize> = HashMap::new();
    // The graph is acyclic (validated); |nodes| passes settle it.
    for _ in 0..=nodes.len() {
        for node in nodes {
            let d = node.needs.iter().filter_map(|n| depth.get(n)).map(|d| d + 1).max().unwrap_or(0);
            depth.insert(node.id.clone(), d);
        }
    }
    depth
}

/// The SVG document for the nodes (empty graph: an empty string).
pub fn render(nodes: &[Node]) -> String {
    if nodes.is_empty() {
        return String::new();
    }
    let depth = depths(nodes);
    let mut rows: HashMap<usize, usize> = HashMap::new();
    let mut at: HashMap<String, (i64, i64)> = HashMap::new();
    for node in nodes {
        let column = depth.get(&node.id).copied().unwrap_or(0);
        let row = rows.entry(column).or_insert(0);
        at.insert(node.id.clone(), (column as i64 * (WIDTH + GAP_X) + 8, *row as i64 * (HEIGHT + GAP_Y) + 8));
        *row += 1;
    }
    let width = at.values().map(|(x, _)| x + WIDTH + 8).max().unwrap_or(0);
    let height = at.values().map(|(_, y)| y + HEIGHT + 8).max().unwrap_or(0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="job-graph" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="job graph">"#
    );
    for node in nodes {
        let Some(&(x, y)) = at.get(&node.id) else { continue };
        for need in &node.needs {
            if let Some(&(nx, ny)) = at.get(need) {
                let (x1, y1, x2, y2) = (nx + WIDTH, ny + HEIGHT / 2, x, y + HEIGHT / 2);
                let mid = (x1 + x2) / 2;
                let _ = write!(
                    svg,
                    r##"<path class="edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" fill="none" stroke="#8c959f" stroke-width="1.5"/>"##
                );
            }
        }
    }
    for node in nodes {
        let Some(&(x, y)) = at.get(&node.id) else { continue };
        let label: String = node.label.chars().take(24).collect();
        let _ = write!(
            svg,
            r##"<g class="job {state}" data-job="{id}"><title>{title} ({state})</title><rect x="{x}" y="{y}" width="{WIDTH}" height="{HEIGHT}" rx="6" fill="#fff" stroke="{c}" stroke-width="2"/><circle cx="{cx}" cy="{cy}" r="6" fill="{c}"/><text x="{tx}" y="{ty}" font-size="13" font-family="sans-serif">{label}</text></g>"##,
            state = escape(&node.state),
            id = escape(&node.id),
            title = escape(&node.label),
            c = colour(&node.state),
            cx = x + 16,
            cy = y + HEIGHT / 2,
            tx = x + 30,
            ty = y + HEIGHT / 2 + 5,
            label = escape(&label),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, needs: &[&str], state: &str) -> Node {
        Node {
            id: id.into(),
            label: id.into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            state: state.into(),
        }
    }

    #[test]
    fn columns_follow_needs_and_labels_are_escaped() {
        let nodes =
            [node("build", &[], "success"), node("test", &["build"], "failure"), node("<x>", &["test"], "queued")];
        let d = depths(&nodes);
        assert_eq!((d["build"], d["test"], d["<x>"]), (0, 1, 2));
        let svg = render(&nodes);
        assert_eq!(svg.matches("<path").count(), 2);
        assert!(svg.contains("&lt;x&gt;") && !svg.contains("<x>"));
        assert!(svg.contains(r#"class="job failure""#));
    }
}
