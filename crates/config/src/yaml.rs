//! A YAML tree that remembers where every node came from, built from yaml-rust2's event stream.
//!
//! Workflow validation needs a line and column for every key and value, which the
//! usual serde route loses; this tree keeps them and resolves plain scalars with
//! the YAML 1.2 core schema (so `on:` stays a string, as GitHub reads it).

use std::collections::HashMap;
use std::fmt;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: NodeValue,
}

/// The value of a node. Mappings keep their key order and their key nodes (with positions).
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Number(f64),
    /// A string; `quoted` is true for quoted and block scalars, which never resolve to other types.
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn new(pos: Pos, value: NodeValue) -> Self {
        Node { pos, value }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            NodeValue::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            NodeValue::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, NodeValue::Null)
    }

    /// Looks a key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// The scalar as a string, the way GitHub stringifies YAML scalars (numbers
    /// without a trailing `.0`, booleans as `true`/`false`, null as empty).
    pub fn scalar_string(&self) -> Option<String> {
        match &self.value {
            NodeValue::Null => Some(String::new()),
            NodeValue::Bool(b) => Some(b.to_string()),
            NodeValue::Number(n) => Some(number_to_string(*n)),
            NodeValue::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// A short name of the node's kind for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "boolean",
            NodeValue::Number(_) => "number",
            NodeValue::String(_) => "string",
            NodeValue::Seq(_) => "sequence",
            NodeValue::Map(_) => "mapping",
        }
    }

    /// Converts to a JSON value (expressions are not evaluated).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Number(n) => number_value(*n),
            NodeValue::String(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries.iter().map(|(k, v)| (k.scalar_string().unwrap_or_default(), v.to_json())).collect(),
            ),
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// The most that aliases may add to a document, in bytes of nodes and text
/// (each node counts [`NODE_COST`] bytes plus its text). Like go-yaml's and
/// SnakeYAML's alias limits, this stops a few hundred bytes of nested anchors
/// ("billion laughs") from expanding into gigabytes.
pub const MAX_ALIAS_EXPANSION: usize = 4 << 20;
/// The most aliases one document may use.
pub const MAX_ALIASES: usize = 10_000;
/// The deepest nesting of sequences and mappings a document may have.
pub const MAX_DEPTH: usize = 128;
/// The largest file the YAML layer reads.
pub const MAX_SOURCE_BYTES: usize = 16 << 20;
/// What one node counts towards [`MAX_ALIAS_EXPANSION`] besides its text.
pub const NODE_COST: usize = 64;

/// Parses the first document of `source`. An empty document is `Null`.
///
/// Every input is bounded: the source's size ([`MAX_SOURCE_BYTES`]), its
/// nesting ([`MAX_DEPTH`]), and how much aliases expand ([`MAX_ALIASES`],
/// [`MAX_ALIAS_EXPANSION`]); the error names the bound and where it was hit.
pub fn parse(source: &str) -> Result<Node, YamlError> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(YamlError {
            pos: Pos { line: 1, col: 1 },
            message: format!(
                "the file is {} bytes, more than the limit of {} bytes (16 MiB)",
                source.len(),
                MAX_SOURCE_BYTES
            ),
        });
    }
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    let loaded = parser.load(&mut builder, false);
    // A bound hit while building stops the builder at once; report it before
    // any syntax error the parser met later in the file.
    if builder.stopped {
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
    }
    loaded.map_err(|e| YamlError {
        pos: Pos { line: e.marker().line(), col: e.marker().col() + 1 },
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or_else(|| Node::new(Pos { line: 1, col: 1 }, NodeValue::Null)))
}

/// A collection being built: its position, anchor, what it holds so far, and
/// its cost (nodes and text, as counted for [`MAX_ALIAS_EXPANSION`]).
struct Frame {
    pos: Pos,
    anchor: usize,
    cost: usize,
    kind: FrameKind,
}

enum FrameKind {
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    /// Anchored nodes with their cost.
    anchors: HashMap<usize, (Node, usize)>,
    aliases: usize,
    alias_expansion: usize,
    error: Option<YamlError>,
    /// A bound was hit: every further event is ignored.
    stopped: bool,
    done: bool,
}

fn pos_of(mark: &Marker) -> Pos {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Pos { line: mark.line(), col: mark.col() + 1 }
}

impl Builder {
    fn stop(&mut self, pos: Pos, message: String) {
        self.error = Some(YamlError { pos, message });
        self.stopped = true;
    }

