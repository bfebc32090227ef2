//! How an instance becomes ready and stays alive: its health probe (each
//! probe a task of its own, its result tagged with the process
//! generation), and its readiness source — a log line or sd_notify
//! ([`crate::orchestrator::readiness`]) — with the sd_notify watchdog.

use std::time::{Instant, SystemTime};

use tokio::task::AbortHandle;

use outpost::spec::Probe;

use super::{Actor, HealthState, InstanceKind, InstanceState, ReadyBy, Reason, deadline, health};
use crate::orchestrator::{
    limits::MEMORY_CHECK,
    readiness::{Note, Signal, Source},
    watched::Process,
};

/// The task listening to a process's readiness source; it ends (closing
/// the notify socket and removing its file) when this is dropped.
pub(super) struct Listening(pub(super) AbortHandle);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Actor {
    /// Arms readiness for a fresh process, whose readiness source (if it
    /// has one) starts listening now. With a readiness condition it waits
    /// for it; otherwise with no probe it is ready now. An external one is
    /// running as soon as it is registered: its probe only tells whether it
    /// is healthy (the daemon cannot restart it).
    pub(super) fn on_spawned(&mut self, source: Option<Source>) {
        self.generation += 1;
        self.probe_successes = 0;
        self.status.health = Default::default();
        self.status.ready_by = None;
        self.status.notify_status = None;
        self.listening = source
            .and_then(|source| source.start(self.generation, self.signals.0.clone()))
            .map(Listening);
        let now = Instant::now();
        let spec = &self.status.spec;
        self.memory = Default::default();
        if spec.limits.memory_max.is_some() {
            self.timers.memory = Some(deadline(now, MEMORY_CHECK));
        }
        if spec.health.probe == Probe::None {
            self.status.health.state = HealthState::Healthy;
        } else {
            self.timers.probe = Some(now);
        }
        if self.status.kind == InstanceKind::External {
            self.on_ready(ReadyBy::Started);
        } else if spec.readiness.is_set() || spec.health.probe != Probe::None {
            self.timers.startup = Some(deadline(now, spec.startup_timeout));
        } else {
            self.on_ready(ReadyBy::Started);
        }
    }

    /// Resumes checking and timing a re-adopted process where its state
    /// was: probes, memory, the startup deadline or the timers of a
    /// running one, and its readiness source listening again (its notify
    /// socket bound anew where the process sends).
    pub(super) fn arm_adopted_timers(&mut self) {
        let now = Instant::now();
        let spec = self.status.spec.clone();
        if spec.health.probe != Probe::None {
            self.timers.probe = Some(now);
        }
        if spec.limits.memory_max.is_some() {
            self.timers.memory = Some(deadline(now, MEMORY_CHECK));
        }
        if self.status.state == InstanceState::Starting {
            self.timers.startup = Some(deadline(now, spec.startup_timeout));
        } else {
            self.timers.reset = Some(deadline(now, spec.restart.reset_after));
            self.timers.idle = spec.idle_timeout.map(|timeout| deadline(now, timeout));
            self.timers.watchdog = spec.readiness.watchdog.map(|every| deadline(now, every));
        }
        let Some(Process::Adopted { info, .. }) = &self.process else {
            return;
        };
        if !spec.readiness.is_set() {
            return;
        }
        let logs = self.context.logs(&self.status.id);
        match Source::readopt(
            &spec,
            &self.status.id,
            info.pid,
            &self.context.data_dir,
            logs,
        ) {
            Ok(source) => {
                self.listening = source
                    .start(self.generation, self.signals.0.clone())
                    .map(Listening);
            }
            Err(err) => tracing::warn!(
                id = self.status.id,
                %err,
                "cannot listen for a re-adopted process's readiness; its deadlines judge it"
            ),
        }
    }

    /// Whether there is something to probe: a process, or an external
    /// instance registered with a port alone while it is deemed running.
    pub(super) fn probed(&self) -> bool {
        self.process.is_some()
            || (self.status.kind == InstanceKind::External && self.status.state.is_active())
    }

    fn on_ready(&mut self, by: ReadyBy) {
        self.timers.startup = None;
        self.status.ready_by = Some(by);
        let spec = &self.status.spec;
        let now = Instant::now();
        self.timers.reset = Some(deadline(now, spec.restart.reset_after));
        self.timers.idle = spec.idle_timeout.map(|timeout| deadline(now, timeout));
        if let Some(watchdog) = spec.readiness.watchdog {
            self.timers.watchdog = Some(deadline(now, watchdog));
        }
        let detail = self.status.ready_by.as_ref().map(ToString::to_string);
        self.transition(
            InstanceState::Running,
            Reason::Ready,
            detail.unwrap_or_default(),
        );
        for reply in self.waiting_ready.drain(..) {
            let _ = reply.send(Ok(self.status.clone()));
        }
    }

