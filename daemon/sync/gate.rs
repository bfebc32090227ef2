//! Whether the sync watcher may act: it pauses while a user asked it to,
//! and while any export runs. A user's pause and resume are idempotent
//! flags; exports count, each holding an [`ExportPause`] guard that resumes
//! on drop — also when the export fails or panics — without ever lifting
//! a user's pause.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The pause state, shared by any number of callers.
#[derive(Debug, Default)]
pub struct PauseGate {
    by_user: AtomicBool,
    exports: AtomicU32,
}

/// Holds the watcher paused for one export.
#[must_use = "the pause ends when the guard is dropped"]
pub struct ExportPause<'a>(&'a PauseGate);

impl Drop for ExportPause<'_> {
    fn drop(&mut self) {
        self.0.exports.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PauseGate {
    /// Pauses for a user; returns whether a user had paused already.
    pub fn pause(&self) -> bool {
        self.by_user.swap(true, Ordering::AcqRel)
    }

    /// Lifts a user's pause; returns whether one was in force.
    pub fn resume(&self) -> bool {
        self.by_user.swap(false, Ordering::AcqRel)
    }

    /// Pauses until the returned guard is dropped.
    pub fn pause_for_export(&self) -> ExportPause<'_> {
        self.exports.fetch_add(1, Ordering::AcqRel);
        ExportPause(self)
    }

    /// Whether the watcher must hold back now.
    pub fn is_paused(&self) -> bool {
        self.by_user.load(Ordering::Acquire) || self.exports.load(Ordering::Acquire) > 0
    }

    /// Whether a user's pause is in force.
    pub fn paused_by_user(&self) -> bool {
        self.by_user.load(Ordering::Acquire)
    }

    /// Exports running now.
    pub fn active_exports(&self) -> u32 {
        self.exports.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_idempotent() {
        let gate = PauseGate::default();
        assert!(!gate.pause());
        assert!(gate.pause());
        assert!(gate.is_paused());
    }

    #[test]
    fn resume_idempotent() {
        let gate = PauseGate::default();
        gate.pause();
        assert!(gate.resume());
        assert!(!gate.resume());
        assert!(!gate.is_paused());
    }

    #[test]
    fn export_pauses_and_resumes() {
        let gate = PauseGate::default();
        {
            let _one = gate.pause_for_export();
            let _two = gate.pause_for_export();
            assert!(gate.is_paused());
            assert_eq!(gate.active_exports(), 2);
        }
        assert!(!gate.is_paused());
    }

    #[test]
    fn resume_on_export_error() {
        let gate = PauseGate::default();
        let failing = || -> Result<(), &'static str> {
            let _paused = gate.pause_for_export();
            Err("disk full")
        };
        assert!(failing().is_err());
        let panicking = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _paused = gate.pause_for_export();
            panic!("export bug");
        }));
        assert!(panicking.is_err());
        assert!(!gate.is_paused(), "resumed after an error and a panic");
    }

    #[test]
    fn an_export_never_lifts_a_users_pause() {
        let gate = PauseGate::default();
        gate.pause();
        drop(gate.pause_for_export());
        assert!(gate.is_paused() && gate.paused_by_user());
    }
}
