//! Every bound on what a client may ask for, in one place, so that the
//! daemon, `outpostctl workspace check` and docs/reliability.md ("Limits")
//! agree; the checks that name a field and its limit; the one helper that
//! cuts user input quoted in an error message; and time conversions that
//! never overflow.
//!
//! Why bounds at all: a timeout of a billion years overflows the clock
//! arithmetic of whoever waits for it, a 1 MB name comes back in every
//! error and event, and a command line larger than the kernel's `ARG_MAX`
//! cannot be spawned. Every limit is far above any real use.

use std::{
    borrow::Cow,
    time::{Duration, SystemTime},
};

use crate::spec::{InvalidField, invalid};

const DAY: u64 = 24 * 3600;

/// Shortest time between two health checks: shorter would make a probe
/// (an exec probe forks a process each time) a busy loop.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Longest timeout or delay of a spec: `idle_timeout`, `startup_timeout`,
/// health `interval` and `timeout`, restart `initial_delay`, `max_delay`,
/// `reset_after` and `cooldown`. A year is more than any of them needs,
/// and keeps every deadline far inside what the clocks can hold.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * DAY);
/// Longest grace period between the stop signal and SIGKILL (a spec's
/// `stop_grace_period`, `StopInstance.grace_period`): a stop holds its
/// instance's commands (and a delete, and the daemon's shutdown) that long.
pub const MAX_STOP_GRACE: Duration = Duration::from_secs(3600);
/// Longest instance name (names are DNS-like).
pub const MAX_NAME_LEN: usize = 128;
/// Longest path (`project_path`, `working_dir`): the kernel's `PATH_MAX`
/// less the terminating NUL.
pub const MAX_PATH_LEN: usize = 4095;
/// Longest program name or path (`command`).
pub const MAX_COMMAND_LEN: usize = 4095;
/// Most arguments (`args`, an exec probe's `command`).
pub const MAX_ARGS: usize = 4096;
/// Longest single argument or `NAME=value` environment string: the
/// kernel's `MAX_ARG_STRLEN` (32 pages) less the NUL.
pub const MAX_ARG_LEN: usize = 128 * 1024 - 1;
/// Most environment variables of a spec (`env`).
pub const MAX_ENV_VARS: usize = 1024;
/// Most bytes of arguments and environment together: half of Linux's
/// default `ARG_MAX` (2 MiB), leaving room for the daemon's own
/// environment, which children inherit.
pub const MAX_SPAWN_BYTES: usize = 1024 * 1024;
/// Most labels of an instance.
pub const MAX_LABELS: usize = 64;
/// Longest label key.
pub const MAX_LABEL_KEY_LEN: usize = 128;
/// Longest label value.
pub const MAX_LABEL_VALUE_LEN: usize = 1024;
/// Longest TCP probe host (a DNS name is at most 253 characters).
pub const MAX_HOST_LEN: usize = 253;
/// Longest HTTP probe path or URL.
pub const MAX_URL_LEN: usize = 8192;
/// Largest health `failure_threshold` and `success_threshold`.
pub const MAX_THRESHOLD: u32 = 1000;
/// Largest restart `max_restarts`.
pub const MAX_RESTARTS: u32 = 10_000;
/// Largest pid the kernel hands out (`PID_MAX_LIMIT` on 64-bit Linux);
/// a larger one would turn negative, that is into a process group, when
/// passed to `kill`.
pub const MAX_PID: u32 = 4 * 1024 * 1024;
/// Most lines of history `StreamLogs` sends (`tail_lines`).
pub const MAX_TAIL_LINES: u32 = 100_000;
/// Most entries of a request's filter (`states`, `instances`,
/// `workspaces`, `labels` of `ListInstances` and `WatchStatus`).
pub const MAX_FILTER_ITEMS: usize = 1024;
/// Largest piece of a log line in one `LogLine`: longer lines are sent in
/// pieces, all but the last marked `partial`.
pub const LOG_PIECE: usize = 64 * 1024;
/// Most characters of user input an error message quotes ([`cut`]).
pub const MAX_ECHO: usize = 200;

/// Latest time a protobuf `Timestamp` may hold: 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
/// Longest protobuf `Duration`: 10 000 years.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;

/// `text` as an error message may quote it: as it is when short, else its
/// first [`MAX_ECHO`] characters, an ellipsis and its length, so that a
/// megabyte of input never comes back in an error.
pub fn cut(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_ECHO) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len())),
    }
}

/// `text` quoted and escaped as `{:?}` shows it, cut as [`cut`] does.
pub fn quoted(text: &str) -> String {
    let escaped: String = text.escape_debug().take(MAX_ECHO + 1).collect();
    if escaped.chars().count() <= MAX_ECHO {
        format!("\"{escaped}\"")
    } else {
        let head: String = escaped.chars().take(MAX_ECHO).collect();
        format!("\"{head}\"… ({} bytes)", text.len())
    }
}

