//! What the daemon tells its service manager (systemd's `sd_notify`
//! protocol), when `$NOTIFY_SOCKET` names one: `READY=1` once every
//! listener serves, `STOPPING=1` when it begins to stop, `STATUS=` with the
//! instance counts (on every change, at most once per [`STATUS_INTERVAL`]),
//! and `WATCHDOG=1` at half of `$WATCHDOG_USEC` while its runtime turns.
//! One task owns what was sent and when; `main` tells it the phase.
//! Instances never see these variables (`orchestrator::process` removes
//! them from their environment).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use sd_notify::NotifyState;
use tokio::{
    sync::{
        broadcast::{Receiver, error::RecvError},
        mpsc,
    },
    time::Instant,
};

use crate::orchestrator::{Orchestrator, events::Event, status::InstanceState};

/// The most often `STATUS=` changes: a burst of instance events (a
/// workspace starting) is one update, not hundreds of datagrams.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Where the daemon is in its life.
enum Phase {
    /// Serving, with the instances to count.
    Serving(Arc<Orchestrator>),
    /// Stopping.
    Stopping,
}

/// Tells the service manager's task what happens; does nothing when the
/// daemon has no service manager.
#[derive(Debug)]
pub struct ServiceManager(Option<mpsc::UnboundedSender<Phase>>);

impl ServiceManager {
    /// Starts telling the service manager named by `$NOTIFY_SOCKET`, if
    /// any: the watchdog from now on (start-up included).
    pub fn start() -> Self {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Self(None);
        }
        let (sender, phases) = mpsc::unbounded_channel();
        let watchdog = sd_notify::watchdog_enabled().map(|timeout| timeout / 2);
        tracing::info!(?watchdog, "telling the service manager (NOTIFY_SOCKET)");
        tokio::spawn(Notifier::default().run(phases, watchdog));
        Self(Some(sender))
    }

    /// Every listener serves: `READY=1`, then the counts as they change.
    pub fn serving(&self, orchestrator: Arc<Orchestrator>) {
        self.tell(Phase::Serving(orchestrator));
    }

    /// The daemon begins to stop: `STOPPING=1`.
    pub fn stopping(&self) {
        self.tell(Phase::Stopping);
    }

    fn tell(&self, phase: Phase) {
        if let Some(sender) = &self.0 {
            // The task ends only with the runtime.
            let _ = sender.send(phase);
        }
    }
}

/// The task's state.
#[derive(Default)]
struct Notifier {
    orchestrator: Option<Arc<Orchestrator>>,
    stopping: bool,
    /// The status last sent, not sent again.
    sent: String,
    /// A change not told yet.
    changed: bool,
    /// When the next status may go.
    next_status: Option<Instant>,
    /// Whether a failed send was logged (once is enough).
    failing: bool,
}

impl Notifier {
    async fn run(mut self, mut phases: mpsc::UnboundedReceiver<Phase>, watchdog: Option<Duration>) {
        let mut events: Option<Receiver<Arc<Event>>> = None;
        let mut ping = watchdog.map(tokio::time::interval);
        loop {
            let status_due = self.next_status.unwrap_or_else(Instant::now);
            tokio::select! {
                phase = phases.recv() => match phase {
                    Some(Phase::Serving(orchestrator)) => {
                        events = Some(orchestrator.subscribe(None).events);
                        self.orchestrator = Some(orchestrator);
                        let status = self.status();
                        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
                        self.sent = status;
                    }
                    Some(Phase::Stopping) => {
                        self.stopping = true;
                        let status = self.status();
                        self.send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
                        self.sent = status;
                    }
                    None => return,
                },
                changed = next_change(&mut events) => {
                    if changed {
                        self.changed = true;
                    } else {
                        events = None;
                    }
                }
                () = tokio::time::sleep_until(status_due), if self.changed => {
                    self.changed = false;
                    let status = self.status();
                    if status != self.sent {
                        self.send(&[NotifyState::Status(&status)]);
                        self.sent = status;
                        self.next_status = Some(Instant::now() + STATUS_INTERVAL);
                    }
                }
                _ = tick(&mut ping) => self.send(&[NotifyState::Watchdog]),
            }
        }
    }

    /// The status line: the phase and the instances by state.
    fn status(&self) -> String {
        let phase = if self.stopping {
            "stopping"
        } else if self.orchestrator.is_some() {
            "serving"
        } else {
            "starting"
        };
        match &self.orchestrator {
            Some(orchestrator) => format!("{phase}; {}", counts(&orchestrator.counts())),
            None => phase.to_owned(),
        }
    }

    fn send(&mut self, states: &[NotifyState]) {
        match sd_notify::notify(states) {
            Ok(()) => self.failing = false,
            Err(err) if !self.failing => {
                self.failing = true;
                tracing::warn!(%err, "cannot tell the service manager (NOTIFY_SOCKET)");
            }
            Err(_) => {}
        }
    }
}

/// "3 instances: 2 running, 1 failed".
fn counts(counts: &BTreeMap<InstanceState, u32>) -> String {
    let total: u32 = counts.values().sum();
    let by_state: Vec<String> = (counts.iter())
        .filter(|(_, count)| **count > 0)
        // Every state's name is one word.
        .map(|(state, count)| format!("{count} {}", format!("{state:?}").to_lowercase()))
        .collect();
    let noun = if total == 1 { "instance" } else { "instances" };
    if by_state.is_empty() {
        format!("{total} {noun}")
    } else {
        format!("{total} {noun}: {}", by_state.join(", "))
    }
}

/// Whether the board changed (true) or its bus is gone (false); never,
/// before there is a board.
async fn next_change(events: &mut Option<Receiver<Arc<Event>>>) -> bool {
    let Some(events) = events else {
        return std::future::pending().await;
    };
    match events.recv().await {
        Ok(_) | Err(RecvError::Lagged(_)) => true,
        Err(RecvError::Closed) => false,
    }
}

/// The next watchdog tick; never, without a watchdog.
async fn tick(ping: &mut Option<tokio::time::Interval>) {
    match ping {
        Some(ping) => {
            ping.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_name_the_states_that_have_instances() {
        let mut by_state: BTreeMap<InstanceState, u32> =
            InstanceState::ALL.iter().map(|&state| (state, 0)).collect();
        assert_eq!(counts(&by_state), "0 instances");
        by_state.insert(InstanceState::Running, 2);
        by_state.insert(InstanceState::Failed, 1);
        assert_eq!(counts(&by_state), "3 instances: 2 running, 1 failed");
    }
}
