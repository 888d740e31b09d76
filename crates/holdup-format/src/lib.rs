//! One place for how holdup writes numbers for people — durations, sizes,
//! rates, shares, dates, cut names and tables — and reads durations back,
//! so `top`, `inspect`, `diagnose`, the workbench client and its plots all
//! say the same thing the same way.

#![warn(missing_docs)]

use bytesize::ByteSize;
use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, ContentArrangement, Table};
use std::time::Duration;

/// A duration given in nanoseconds, in the most readable unit
/// ("2.50 s", "1.20 ms", "350 µs", "80 ns").
pub fn ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A latency given in microseconds: "350 µs", or "1.2 ms" from a millisecond on.
pub fn us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// Time spent per second of wall time, from ns per second: "450 ms/s".
pub fn ms_per_s(ns_per_s: f64) -> String {
    format!("{:.0} ms/s", ns_per_s / 1e6)
}

/// A size in bytes, in binary units ("512 B", "3.0 MiB").
pub fn bytes(b: u64) -> String {
    ByteSize(b).display().iec().to_string()
}

/// A data rate in bytes per second, in KiB/s below a MiB/s ("64 KiB/s", "1.5 MiB/s").
pub fn bytes_rate(b: f64) -> String {
    if b >= 1048576.0 {
        format!("{:.1} MiB/s", b / 1048576.0)
    } else {
        format!("{:.0} KiB/s", b / 1024.0)
    }
}

/// A fraction (0..=1) as a whole percentage: "43%".
pub fn pct(frac: f64) -> String {
    format!("{:.0}%", frac * 100.0)
}

/// A count or ratio with as many decimals as it needs (2, 1 or 0 from 10 and 100 on).
pub fn rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A name cut to `n` characters for a column; a cut name ends in `…`.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n.saturating_sub(1)).chain(['…']).collect()
    }
}

/// Text from elsewhere (a user's note, a process name) on one line, control
/// characters shown as spaces, cut to `n` characters (see [`truncate`]).
pub fn one_line(s: &str, n: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(&flat, n)
}

/// Unix milliseconds as a UTC date and time to the second: "2023-11-14 22:13:20 UTC".
pub fn utc_ms(unix_ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(unix_ms) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => format!("{unix_ms} ms after 1970"),
    }
}

/// Unix seconds as a UTC date and time (see [`utc_ms`]).
pub fn utc_s(unix_s: i64) -> String {
    utc_ms(unix_s.saturating_mul(1000))
}

/// Reads a duration: "10s", "500ms", "2m", "1h 30m", "1.5s", or a plain
/// number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return if secs.is_finite() && secs >= 0.0 {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))
        };
    }
    // humantime has no decimals: "1.5s" is read as 1500ms.
    if let Some((num, unit)) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| t.split_at(i))
        .filter(|(n, _)| n.contains('.'))
    {
        let v: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
        let unit_secs = parse_duration(&format!("1{unit}"))?.as_secs_f64();
        return Ok(Duration::from_secs_f64(v * unit_secs));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{s:?} is not a duration ({e}): write e.g. 10s, 500ms, 2m or 1h"))
}

/// A table in holdup's plain style: no borders, a header row, columns
/// separated by two spaces, numeric columns (`right`) aligned right; fits
/// lines of any width (no wrapping: output may go to a file or a pipe).
pub fn table(header: &[&str], right: &[usize]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for c in 0..header.len() {
        if let Some(col) = t.column_mut(c) {
            col.set_padding((0, 2));
            if right.contains(&c) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    t
}

/// A table's text with each line indented by `indent` spaces and trailing
/// blanks removed.
pub fn indented(t: &Table, indent: usize) -> String {
    let pad = " ".repeat(indent);
    t.lines()
        .map(|l| format!("{pad}{}\n", l.trim_end()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(ns(1500.0), "1.5 µs");
        assert_eq!(ns(2.5e9), "2.50 s");
        assert_eq!(us(1500.0), "1.5 ms");
        assert_eq!(us(64.0), "64 µs");
        assert_eq!(bytes_rate(3.0 * 1048576.0), "3.0 MiB/s");
        assert_eq!(pct(0.434), "43%");
        assert_eq!(truncate("abcdefgh", 4), "abc…");
        assert_eq!(one_line("a\nb\x1b[2J", 20), "a b [2J");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_ms(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_ms(1_700_000_000_123), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_s(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("5x").unwrap_err().contains("5x"));
    }

    #[test]
    fn tables_align_numbers_right() {
        let mut t = table(&["NAME", "N"], &[1]);
        t.add_row(vec!["a", "1"]);
        t.add_row(vec!["bb", "100"]);
        let s = indented(&t, 2);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3, "{s}");
        assert!(
            lines[1].ends_with("  1") && lines[2].ends_with("100"),
            "{s}"
        );
    }
}
