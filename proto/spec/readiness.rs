//! What makes a started instance ready, and what a valid readiness
//! condition is. A process that is up is not yet a server that answers:
//! dependents and `outpostctl wait` rely on RUNNING meaning ready.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{InvalidField, invalid};
use crate::limits::{self, MAX_DURATION};

/// Longest `log_pattern` accepted.
pub const MAX_LOG_PATTERN: usize = 1024;
/// Shortest watchdog interval: a process cannot be expected to report
/// more often, and a shorter one would be a busy loop of timers.
pub const MIN_WATCHDOG: Duration = Duration::from_millis(100);

/// What makes a started instance ready (RUNNING). With none of it set,
/// the health probe's first pass does, or the start itself without a
/// probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Readiness {
    /// Ready when a line of output (stdout or stderr) matches this regular
    /// expression.
    pub log_pattern: Option<String>,
    /// Ready when the process sends READY=1 over sd_notify.
    pub notify: bool,
    /// With `notify`: WATCHDOG=1 must arrive at least this often once
    /// ready.
    pub watchdog: Option<Duration>,
}

impl Readiness {
    /// Whether something other than the probe or the start decides.
    pub fn is_set(&self) -> bool {
        self.log_pattern.is_some() || self.notify
    }

    /// Checks the condition; errors name the fields under `prefix`
    /// (`spec.readiness`).
    pub fn validate(&self, prefix: &str) -> Result<(), InvalidField> {
        let field = |name: &str| format!("{prefix}.{name}");
        if let Some(pattern) = &self.log_pattern {
            limits::length(&field("log_pattern"), pattern, MAX_LOG_PATTERN)?;
            if pattern.is_empty() {
                return Err(invalid(
                    &field("log_pattern"),
                    "must not be empty (leave it unset for none)",
                ));
            }
            if let Err(err) = regex::Regex::new(pattern) {
                return Err(invalid(
                    &field("log_pattern"),
                    format!(
                        "is not a regular expression: {}",
                        one_line(&err.to_string())
                    ),
                ));
            }
            if self.notify {
                return Err(invalid(
                    prefix,
                    "choose one condition: log_pattern or notify, not both",
                ));
            }
        }
        if let Some(watchdog) = self.watchdog {
            if !self.notify {
                return Err(invalid(
                    &field("watchdog"),
                    "needs notify: the watchdog is kept with WATCHDOG=1 over sd_notify",
                ));
            }
            if watchdog < MIN_WATCHDOG {
                return Err(invalid(
                    &field("watchdog"),
                    format!("{watchdog:?} is shorter than the {MIN_WATCHDOG:?} minimum"),
                ));
            }
            limits::duration(&field("watchdog"), watchdog, MAX_DURATION)?;
        }
        Ok(())
    }
}

/// regex's errors span lines (the pattern, a caret); an error is one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(readiness: Readiness) -> Result<(), InvalidField> {
        readiness.validate("spec.readiness")
    }

    #[test]
    fn each_condition_alone_is_valid() {
        assert!(check(Readiness::default()).is_ok());
        let log = Readiness {
            log_pattern: Some("listening on .*:\\d+".to_owned()),
            ..Default::default()
        };
        assert!(check(log).is_ok());
        let notify = Readiness {
            notify: true,
            watchdog: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        assert!(check(notify).is_ok());
    }

    #[test]
    fn bad_conditions_name_their_field() {
        let field = |readiness| check(readiness).unwrap_err().field;
        let pattern = |text: &str| Readiness {
            log_pattern: Some(text.to_owned()),
            ..Default::default()
        };
        assert_eq!(field(pattern("(unclosed")), "spec.readiness.log_pattern");
        assert!(
            !check(pattern("(unclosed"))
                .unwrap_err()
                .reason
                .contains('\n')
        );
        assert_eq!(field(pattern("")), "spec.readiness.log_pattern");
        assert_eq!(
            field(pattern(&"a".repeat(MAX_LOG_PATTERN + 1))),
            "spec.readiness.log_pattern"
        );
        let both = Readiness {
            notify: true,
            ..pattern("ready")
        };
        assert_eq!(field(both), "spec.readiness");
        let lonely_watchdog = Readiness {
            watchdog: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        assert_eq!(field(lonely_watchdog), "spec.readiness.watchdog");
        let hasty = Readiness {
            notify: true,
            watchdog: Some(Duration::from_millis(1)),
            ..Default::default()
        };
        assert_eq!(field(hasty), "spec.readiness.watchdog");
    }
}
