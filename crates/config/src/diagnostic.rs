//! Errors in configuration files, with file, line, column and a caret snippet.

use crate::yaml::Pos;
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, SourceSpan};
use std::fmt;
use std::sync::Arc;

/// One problem at one place in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub pos: Pos,
    /// Length of the offending text in characters (at least 1 for the caret).
    pub len: usize,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic { pos, len: 1, message: message.into(), help: None }
    }

    pub fn with_len(mut self, len: usize) -> Self {
        self.len = len.max(1);
        self
    }

    /// `line:col message (help)`: the diagnostic in one line, without the file.
    pub fn short(&self) -> String {
        match &self.help {
            Some(help) => format!("{}:{} {} ({help})", self.pos.line, self.pos.col, self.message),
            None => format!("{}:{} {}", self.pos.line, self.pos.col, self.message),
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// A source file: its display path and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        SourceFile { path: path.into(), text: text.into() }
    }

    /// Byte offset of a 1-based line and column (columns count characters).
    pub fn offset_of(&self, pos: Pos) -> usize {
        let mut offset = 0;
        for (index, line) in self.text.split_inclusive('\n').enumerate() {
            if index + 1 == pos.line {
                let col_bytes: usize = line.chars().take(pos.col.saturating_sub(1)).map(char::len_utf8).sum();
                return offset + col_bytes;
            }
            offset += line.len();
        }
        self.text.len()
    }

    /// The position of a byte offset.
    pub fn pos_of(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Pos { line, col: self.text[line_start..offset].chars().count() + 1 }
    }

    /// Finds `needle` at or after the node at `pos` and returns the position of its
    /// byte `inner` (used to point inside block scalars, whose node position is the indicator).
    pub fn locate(&self, pos: Pos, needle: &str, inner: usize) -> Pos {
        let start = self.offset_of(pos);
        match self.text[start..].find(needle) {
            Some(found) => self.pos_of(start + found + inner),
            None => pos,
        }
    }
}

/// All problems found in one file.
#[derive(Debug, Clone)]
pub struct FileErrors {
    pub file: SourceFile,
    pub diagnostics: Vec<Diagnostic>,
}

impl FileErrors {
    /// Renders every diagnostic with a snippet and caret; colour only when asked.
    pub fn render(&self, color: bool) -> String {
        let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
        let mut out = String::new();
        for diagnostic in &self.diagnostics {
            let report = Rendered { file: &self.file, diagnostic };
            if handler.render_report(&mut out, &report).is_err() {
                out.push_str(&self.plain_line(diagnostic));
            }
            out.push('\n');
        }
        out
    }

    /// `path:line:col: message (help)`, one per diagnostic.
    pub fn plain_line(&self, d: &Diagnostic) -> String {
        match &d.help {
            Some(help) => format!("{}:{}:{}: {} ({help})\n", self.file.path, d.pos.line, d.pos.col, d.message),
            None => format!("{}:{}:{}: {}\n", self.file.path, d.pos.line, d.pos.col, d.message),
        }
    }
}

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            f.write_str(&self.plain_line(d))?;
        }
        Ok(())
    }
}

impl std::error::Error for FileErrors {}

struct Rendered<'a> {
    file: &'a SourceFile,
    diagnostic: &'a Diagnostic,
}

impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}:{}:{})",
            self.diagnostic.message, self.file.path, self.diagnostic.pos.line, self.diagnostic.pos.col
        )
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diagnostic.help.as_ref().map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let start = self.file.offset_of(self.diagnostic.pos);
        let line_end = self.file.text[start..].find('\n').map_or(self.file.text.len(), |i| start + i);
        let len: usize = self.file.text[start..line_end].chars().take(self.diagnostic.len).map(char::len_utf8).sum();
        let span = SourceSpan::new(start.into(), len.max(usize::from(start < self.file.text.len())));
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(Some("here".into()), span))))
    }
}

impl miette::SourceCode for Rendered<'_> {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let contents = self.file.text.as_ref().read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.file.path.clone(),
            contents.data(),
            *contents.span(),
            contents.line(),
            contents.column(),
            contents.line_count(),
        )))
    }
}
