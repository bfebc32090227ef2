//! Printing responses: canonical JSON with `--json`, aligned text otherwise.

use std::{
    io::{self, Write},
    process::ExitCode,
    time::{Duration, SystemTime},
};

use outpost::proto::v1 as pb;
use serde::Serialize;

use crate::failure::Failure;

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)
}

/// Prints `value` as one line of JSON (for streams: one message per line).
pub fn json_line<T: Serialize>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()
}

/// Prints a stream's messages until it ends: each as a line of JSON with
/// `--json`, otherwise as `text` prints it.
pub async fn stream<T: Serialize>(
    json: bool,
    mut messages: tonic::Streaming<T>,
    mut text: impl FnMut(T),
) -> Result<ExitCode, Failure> {
    while let Some(message) = messages.message().await? {
        if json {
            json_line(&message)?;
        } else {
            text(message);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The end of a command whose only way to fail is writing its output.
pub fn done(result: io::Result<()>) -> Result<ExitCode, Failure> {
    result?;
    Ok(ExitCode::SUCCESS)
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

/// A proto enum value as the lowercase rest of its name after `prefix`:
/// `(2, InstanceState::as_str_name, "INSTANCE_STATE_")` → "running". `None`
/// for a value this build does not know (from a newer daemon); each caller
/// says what to print then.
pub fn word<E: TryFrom<i32>>(
    value: i32,
    name: fn(&E) -> &'static str,
    prefix: &str,
) -> Option<String> {
    let value = E::try_from(value).ok()?;
    Some(name(&value).trim_start_matches(prefix).to_lowercase())
}

/// An instance state as a word, e.g. "running"; "unspecified" for one this
/// build does not know.
pub fn instance_state(state: i32) -> String {
    word(state, pb::InstanceState::as_str_name, "INSTANCE_STATE_")
        .unwrap_or_else(|| "unspecified".to_owned())
}

/// Whole seconds, e.g. "2h 3m 4s".
pub fn seconds(seconds: u64) -> String {
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

/// A protobuf duration as whole seconds, e.g. "2h 3m 4s".
pub fn duration(duration: Option<&pbjson_types::Duration>) -> String {
    seconds(duration.map_or(0, |d| d.seconds.max(0) as u64))
}

/// A protobuf duration in milliseconds, e.g. "12.3ms".
pub fn millis(duration: Option<&pbjson_types::Duration>) -> String {
    let seconds = duration.map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9);
    format!("{:.1}ms", seconds * 1000.0)
}

/// Whole seconds from a time (seconds since the epoch) until now; 0 for a
/// time to come.
pub fn seconds_since(at: i64) -> u64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    (now - at).max(0) as u64
}
