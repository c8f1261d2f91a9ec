//! Lists as tables: a header row and aligned columns; on a terminal the header is bold and
//! states are coloured (green done well, red failed or firing, yellow in motion, grey idle).

use std::io::IsTerminal as _;

/// How a cell is coloured on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    Plain,
    Good,
    Bad,
    Moving,
    Idle,
}

impl Tone {
    /// The tone of a state word as the API spells it (run, job, rollout, incident, alert,
    /// token, target): only used for colour, never for a decision.
    pub(crate) fn of_state(state: &str) -> Tone {
        match state {
            "success" | "succeeded" | "resolved" | "live" | "up" | "active" | "healthy" => Tone::Good,
            "failure" | "failed" | "rolled_back" | "firing" | "open" | "down" | "unhealthy" | "timed_out" => Tone::Bad,
            "queued" | "in_progress" | "waiting" | "paused" | "progressing" | "acknowledged" | "pending"
            | "unprocessed" | "awaiting_approval" => Tone::Moving,
            "cancelled" | "skipped" | "revoked" | "expired" | "suppressed" | "unknown" => Tone::Idle,
            _ => Tone::Plain,
        }
    }

    fn code(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Good => Some("32"),
            Tone::Bad => Some("31"),
            Tone::Moving => Some("33"),
            Tone::Idle => Some("90"),
        }
    }
}

/// One cell: its text and its colour.
pub(crate) struct Cell {
    text: String,
    tone: Tone,
}

impl<T: Into<String>> From<T> for Cell {
    fn from(text: T) -> Cell {
        Cell { text: text.into(), tone: Tone::Plain }
    }
}

/// A state cell, coloured by [`Tone::of_state`].
pub(crate) fn state(text: &str) -> Cell {
    Cell { text: text.to_string(), tone: Tone::of_state(text) }
}

/// A cell of any text coloured as the state word `state` would be.
pub(crate) fn toned(text: &str, state: &str) -> Cell {
    Cell { text: text.to_string(), tone: Tone::of_state(state) }
}

/// A list printed as columns under a header row.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub(crate) fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub(crate) fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// Whether colour is wanted: standard output is a terminal and `NO_COLOR` is unset.
    pub(crate) fn colour() -> bool {
        std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    }

    /// The table as text, `colour` or not; an empty list is its header row alone.
    pub(crate) fn render(&self, colour: bool) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.text.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<Cell> =
            self.headers.iter().map(|h| Cell { text: (*h).to_string(), tone: Tone::Plain }).collect();
        Self::line(&mut out, &header, &widths, colour.then_some("1"), false);
        for row in &self.rows {
            Self::line(&mut out, row, &widths, None, colour);
        }
        out
    }

    /// One row; `all` colours every cell (the header), `tones` colours each by its tone.
    fn line(out: &mut String, cells: &[Cell], widths: &[usize], all: Option<&str>, tones: bool) {
        let count = widths.len().min(cells.len());
        for (i, cell) in cells.iter().enumerate().take(count) {
            let code = all.or(if tones { cell.tone.code() } else { None });
            match code {
                Some(code) => out.push_str(&format!("\x1b[{code}m{}\x1b[0m", cell.text)),
                None => out.push_str(&cell.text),
            }
            if i + 1 < count {
                out.push_str(&" ".repeat(widths[i] - cell.text.chars().count() + 2));
            }
        }
        out.push('\n');
    }

    /// Prints the table on standard output.
    pub(crate) fn print(&self) {
        let text = self.render(Self::colour());
        println!("{}", text.trim_end_matches('\n'));
    }
}

#[cfg(test)]
mod tests {
    use super::{state, Cell, Table};

    #[test]
    fn lists_have_a_header_row_and_colour_only_on_a_terminal() {
        let mut table = Table::new(&["ID", "STATE", "NAME"]);
        table.row(vec![Cell::from("7"), state("failure"), Cell::from("ci")]);
        table.row(vec![Cell::from("12"), state("success"), Cell::from("release")]);
        let plain = table.render(false);
        assert_eq!(plain, "ID  STATE    NAME\n7   failure  ci\n12  success  release\n");
        let coloured = table.render(true);
        assert!(coloured.starts_with("\x1b[1mID\x1b[0m"), "{coloured:?}");
        assert!(coloured.contains("\x1b[31mfailure\x1b[0m"), "{coloured:?}");
        assert!(coloured.contains("\x1b[32msuccess\x1b[0m"), "{coloured:?}");
        assert_eq!(strip_ansi_escapes::strip_str(&coloured), plain);
    }
}