    fn push_node(&mut self, node: Node, anchor: usize, cost: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), cost));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame { cost: frame_cost, kind: FrameKind::Seq(items), .. }) => {
                *frame_cost = frame_cost.saturating_add(cost);
                items.push(node)
            }
            Some(Frame { cost: frame_cost, kind: FrameKind::Map(entries, pending_key), .. }) => {
                match pending_key.take() {
                    None => {
                        *frame_cost = frame_cost.saturating_add(cost);
                        *pending_key = Some(node)
                    }
                    Some(key) => {
                        *frame_cost = frame_cost.saturating_add(cost);
                        let duplicate =
                            key.as_str().is_some() && entries.iter().any(|(k, _)| k.as_str() == key.as_str());
                        if duplicate && self.error.is_none() {
                            self.error = Some(YamlError {
                                pos: key.pos,
                                message: format!("duplicate key '{}' in mapping", key.as_str().unwrap_or_default()),
                            });
                        }
                        entries.push((key, node));
                    }
                }
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done || self.stopped {
            return;
        }
        let pos = pos_of(&mark);
        match ev {
            Event::DocumentEnd if self.root.is_some() => self.done = true,
            Event::Scalar(text, style, anchor, tag) => {
                let value = if style == TScalarStyle::Plain && tag.is_none() {
                    resolve_plain(&text)
                } else if let Some(tag) = tag.filter(|t| t.handle == "tag:yaml.org,2002:" || t.handle == "!!") {
                    match tag.suffix.as_str() {
                        "str" => NodeValue::String(text),
                        _ => resolve_plain(&text),
                    }
                } else {
                    NodeValue::String(text)
                };
                let cost = NODE_COST.saturating_add(text_len(&value));
                self.push_node(Node::new(pos, value), anchor, cost);
            }
            Event::Alias(id) => {
                let (value, cost) = match self.anchors.get(&id) {
                    Some((node, cost)) => (node.value.clone(), *cost),
                    None => (NodeValue::Null, NODE_COST),
                };
                self.aliases += 1;
                if self.aliases > MAX_ALIASES {
                    return self.stop(pos, format!("too many aliases: more than the limit of {MAX_ALIASES}"));
                }
                self.alias_expansion = self.alias_expansion.saturating_add(cost);
                if self.alias_expansion > MAX_ALIAS_EXPANSION {
                    return self.stop(
                        pos,
                        format!(
                            "aliases expand the document beyond the limit of {} bytes (4 MiB); \
                             is this a \"billion laughs\" document?",
                            MAX_ALIAS_EXPANSION
                        ),
                    );
                }
                // Checked before cloning, so the copy made here is within the bound.
                self.push_node(Node::new(pos, value), 0, cost);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    return self.stop(pos, format!("nesting deeper than the limit of {MAX_DEPTH} levels"));
                }
                let kind = match ev {
                    Event::SequenceStart(..) => FrameKind::Seq(Vec::new()),
                    _ => FrameKind::Map(Vec::new(), None),
                };
                self.stack.push(Frame { pos, anchor, cost: NODE_COST, kind });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame { pos: p, anchor, cost, kind: FrameKind::Seq(items) }) => {
                    self.push_node(Node::new(p, NodeValue::Seq(items)), anchor, cost)
                }
                Some(Frame { pos: p, anchor, cost, kind: FrameKind::Map(entries, _) }) => {
                    // Block mappings are reported where their first key is, which is where users look.
                    let p = entries.first().map_or(p, |(k, _)| if k.pos < p { k.pos } else { p });
                    self.push_node(Node::new(p, NodeValue::Map(entries)), anchor, cost)
                }
                None => {}
            },
            _ => {}
        }
    }
}

fn text_len(value: &NodeValue) -> usize {
    match value {
        NodeValue::String(s) => s.len(),
        _ => 0,
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(text: &str) -> NodeValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return NodeValue::Number(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return NodeValue::Number(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Number(f64::NAN),
        _ => {}
    }
    let bytes = text.as_bytes();
    let digits_start = usize::from(matches!(bytes.first(), Some(b'-' | b'+')));
    let body = &text[digits_start..];
    if let Some(hex) = text.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(v) = i64::from_str_radix(hex, 16) {
                return NodeValue::Number(v as f64);
            }
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            if let Ok(v) = i64::from_str_radix(oct, 8) {
                return NodeValue::Number(v as f64);
            }
        }
    }
    let looks_numeric = !body.is_empty()
        && body.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && body.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && body.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric {
        if let Ok(v) = text.parse::<f64>() {
            return NodeValue::Number(v);
        }
    }
    NodeValue::String(text.to_string())
}

