//! What every instance actor shares: the status board, the record writer,
//! the reaper, the /proc scanner, the log files, and the identity of this
//! machine's boot. Built once by [`Orchestrator::start`](super::Orchestrator)
//! and handed to each actor.

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::SystemTime};

use outpost::spec::InstanceSpec;

use super::{
    events::{Change, StatusBoard},
    limits::Capabilities,
    logs::{LogFiles, spares::LogSpares},
    process,
    readiness::Source,
    reaper::Reaper,
    records::{Op, Transition},
    scanner::Scanner,
    status::{InstanceStatus, ProcessInfo, Usage},
    usage::UsageSampler,
    watched::Process,
    writer::RecordWriter,
};

/// What actors share.
pub struct Context {
    /// The event bus and current status of every instance.
    pub board: StatusBoard,
    /// Persists every change.
    pub writer: RecordWriter,
    /// The only waitpid of the daemon; spawns register with it.
    pub reaper: Arc<Reaper>,
    /// The shared /proc scans.
    pub scanner: Scanner,
    /// Where the instances' log directories are.
    pub logs_root: PathBuf,
    /// Log directories made ahead for new instances.
    pub log_spares: Arc<LogSpares>,
    /// The daemon's data directory (its processes carry it as a marker).
    pub data_dir: PathBuf,
    /// This boot of the machine: a recorded pid means nothing after a
    /// reboot.
    pub boot_id: String,
    /// Resource usage per instance, sampled when read.
    pub usage: UsageSampler,
    /// What limits the machine lets the daemon enforce.
    pub limits: Capabilities,
}

impl Context {
    /// Publishes a transition on the board and queues it for the store.
    pub fn publish(&self, change: Change) {
        if let Change::Instance {
            status,
            reason,
            detail,
            ..
        } = &change
        {
            self.writer.submit(Op::Upsert {
                status: Box::new(status.clone()),
                transition: Some(Transition {
                    at: SystemTime::now(),
                    reason: *reason,
                    detail: detail.clone(),
                }),
            });
        }
        self.board.publish(change);
    }

    /// Updates an instance's status without a transition (board and store).
    pub fn refresh(&self, status: &InstanceStatus) {
        self.board.refresh(status);
        self.writer.submit(Op::Upsert {
            status: Box::new(status.clone()),
            transition: None,
        });
    }

    /// The latest usage of every running (not external) instance's tree,
    /// by its group; a stale sample is refreshed for the instances running
    /// now (see [`UsageSampler::latest`]).
    pub fn latest_usage(&self) -> Arc<HashMap<i32, Usage>> {
        self.usage.latest(|| self.board.running())
    }

    /// The log files of instance `id`.
    pub fn logs(&self, id: &str) -> LogFiles {
        LogFiles::new(&self.logs_root, id)
    }

    /// Spawns the process of a managed instance, its `generation`'th, with
    /// the readiness source that listens to it.
    pub fn spawn(
        &self,
        id: &str,
        spec: &InstanceSpec,
        port: Option<u16>,
        generation: u64,
    ) -> Result<Spawned, process::SpawnError> {
        let logs = self.logs(id);
        let readiness = Source::prepare(spec, id, generation, &self.data_dir, logs.clone())
            .map_err(process::SpawnError::Readiness)?;
        let mut command = process::command(
            id,
            spec,
            port,
            &self.data_dir,
            &logs,
            &self.log_spares,
            readiness.notify_socket(),
        )?;
        let spawned = self
            .reaper
            .spawn(&mut command)
            .map_err(|err| process::spawn_error(spec, err))?;
        let start_ticks =
            process::read_entry(spawned.pid as i32).map_or(0, |entry| entry.start_ticks);
        let process = Process::Managed {
            info: ProcessInfo {
                pid: spawned.pid,
                pgid: spawned.pid,
                start_ticks,
                started_at: SystemTime::now(),
            },
            exit: spawned.exit,
        };
        Ok(Spawned { process, readiness })
    }
}

/// A spawned process and what listens for its readiness.
pub struct Spawned {
    pub process: Process,
    pub readiness: Source,
}
