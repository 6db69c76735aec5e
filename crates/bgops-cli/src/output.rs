//! Plain-text tables for people. Hand-written (forty lines) rather than a table crate:
//! the columns are left-aligned text, no terminal detection or colours are wanted, and
//! stored text is stripped of control characters so a value cannot move the cursor or
//! recolour the operator's terminal.

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A table: a header row and rows of cells, rendered with aligned columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; cells are cleaned of control characters.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rows
            .push(cells.into_iter().map(|c| clean(c.as_ref())).collect());
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, columns separated by two spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<width$}  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Replaces control characters (newlines, escapes) with spaces and cuts long text.
pub fn clean(text: &str) -> String {
    const MAX: usize = 120;
    let mut out: String = text
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// A time as RFC 3339 to the millisecond (UTC as the store wrote it).
pub fn time(at: OffsetDateTime) -> String {
    // Milliseconds are precise enough to order events by eye; nanoseconds are noise.
    let at = at
        .replace_nanosecond(u32::from(at.millisecond()) * 1_000_000)
        .unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// An optional time, `-` when absent.
pub fn opt_time(at: Option<OffsetDateTime>) -> String {
    at.map_or_else(|| "-".to_owned(), time)
}

/// An optional text, `-` when absent.
pub fn opt(text: Option<&str>) -> String {
    text.map_or_else(|| "-".to_owned(), clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_control_characters_go() {
        let mut table = Table::new(&["ID", "STATUS"]);
        table.row(["a", "pending"]);
        table.row(["long-id", "fail\x1b[31med\nnow"]);
        let text = table.render();
        assert_eq!(
            text,
            "ID       STATUS\na        pending\nlong-id  fail [31med now\n"
        );
    }

    #[test]
    fn times_show_milliseconds() {
        let at = time::macros::datetime!(2026-12-02 12:55:05.249719262 UTC);
        assert_eq!(time(at), "2026-12-02T12:55:05.249Z");
    }

    #[test]
    fn long_cells_are_cut() {
        let cell = clean(&"x".repeat(500));
        assert_eq!(cell.chars().count(), 121);
        assert!(cell.ends_with('…'));
    }
}
