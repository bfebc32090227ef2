//! Printing responses: canonical JSON with `--json`, aligned text otherwise.
//!
//! Output into a closed pipe (`outpostctl ls | head -1`) ends the command
//! quietly with exit status 0: the reader has what it wanted, and nothing
//! failed. Every write goes through a path that knows this — the
//! functions here return the error for `main` to judge ([`closed_pipe`]),
//! and [`outln!`]/[`errln!`] stand in for `println!`/`eprintln!`, which
//! would panic — and a stream also ends as soon as its reader is gone,
//! even while it has nothing to print.

use std::{
    fmt,
    io::{self, Write},
    process::ExitCode,
    time::{Duration, SystemTime},
};

use outpost::proto::v1 as pb;
use serde::Serialize;
use tokio::io::{Interest, unix::AsyncFd};

use crate::failure::Failure;

/// `println!` that ends the command quietly when stdout is a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::line(&mut ::std::io::stdout(), format_args!($($arg)*)) };
}
/// `eprintln!` for data sent to stderr (a log's stderr lines), likewise.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::line(&mut ::std::io::stderr(), format_args!($($arg)*)) };
}
pub(crate) use {errln, outln};

/// Whether a write failed because nobody reads the output any more.
pub fn closed_pipe(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::BrokenPipe
}

/// Writes one line; a closed pipe ends the command quietly (exit status
/// 0), another write error ends it with one line on stderr (exit status 1).
pub fn line(out: &mut impl Write, args: fmt::Arguments<'_>) {
    write_ending(out, args, b"\n");
}

/// Writes `text`, ended by a newline unless it is a `partial` piece of a
/// longer line; a closed pipe is treated as by [`line`].
pub fn piece(out: &mut impl Write, text: &str, partial: bool) {
    let end: &[u8] = if partial { b"" } else { b"\n" };
    write_ending(out, format_args!("{text}"), end);
}

fn write_ending(out: &mut impl Write, args: fmt::Arguments<'_>, end: &[u8]) {
    if let Err(err) = out.write_fmt(args).and_then(|()| out.write_all(end)) {
        if closed_pipe(&err) {
            std::process::exit(0);
        }
        let _ = writeln!(io::stderr(), "outpostctl: {}", Failure::Output(err));
        std::process::exit(1);
    }
}

/// Resolves once stdout is a pipe that nobody reads any more (epoll
/// reports an error on its write end), so that a stream with nothing to
/// print for a while still ends with its reader (`logs -f | head -1`).
/// Never resolves where this cannot be known (stdout is a file).
async fn stdout_closed() {
    // SAFETY: fd 1 stays open, on the same file description, for the
    // whole process: nothing here closes or replaces it.
    match unsafe { AsyncFd::register_with_interest(io::stdout(), Interest::ERROR) } {
        Ok(stdout) => match stdout.ready(Interest::ERROR).await {
            Ok(_) => {}
            Err(_) => std::future::pending().await,
        },
        Err(_) => std::future::pending().await,
    }
}

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
    let closed = stdout_closed();
    tokio::pin!(closed);
    loop {
        let message = tokio::select! {
            message = messages.message() => message?,
            () = &mut closed => return Ok(ExitCode::SUCCESS),
        };
        let Some(message) = message else { break };
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
