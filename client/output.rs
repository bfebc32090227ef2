//! Printing responses: canonical JSON with `--json`, aligned text otherwise.

use std::{
    io::{self, Write},
    time::Duration,
};

use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)
}

/// Prints `label  value` rows with the labels aligned.
pub fn rows(rows: &[(&str, String)]) -> io::Result<()> {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut out = io::stdout().lock();
    for (label, value) in rows {
        writeln!(out, "{label:<width$}  {value}")?;
    }
    Ok(())
}

/// A protobuf duration as whole seconds, e.g. "2h 3m 4s".
pub fn duration(duration: Option<&pbjson_types::Duration>) -> String {
    let seconds = duration.map_or(0, |d| d.seconds.max(0) as u64);
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

/// Prints `value` as one line of JSON (for streams: one message per line).
pub fn json_line<T: Serialize>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()
}

/// Prints rows as columns padded to their widest cell.
pub fn table<const N: usize>(rows: &[[String; N]]) -> io::Result<()> {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = io::stdout().lock();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// A protobuf duration in milliseconds, e.g. "12.3ms".
pub fn millis(duration: Option<&pbjson_types::Duration>) -> String {
    let seconds = duration.map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9);
    format!("{:.1}ms", seconds * 1000.0)
}
