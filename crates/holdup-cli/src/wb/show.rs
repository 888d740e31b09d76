//! How `holdup wb` prints: terminal-safe text, tables, dates, optional
//! fields, and `--json` as the API's JSON.

use anyhow::Result;
use serde::Serialize;
use std::io::Write;

/// Prints a value of the API as pretty JSON (the types serialize exactly
/// as the server does: they are the server's).
pub(crate) fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    out(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// Writes to stdout; a reader that went away is not an error. Control
/// characters other than newline and tab are shown escaped (`\u{1b}`):
/// incident fields and run outputs come from other users, and a raw escape
/// sequence would act on the reader's terminal.
pub(crate) fn out(text: &str) -> Result<()> {
    let safe = terminal_safe(text);
    let mut o = std::io::stdout().lock();
    crate::quiet_on_closed_pipe(o.write_all(safe.as_bytes()).and_then(|()| o.flush()))
}

/// Writes raw bytes (an artifact) to stdout.
pub(crate) fn out_bytes(data: &[u8]) -> Result<()> {
    let mut o = std::io::stdout().lock();
    crate::quiet_on_closed_pipe(o.write_all(data).and_then(|()| o.flush()))
}

/// `text` with control characters (but newline and tab) escaped.
pub(crate) fn terminal_safe(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            s.extend(c.escape_unicode());
        } else {
            s.push(c);
        }
    }
    s
}

/// An optional field as display text ("-" when absent or empty).
pub(crate) fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    match v {
        Some(x) => text(x),
        None => "-".into(),
    }
}

/// A field as display text ("-" when empty).
pub(crate) fn text<T: std::fmt::Display + ?Sized>(v: &T) -> String {
    let s = v.to_string();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// Unix seconds (or none: "-") as a UTC date and time.
pub(crate) fn at(t: Option<i64>) -> String {
    t.map_or_else(|| "-".into(), holdup_format::utc_s)
}

/// At most `max` characters, on one line.
pub(crate) fn short(s: &str, max: usize) -> String {
    holdup_format::one_line(s, max)
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = holdup_format::table(headers, &[]);
    for r in rows {
        t.add_row(r);
    }
    holdup_format::indented(&t, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(at(Some(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(Some(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(at(Some(1_700_000_000)), "2023-11-14 22:13:20 UTC");
        assert_eq!(at(None), "-");
    }

    #[test]
    fn optional_fields_show_a_dash() {
        assert_eq!(opt(&None::<i64>), "-");
        assert_eq!(opt(&Some("")), "-");
        assert_eq!(opt(&Some(3)), "3");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "a".into()],
                vec!["100".into(), "bb".into()],
            ],
        );
        assert_eq!(t, "ID   NAME\n1    a\n100  bb\n");
    }

    #[test]
    fn escape_sequences_from_the_server_are_shown_not_obeyed() {
        // an incident title that would clear the screen and retitle the terminal
        let evil = "redis slow\u{1b}[2J\u{1b}]0;pwned\u{7}\tok\n";
        let shown = terminal_safe(evil);
        assert!(
            !shown.chars().any(|c| c == '\u{1b}' || c == '\u{7}'),
            "{shown:?}"
        );
        assert_eq!(shown, "redis slow\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\tok\n");
    }
}