/// Formats a number as GitHub does: integers without a fraction, others in their shortest form.
pub fn number_to_string(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else if n == n.trunc() && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// A JSON number from an f64, integral values kept as integers so `toJSON` prints `1`, not `1.0`.
pub fn number_value(n: f64) -> serde_json::Value {
    if n == n.trunc() && n.abs() < 9.0e15 {
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_and_types() {
        let node = parse("on: push\njobs:\n  a:\n    x: [1, 2.5, true, null, '3']\n").unwrap();
        let on = node.get("on").unwrap();
        assert_eq!(on.as_str(), Some("push"));
        assert_eq!(on.pos, Pos { line: 1, col: 5 });
        let x = node.get("jobs").unwrap().get("a").unwrap().get("x").unwrap();
        let items = x.as_seq().unwrap();
        assert_eq!(items[0].value, NodeValue::Number(1.0));
        assert_eq!(items[1].value, NodeValue::Number(2.5));
        assert_eq!(items[2].value, NodeValue::Bool(true));
        assert_eq!(items[3].value, NodeValue::Null);
        assert_eq!(items[4].value, NodeValue::String("3".into()));
        assert_eq!(x.pos.line, 4);
    }

    #[test]
    fn version_like_strings_stay_strings() {
        let node = parse("a: 8.x\nb: 1.2.3\nc: ubuntu-18.04\n").unwrap();
        assert_eq!(node.get("a").unwrap().as_str(), Some("8.x"));
        assert_eq!(node.get("b").unwrap().as_str(), Some("1.2.3"));
        assert_eq!(node.get("c").unwrap().as_str(), Some("ubuntu-18.04"));
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        let dup = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(dup.pos, Pos { line: 2, col: 1 });
    }

    /// Issue 15, item 1: nine levels of anchors, each aliasing the one above nine
    /// times, would expand into 9^9 nodes. It is refused at the alias that
    /// crosses the bound, quickly and without allocating the expansion.
    #[test]
    fn billion_laughs_is_refused_at_the_alias() {
        let mut doc = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for pair in names.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            let aliases = vec![format!("*{prev}"); 9].join(",");
            doc.push_str(&format!("{next}: &{next} [{aliases}]\n"));
        }
        doc.push_str("on: push\n");
        assert!(doc.len() < 600, "{}", doc.len());
        let started = std::time::Instant::now();
        let err = parse(&doc).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(err.message.contains("limit of 4194304 bytes"), "{err:?}");
        // The alias that crossed the bound is on one of the anchor lines, at an alias.
        let line = doc.lines().nth(err.pos.line - 1).unwrap();
        assert_eq!(&line[err.pos.col - 1..err.pos.col], "*", "{err:?} in {line}");
    }

    #[test]
    fn many_small_aliases_are_bounded_by_count() {
        let mut doc = String::from("x: &x 1\ny: [");
        doc.push_str(&vec!["*x"; MAX_ALIASES + 1].join(","));
        doc.push_str("]\n");
        let err = parse(&doc).unwrap_err();
        assert!(err.message.contains("too many aliases"), "{err:?}");
        assert_eq!(err.pos.line, 2);
    }

    #[test]
    fn deep_nesting_is_refused_with_the_limit() {
        let doc = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let err = parse(&doc).unwrap_err();
        assert!(err.message.contains("limit of 128 levels"), "{err:?}");
        assert_eq!(err.pos, Pos { line: 1, col: MAX_DEPTH + 1 });
        // Far deeper: yaml-rust2's scanner stops it first; either way, an error and no overflow.
        let doc = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        parse(&doc).unwrap_err();
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        parse(&ok).unwrap();
        // Block style: each level a mapping indented by one more space.
        let block: String = (0..MAX_DEPTH + 1).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        let err = parse(&block).unwrap_err();
        assert!(err.message.contains("limit of 128 levels"), "{err:?}");
    }

    #[test]
    fn ordinary_aliases_still_work() {
        let doc = "base: &base {runs-on: ubuntu-latest, steps: [{run: echo hi}]}\njobs:\n  a: *base\n  b: *base\n";
        let node = parse(doc).unwrap();
        let jobs = node.get("jobs").unwrap();
        assert_eq!(jobs.get("b").unwrap().get("runs-on").unwrap().as_str(), Some("ubuntu-latest"));
    }

    #[test]
    fn aliases_copy_anchored_nodes() {
        let node = parse("a: &x {k: v}\nb: *x\n").unwrap();
        assert_eq!(node.get("b").unwrap().get("k").unwrap().as_str(), Some("v"));
    }
}
