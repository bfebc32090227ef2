//! Readiness from output: the first line written to stdout or stderr after
//! the spawn that matches the pattern. The files are followed by inotify
//! from the lengths they had before the process started, so a line written
//! the instant it starts is seen, and a line of an earlier run never is.

use regex::Regex;
use tokio::sync::mpsc;

use super::Note;
use crate::orchestrator::logs::{LogFiles, Stream, follow::follow};

/// Longest matched line kept for `ready_by`.
const MAX_SHOWN: usize = 200;

/// Where each stream ends now.
pub fn offsets(logs: &LogFiles) -> Vec<(Stream, u64)> {
    [Stream::Stdout, Stream::Stderr]
        .into_iter()
        .map(|stream| {
            let len = std::fs::metadata(logs.path(stream)).map_or(0, |meta| meta.len());
            (stream, len)
        })
        .collect()
}

/// Follows the output until a line matches, and delivers it.
pub async fn watch(
    logs: LogFiles,
    offsets: Vec<(Stream, u64)>,
    pattern: Regex,
    mut deliver: impl FnMut(Note) -> bool,
) {
    let (sender, mut lines) = mpsc::channel(16);
    let follower = tokio::spawn(follow(logs, offsets, sender));
    while let Some(batch) = lines.recv().await {
        if let Some(line) = batch
            .lines
            .iter()
            .find(|piece| pattern.is_match(&piece.text))
        {
            deliver(Note::LogLine(line.text.chars().take(MAX_SHOWN).collect()));
            break;
        }
    }
    follower.abort();
}