/// A limit on a duration, in words ("365 days", "1 hour").
pub fn describe(limit: Duration) -> String {
    let seconds = limit.as_secs();
    let (count, unit) = if seconds.is_multiple_of(DAY) {
        (seconds / DAY, "day")
    } else if seconds.is_multiple_of(3600) {
        (seconds / 3600, "hour")
    } else {
        (seconds, "second")
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}

/// Checks that `value` is at most `max`.
pub fn duration(field: &str, value: Duration, max: Duration) -> Result<(), InvalidField> {
    if value > max {
        return Err(invalid(
            field,
            format!(
                "must be at most {} (the limit), not {}s",
                describe(max),
                value.as_secs()
            ),
        ));
    }
    Ok(())
}

/// Checks that `value` is at most `max`.
pub fn count(field: &str, value: u64, max: u64) -> Result<(), InvalidField> {
    if value > max {
        return Err(invalid(
            field,
            format!("must be at most {max} (the limit), not {value}"),
        ));
    }
    Ok(())
}

/// Checks that `text` is at most `max` bytes long.
pub fn length(field: &str, text: &str, max: usize) -> Result<(), InvalidField> {
    if text.len() > max {
        return Err(invalid(
            field,
            format!(
                "is {} bytes long, more than the limit of {max} bytes",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a list of strings: at most `max_items` of them, each at most
/// `max_len` bytes.
pub fn list<'a>(
    field: &str,
    items: impl ExactSizeIterator<Item = &'a str>,
    max_items: usize,
    max_len: usize,
) -> Result<(), InvalidField> {
    count(field, items.len() as u64, max_items as u64)?;
    for item in items {
        length(field, item, max_len)?;
    }
    Ok(())
}

/// Checks a map of labels (a spec's, or a filter's): at most
/// [`MAX_LABELS`], keys non-empty and at most [`MAX_LABEL_KEY_LEN`] bytes,
/// values at most [`MAX_LABEL_VALUE_LEN`].
pub fn labels<'a>(
    field: &str,
    labels: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), InvalidField> {
    count(field, labels.len() as u64, MAX_LABELS as u64)?;
    for (key, value) in labels {
        if key.is_empty() {
            return Err(invalid(field, "label keys must not be empty"));
        }
        length(field, key, MAX_LABEL_KEY_LEN)?;
        if value.len() > MAX_LABEL_VALUE_LEN {
            return Err(invalid(
                field,
                format!(
                    "the value of {} is {} bytes long, more than the limit of {MAX_LABEL_VALUE_LEN} bytes",
                    quoted(key),
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a reference to an instance (its id or name): not empty, and no
/// longer than a name can be.
pub fn instance_reference(field: &str, key: &str) -> Result<(), InvalidField> {
    if key.trim().is_empty() {
        return Err(invalid(field, "must name an instance (id or name)"));
    }
    length(field, key, MAX_NAME_LEN)
}

/// A wall-clock time as a protobuf timestamp, clamped to the range a
/// timestamp may hold (from the epoch, which nothing here precedes, to
/// the end of year 9999), so that no time makes a message that JSON
/// cannot show.
pub fn timestamp(time: SystemTime) -> pbjson_types::Timestamp {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    if seconds > MAX_TIMESTAMP_SECONDS {
        return pbjson_types::Timestamp {
            seconds: MAX_TIMESTAMP_SECONDS,
            nanos: 999_999_999,
        };
    }
    pbjson_types::Timestamp {
        seconds,
        nanos: since_epoch.subsec_nanos() as i32,
    }
}

/// A protobuf timestamp as a wall-clock time; out-of-range fields are
/// clamped (a time before the epoch is the epoch).
pub fn system_time(timestamp: &pbjson_types::Timestamp) -> SystemTime {
    let seconds = timestamp.seconds.clamp(0, MAX_TIMESTAMP_SECONDS) as u64;
    let nanos = timestamp.nanos.clamp(0, 999_999_999) as u32;
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::new(seconds, nanos))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A duration as a protobuf one, saturating at the longest a protobuf
/// duration may be (a `std` duration can be far longer; a plain cast
/// would turn it negative).
pub fn duration_message(value: Duration) -> pbjson_types::Duration {
    match i64::try_from(value.as_secs()) {
        Ok(seconds) if seconds <= MAX_DURATION_SECONDS => pbjson_types::Duration {
            seconds,
            nanos: value.subsec_nanos() as i32,
        },
        _ => pbjson_types::Duration {
            seconds: MAX_DURATION_SECONDS,
            nanos: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_cut_with_its_length() {
        assert_eq!(cut("short"), "short");
        let long = "x".repeat(1 << 20);
        let shown = cut(&long);
        assert!(shown.starts_with(&"x".repeat(MAX_ECHO)), "{shown}");
        assert!(shown.ends_with("… (1048576 bytes)"), "{shown}");
        assert!(shown.len() < MAX_ECHO + 30);
        // Characters, not bytes: never cut inside one.
        let wide = "é".repeat(1000);
        assert!(cut(&wide).ends_with("… (2000 bytes)"));
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
        let quoted_long = quoted(&"\0".repeat(10_000));
        assert!(quoted_long.ends_with("\"… (10000 bytes)"), "{quoted_long}");
        assert!(quoted_long.len() < MAX_ECHO + 30);
    }

    #[test]
    fn limits_are_named_in_words() {
        assert_eq!(describe(MAX_DURATION), "365 days");
        assert_eq!(describe(MAX_STOP_GRACE), "1 hour");
        let err = duration("spec.idle_timeout", Duration::MAX, MAX_DURATION).unwrap_err();
        assert_eq!(err.field, "spec.idle_timeout");
        assert!(err.reason.contains("365 days"), "{err}");
        assert!(duration("d", MAX_DURATION, MAX_DURATION).is_ok());
    }

    #[test]
    fn times_are_clamped_to_what_a_timestamp_holds() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(timestamp(far).seconds, MAX_TIMESTAMP_SECONDS);
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(timestamp(before).seconds, 0);
        let huge = pbjson_types::Timestamp {
            seconds: i64::MAX,
            nanos: -5,
        };
        assert_eq!(
            system_time(&huge),
            SystemTime::UNIX_EPOCH + Duration::from_secs(MAX_TIMESTAMP_SECONDS as u64)
        );
        assert_eq!(
            duration_message(Duration::MAX).seconds,
            MAX_DURATION_SECONDS
        );
        assert_eq!(
            duration_message(Duration::from_millis(1500)).nanos,
            500_000_000
        );
    }
}
