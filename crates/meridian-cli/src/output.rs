//! Command output: aligned tables and notes for people, pretty JSON for programs.

use std::io::{ErrorKind, Write};

use anyhow::Context;
use serde::Serialize;

/// Where a command's results go, in the form the user asked for with `--json`.
pub struct Output {
    json: bool,
}

impl Output {
    /// An output in JSON mode when `json` is set, else in human mode.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether `--json` was given.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as pretty JSON in JSON mode, else the text `human` renders.
    pub fn show<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            self.json(value)
        } else {
            write_stdout(&human())
        }
    }

    /// Prints `value` as pretty JSON, whatever the mode.
    pub fn json<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(value).context("cannot encode JSON output")?;
        text.push('\n');
        write_stdout(&text)
    }

    /// A line for people. In JSON mode it goes to stderr so stdout stays parseable.
    pub fn note(&self, line: &str) -> anyhow::Result<()> {
        if self.json {
            eprintln!("{line}");
            Ok(())
        } else {
            write_stdout(&format!("{line}\n"))
        }
    }
}

/// Writes to stdout. A closed pipe (`meridian apps list | head -1`) is not an error: the reader
/// has all it wanted.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e).context("cannot write to stdout"),
        _ => Ok(()),
    }
}

/// Rows of text in columns padded to the widest cell, two spaces apart.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a header line.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// A table without a header line, e.g. `key  value` pairs.
    pub fn headless() -> Self {
        Self::default()
    }

    /// Adds a row. Rows may be shorter or longer than the header; missing cells are blank.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, each ending in a newline, with no trailing spaces.
    pub fn render(&self) -> String {
        let lines: Vec<Vec<String>> = (!self.headers.is_empty())
            .then(|| self.headers.clone())
            .into_iter()
            .chain(self.rows.iter().cloned())
            .map(|cells| cells.iter().map(|c| printable(c)).collect())
            .collect();
        let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in &lines {
            for (i, cell) in line.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut text = String::new();
        for line in &lines {
            let mut out = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = line.get(i).map(String::as_str).unwrap_or("");
                out.push_str(cell);
                if i + 1 < columns {
                    let pad = width - cell.chars().count() + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            text.push_str(out.trim_end());
            text.push('\n');
        }
        text
    }
}

/// Escapes control characters, so a value from the server can neither break the alignment with
/// a newline nor send escape sequences to the terminal.
fn printable(cell: &str) -> String {
    if !cell.chars().any(char::is_control) {
        return cell.to_string();
    }
    let mut out = String::with_capacity(cell.len() + 4);
    for c in cell.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `-` for an absent or empty value, so table columns never look shifted.
pub fn or_dash(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut t = Table::new(&["NAME", "REPLICAS", "IMAGE"]);
        t.row(vec!["web".into(), "3".into(), "web:1".into()]);
        t.row(vec!["billing-api".into(), "12".into(), "b".into()]);
        assert_eq!(
            t.render(),
            "NAME         REPLICAS  IMAGE\n\
             web          3         web:1\n\
             billing-api  12        b\n"
        );
    }

    #[test]
    fn no_trailing_spaces_and_short_rows_are_padded() {
        let mut t = Table::new(&["A", "B", "C"]);
        t.row(vec!["x".into()]);
        t.row(vec!["y".into(), "".into(), "".into()]);
        for line in t.render().lines() {
            assert_eq!(line, line.trim_end());
        }
        assert_eq!(t.render(), "A  B  C\nx\ny\n");
    }

    #[test]
    fn long_rows_add_columns() {
        let mut t = Table::new(&["A"]);
        t.row(vec!["1".into(), "extra".into()]);
        assert_eq!(t.render(), "A\n1  extra\n");
    }

    #[test]
    fn empty_table_prints_only_the_header() {
        assert_eq!(Table::new(&["ID", "ADDR"]).render(), "ID  ADDR\n");
        assert_eq!(Table::headless().render(), "");
    }

    #[test]
    fn headless_table_aligns_pairs() {
        let mut t = Table::headless();
        t.row(vec!["name:".into(), "web".into()]);
        t.row(vec!["replicas:".into(), "2".into()]);
        assert_eq!(t.render(), "name:      web\nreplicas:  2\n");
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let mut t = Table::new(&["CITY", "CC"]);
        t.row(vec!["Zürich".into(), "CH".into()]);
        t.row(vec!["Bern".into(), "CH".into()]);
        assert_eq!(t.render(), "CITY    CC\nZürich  CH\nBern    CH\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut t = Table::new(&["K", "V"]);
        t.row(vec!["a\nb".into(), "\u{1b}[31mred".into()]);
        assert_eq!(t.render(), "K     V\na\\nb  \\u{1b}[31mred\n");
    }

    #[test]
    fn dash_for_missing_values() {
        assert_eq!(or_dash(None), "-");
        assert_eq!(or_dash(Some("")), "-");
        assert_eq!(or_dash(Some("eu")), "eu");
    }
}
