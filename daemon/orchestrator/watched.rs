//! The process behind an instance, as its actor holds it: how its exit is
//! learnt (from the reaper for a child of this daemon, through a pidfd for
//! one re-adopted or registered), and which group a stop signals.

use std::os::fd::OwnedFd;

use tokio::{io::unix::AsyncFd, sync::oneshot};

use super::status::{ExitOutcome, ProcessInfo};

/// The process behind an instance, as the actor holds it.
pub enum Process {
    /// A child of the daemon, leader of its own group.
    Managed {
        /// Its identity.
        info: ProcessInfo,
        /// Its exit, delivered by the reaper.
        exit: oneshot::Receiver<ExitOutcome>,
    },
    /// A process an earlier daemon spawned, re-adopted: leader of its own
    /// group like a managed one, but watched through a pidfd (it is no
    /// longer the daemon's child, so its exit status cannot be known).
    Adopted {
        /// Its identity.
        info: ProcessInfo,
        /// Readable once the process has exited.
        pidfd: AsyncFd<OwnedFd>,
    },
    /// A process someone else started, watched through a pidfd.
    External {
        /// Its identity.
        info: ProcessInfo,
        /// Readable once the process has exited.
        pidfd: AsyncFd<OwnedFd>,
    },
}

impl Process {
    /// Its process group; the daemon's own when it spawned the process.
    pub fn group(&self) -> Group {
        Group {
            pgid: self.info().pgid,
            own: matches!(self, Self::Managed { .. }),
        }
    }

    /// Its identity.
    pub fn info(&self) -> ProcessInfo {
        match self {
            Self::Managed { info, .. }
            | Self::Adopted { info, .. }
            | Self::External { info, .. } => *info,
        }
    }

    /// Completes when the process exits.
    pub async fn exited(&mut self) -> ExitOutcome {
        match self {
            Self::Managed { exit, .. } => exit.await.unwrap_or(ExitOutcome::Unknown),
            Self::Adopted { pidfd, .. } | Self::External { pidfd, .. } => {
                // A pidfd polls readable when its process exits.
                let _ = pidfd.readable().await;
                ExitOutcome::Unknown
            }
        }
    }
}

/// The process group of an instance being stopped.
pub struct Group {
    /// Its id (the leader's pid).
    pub pgid: u32,
    /// Whether this daemon spawned its leader, so that its processes can be
    /// found through lists of children (see [`super::lineage`]) in place of
    /// scans.
    pub own: bool,
}
