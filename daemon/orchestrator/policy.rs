//! The restart policy as a small state machine: exponential backoff with
//! jitter, and a circuit breaker with one half-open attempt after a
//! cooldown. An attempt only counts as a success once the instance has
//! stayed healthy for `reset_after` (readiness alone proves little: a
//! process without a check is "ready" the moment it is spawned); that
//! success resets the count and closes the breaker, and any failure before
//! it re-opens the breaker. Pure logic; the actor owns the timers. Also
//! the clock arithmetic of the timers, which never panics.

use std::time::{Duration, Instant, SystemTime};

use outpost::spec::{RestartMode, RestartPolicy};

use super::status::Breaker;

/// What to do after a failure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Do not restart (policy `never`, or a clean exit under `on-failure`).
    Stay,
    /// Restart after this delay.
    Backoff(Duration),
    /// Too many failures: the breaker is open; try once after this cooldown.
    Open(Duration),
}

/// Failures in a row and the breaker of one instance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestartTracker {
    /// Failures since the count was last reset.
    pub failures: u32,
    pub breaker: Breaker,
    /// The delay chosen for the latest restart.
    pub delay: Duration,
}

impl RestartTracker {
    /// Records a failure (`clean` for an exit with status 0) and decides.
    /// `jitter` in [0, 1) spreads restarts of many instances apart: the
    /// delay is scaled into [80 %, 100 %] of its nominal value.
    pub fn on_failure(&mut self, policy: &RestartPolicy, clean: bool, jitter: f64) -> Verdict {
        let restart = match policy.mode {
            RestartMode::Never => false,
            RestartMode::OnFailure => !clean,
            RestartMode::Always => true,
        };
        if !restart {
            return Verdict::Stay;
        }
        self.failures = self.failures.saturating_add(1);
        if self.breaker == Breaker::HalfOpen || self.failures > policy.max_restarts {
            self.breaker = Breaker::Open;
            return Verdict::Open(policy.cooldown);
        }
        let doublings = (self.failures - 1).min(31);
        let nominal = policy
            .initial_delay
            .saturating_mul(1 << doublings)
            .min(policy.max_delay);
        self.delay = nominal.mul_f64(0.8 + 0.2 * jitter.clamp(0.0, 1.0));
        Verdict::Backoff(self.delay)
    }

    /// The cooldown passed: the next start is the half-open trial.
    pub fn on_cooldown(&mut self) {
        self.breaker = Breaker::HalfOpen;
    }

    /// The instance stayed healthy for `reset_after`, or a user started it
    /// anew: forget past failures.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The instant `delay` after `now`. Specs bound every delay to a year, so
/// this always adds; a delay past what the clock holds (a record from
/// before the bounds) is as good as never and waits the longest bounded
/// delay instead of panicking.
pub fn deadline(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(outpost::limits::MAX_DURATION))
        .unwrap_or(now)
}

/// The wall-clock time `delay` after `now`, saturating like [`deadline`].
pub fn wall_deadline(now: SystemTime, delay: Duration) -> SystemTime {
    now.checked_add(delay)
        .or_else(|| now.checked_add(outpost::limits::MAX_DURATION))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_never_overflow() {
        let now = Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert!(deadline(now, Duration::MAX) >= now);
        let wall = SystemTime::now();
        assert!(wall_deadline(wall, Duration::MAX) >= wall);
    }

    fn policy() -> RestartPolicy {
        RestartPolicy {
            mode: RestartMode::OnFailure,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            max_restarts: 4,
            reset_after: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
        }
    }

    #[test]
    fn delays_double_up_to_the_maximum_then_the_breaker_opens() {
        let mut tracker = RestartTracker::default();
        let delays: Vec<Verdict> = (0..5)
            .map(|_| tracker.on_failure(&policy(), false, 1.0))
            .collect();
        assert_eq!(
            delays,
            [1, 2, 4, 4]
                .map(|s| Verdict::Backoff(Duration::from_secs(s)))
                .into_iter()
                .chain([Verdict::Open(Duration::from_secs(30))])
                .collect::<Vec<_>>()
        );
        assert_eq!(tracker.breaker, Breaker::Open);
    }

    #[test]
    fn half_open_success_closes_and_failure_reopens() {
        let mut tracker = RestartTracker::default();
        for _ in 0..5 {
            tracker.on_failure(&policy(), false, 1.0);
        }
        tracker.on_cooldown();
        assert_eq!(
            tracker.on_failure(&policy(), false, 1.0),
            Verdict::Open(Duration::from_secs(30))
        );
        tracker.on_cooldown();
        tracker.reset(); // healthy for reset_after
        assert_eq!(tracker, RestartTracker::default());
        assert_eq!(
            tracker.on_failure(&policy(), false, 1.0),
            Verdict::Backoff(Duration::from_secs(1))
        );
    }

    #[test]
    fn jitter_shortens_by_at_most_a_fifth() {
        let mut tracker = RestartTracker::default();
        assert_eq!(
            tracker.on_failure(&policy(), false, 0.0),
            Verdict::Backoff(Duration::from_millis(800))
        );
    }

    #[test]
    fn modes_decide_which_exits_restart() {
        let mut never = policy();
        never.mode = RestartMode::Never;
        assert_eq!(
            RestartTracker::default().on_failure(&never, false, 1.0),
            Verdict::Stay
        );
        assert_eq!(
            RestartTracker::default().on_failure(&policy(), true, 1.0),
            Verdict::Stay
        );
        let mut always = policy();
        always.mode = RestartMode::Always;
        assert!(matches!(
            RestartTracker::default().on_failure(&always, true, 1.0),
            Verdict::Backoff(_)
        ));
    }
}