    /// Runs one probe in a task of its own; its result comes back tagged
    /// with this process's generation.
    pub(super) fn launch_probe(&mut self) {
        // While a probe is in flight, its result re-arms the timer.
        if self.probing || !self.probed() {
            return;
        }
        self.probing = true;
        let probe = self.status.spec.health.probe.clone();
        let timeout = self.status.spec.health.timeout;
        let port = self.status.port;
        let generation = self.generation;
        let results = self.probe_results.0.clone();
        let shared = self.context.clone();
        tokio::spawn(async move {
            let result = health::check(&probe, port, timeout, &shared.reaper).await;
            let _ = results.send((generation, result)).await;
        });
        self.timers.probe = Some(deadline(Instant::now(), self.status.spec.health.interval));
    }

    pub(super) async fn on_probe_result(&mut self, generation: u64, result: Result<(), String>) {
        self.probing = false;
        if generation != self.generation || !self.probed() {
            return; // a result about an earlier process
        }
        if self.timers.probe.is_none() {
            // The probe outlasted its interval: the next one is due now.
            self.timers.probe = Some(Instant::now());
        }
        let check = self.status.spec.health.clone();
        let health = &mut self.status.health;
        health.last_check_at = Some(SystemTime::now());
        match result {
            Ok(()) => {
                health.consecutive_failures = 0;
                self.probe_successes = self.probe_successes.saturating_add(1);
                match self.status.state {
                    InstanceState::Starting => {
                        self.status.health.state = HealthState::Healthy;
                        // With a readiness condition, health is not readiness.
                        if !self.status.spec.readiness.is_set() {
                            self.on_ready(ReadyBy::Probe);
                        }
                    }
                    InstanceState::Running
                        if self.status.health.state != HealthState::Healthy
                            && self.probe_successes >= check.success_threshold =>
                    {
                        // An external instance's first pass is its readiness.
                        let reason = if self.status.health.state == HealthState::Unknown {
                            Reason::Ready
                        } else {
                            Reason::HealthRecovered
                        };
                        self.status.health.state = HealthState::Healthy;
                        self.status.health.last_failure = None;
                        self.publish(InstanceState::Running, reason, String::new());
                    }
                    _ => {}
                }
            }
            Err(message) => {
                self.probe_successes = 0;
                health.consecutive_failures = health.consecutive_failures.saturating_add(1);
                health.last_failure = Some(message.clone());
                let unhealthy = self.status.state == InstanceState::Running
                    && health.consecutive_failures >= check.failure_threshold
                    && health.state != HealthState::Unhealthy;
                if unhealthy {
                    self.status.health.state = HealthState::Unhealthy;
                    self.timers.reset = None;
                    self.publish(
                        InstanceState::Running,
                        Reason::HealthFailure,
                        message.clone(),
                    );
                    if self.restarts_on_failure() {
                        // A hung process: alive, not answering. Replace it.
                        self.kill_process().await;
                        self.on_failure(Reason::HealthFailure, message, None);
                    }
                }
            }
        }
    }

    /// What the process's readiness source reported.
    pub(super) async fn on_signal(&mut self, signal: Signal) {
        if signal.generation != self.generation || self.process.is_none() {
            return; // about an earlier process
        }
        let starting = self.status.state == InstanceState::Starting;
        match signal.note {
            Note::LogLine(line) if starting => self.on_ready(ReadyBy::LogLine(line)),
            Note::Ready if starting && self.status.spec.readiness.notify => {
                self.on_ready(ReadyBy::Notify);
            }
            Note::Watchdog => {
                if let (Some(watchdog), InstanceState::Running) =
                    (self.status.spec.readiness.watchdog, self.status.state)
                {
                    self.timers.watchdog = Some(deadline(Instant::now(), watchdog));
                }
            }
            Note::WatchdogTrigger if self.status.state == InstanceState::Running => {
                self.timers.watchdog = None;
                self.on_watchdog_missed().await;
            }
            Note::Status(text) => {
                self.status.notify_status = Some(text);
                self.context.refresh(&self.status);
            }
            Note::Stopping => {
                self.status.notify_status = Some("stopping (STOPPING=1)".to_owned());
                self.context.refresh(&self.status);
            }
            Note::LogLine(_) | Note::Ready | Note::WatchdogTrigger => {}
        }
    }

    /// The watchdog went unfed (or the process asked to be treated so):
    /// the process is hung as far as anyone can tell, and is replaced as
    /// the restart policy says.
    pub(super) async fn on_watchdog_missed(&mut self) {
        let interval = self.status.spec.readiness.watchdog.unwrap_or_default();
        let message = format!(
            "no WATCHDOG=1 within {}",
            humantime::format_duration(interval)
        );
        self.kill_process().await;
        self.on_failure(Reason::Watchdog, message, None);
    }
}
