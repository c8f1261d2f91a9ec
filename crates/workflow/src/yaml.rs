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
            NodeValue::Number(n) => Some(crate::expr::number_to_string(*n)),
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
            NodeValue::Number(n) => crate::expr::number_value(*n),
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

/// Parses the first document of `source`. An empty document is `Null`.
pub fn parse(source: &str) -> Result<Node, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    parser.load(&mut builder, false).map_err(|e| YamlError {
        pos: Pos { line: e.marker().line(), col: e.marker().col() + 1 },
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or_else(|| Node::new(Pos { line: 1, col: 1 }, NodeValue::Null)))
}

enum Frame {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<(Node, Node)>, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<YamlError>,
    done: bool,
}

fn pos_of(mark: &Marker) -> Pos {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Pos { line: mark.line(), col: mark.col() + 1 }
}

impl Builder {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending_key)) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    let duplicate = key.as_str().is_some() && entries.iter().any(|(k, _)| k.as_str() == key.as_str());
                    if duplicate && self.error.is_none() {
                        self.error = Some(YamlError {
                            pos: key.pos,
                            message: format!("duplicate key '{}' in mapping", key.as_str().unwrap_or_default()),
                        });
                    }
                    entries.push((key, node));
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done {
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
                self.push_node(Node::new(pos, value), anchor);
            }
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some(node) => Node::new(pos, node.value.clone()),
                    None => Node::new(pos, NodeValue::Null),
                };
                self.push_node(node, 0);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(pos, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map(pos, anchor, Vec::new(), None)),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(p, anchor, items)) => self.push_node(Node::new(p, NodeValue::Seq(items)), anchor),
                Some(Frame::Map(p, anchor, entries, _)) => {
                    // Block mappings are reported where their first key is, which is where users look.
                    let p = entries.first().map_or(p, |(k, _)| if k.pos < p { k.pos } else { p });
                    self.push_node(Node::new(p, NodeValue::Map(entries)), anchor)
                }
                None => {}
            },
            _ => {}
        }
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

    #[test]
    fn aliases_copy_anchored_nodes() {
        let node = parse("a: &x {k: v}\nb: *x\n").unwrap();
        assert_eq!(node.get("b").unwrap().get("k").unwrap().as_str(), Some("v"));
    }
}
