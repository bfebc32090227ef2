//! `outpostctl wait NAME… [--for ready|stopped|completed]`: returns as soon
//! as every named instance has reached the condition, judged from the
//! status stream (a snapshot, then each change as it happens: no polling).
//! Scripts and CI use it instead of sleeping. The global `--timeout` is the
//! whole wait's deadline.

use std::{
    collections::BTreeMap,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::{Args, ValueEnum};
use outpost::{
    endpoint::Connection,
    proto::v1::{self as pb, exit_status::Outcome, status_event::Change, watch_status_response},
};
use tokio_stream::StreamExt;

use crate::{failure::Failure, output};

/// Exit status when the deadline passed first (as coreutils' `timeout`).
const TIMED_OUT: u8 = 124;

/// `wait`'s arguments.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The instances (names or ids)
    #[arg(required = true, value_name = "NAME")]
    instances: Vec<String>,
    /// What to wait for
    #[arg(long = "for", value_enum, default_value_t = Target::Ready)]
    target: Target,
}

/// What `wait` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    /// RUNNING: started, and ready and healthy
    Ready,
    /// Not running: STOPPED, FAILED or ERROR (or deleted)
    Stopped,
    /// Exited with status 0 (one-shot tasks such as migrations)
    Completed,
}

/// Where one instance stands against the target.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Reached,
    Waiting,
    /// It never will without someone's help; says why.
    Failed(String),
}

/// Waits for `args`, at most `deadline`.
pub async fn run(
    connection: &Connection,
    json: bool,
    args: WaitArgs,
    deadline: Duration,
) -> Result<ExitCode, Failure> {
    let end = Instant::now() + deadline;
    let request = pb::WatchStatusRequest {
        instances: args.instances.clone(),
        ..Default::default()
    };
    let mut stream = connection
        .orchestrator()
        .watch_status(request)
        .await?
        .into_inner();
    let mut board = Board::new(&args.instances);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let message = match tokio::time::timeout(left, stream.next()).await {
            Err(_) => return timed_out(json, &board, args.target, deadline),
            Ok(None) => {
                return Err(Failure::Rpc(tonic::Status::unavailable(
                    "the daemon ended the status stream (is it shutting down?)",
                )));
            }
            Ok(Some(message)) => message?,
        };
        let first = !board.seen;
        board.apply(message);
        // Missing from the first snapshot: never there. Gone later: deleted,
        // which the target judges.
        if let (true, Some(unknown)) = (first && board.seen, board.missing()) {
            return Err(Failure::Rpc(tonic::Status::not_found(format!(
                "instance {unknown} does not exist"
            ))));
        }
        let verdicts = board.verdicts(args.target);
        if let Some((name, why)) = verdicts.iter().find_map(|(name, verdict)| match verdict {
            Verdict::Failed(why) => Some((name, why)),
            _ => None,
        }) {
            return Err(Failure::Wait(format!(
                "{name} will not be {}: {why}",
                args.target.word()
            )));
        }
        if verdicts
            .values()
            .all(|verdict| *verdict == Verdict::Reached)
        {
            if json {
                output::json(&board.summary())?;
            } else {
                output::outln!("{} {}", board.names().join(", "), args.target.word());
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn timed_out(
    json: bool,
    board: &Board,
    target: Target,
    deadline: Duration,
) -> Result<ExitCode, Failure> {
    let pending: Vec<String> = board
        .verdicts(target)
        .into_iter()
        .filter(|(_, verdict)| *verdict != Verdict::Reached)
        .map(|(name, _)| format!("{name} ({})", board.state_of(&name)))
        .collect();
    if json {
        output::json(&board.summary())?;
    }
    output::errln!(
        "outpostctl: timed out after {} waiting for {} to be {}",
        humantime::format_duration(deadline),
        pending.join(", "),
        target.word()
    );
    Ok(ExitCode::from(TIMED_OUT))
}

impl Target {
    fn word(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Stopped => "stopped",
            Self::Completed => "completed",
        }
    }

    /// Where `instance` stands (None: deleted).
    fn judge(self, instance: Option<&pb::Instance>) -> Verdict {
        use pb::InstanceState as S;
        let Some(instance) = instance else {
            return match self {
                Self::Stopped => Verdict::Reached,
                _ => Verdict::Failed("it was deleted".to_owned()),
            };
        };
        let state = instance.state();
        let exit_code = instance
            .last_exit
            .as_ref()
            .and_then(|exit| match exit.outcome {
                Some(Outcome::Code(code)) => Some(code),
                _ => None,
            });
        let cause = || {
            let state = output::instance_state(instance.state);
            if instance.last_error.is_empty() {
                format!("it is {state}")
            } else {
                format!("it is {state}: {}", instance.last_error)
            }
        };
        // Waiting on a dependency that failed or is gone: it will not
        // start without someone's help, like a failed instance.
        let blocked = state == S::Waiting
            && instance.state_reason() == pb::TransitionReason::DependencyBlocked;
        match (self, state) {
            (Self::Ready | Self::Completed, S::Waiting) if blocked => {
                Verdict::Failed(format!("it waits for {}", instance.waiting_for))
            }
            (Self::Ready, S::Running) => Verdict::Reached,
            (Self::Ready, S::Stopped | S::Failed | S::Error) => Verdict::Failed(cause()),
            (Self::Stopped, S::Stopped | S::Failed | S::Error) => Verdict::Reached,
            (Self::Completed, S::Stopped | S::Failed | S::Error) => match exit_code {
                Some(0) => Verdict::Reached,
                Some(code) => Verdict::Failed(format!("it exited with status {code}")),
                None => Verdict::Failed(cause()),
            },
            _ => Verdict::Waiting,
        }
    }
}

/// The named instances as the stream last showed them.
struct Board {
    /// By the name (or id) the user gave: the instance, None once deleted.
    asked: BTreeMap<String, Option<pb::Instance>>,
    /// Whether a snapshot has arrived (before it, nothing is known).
    seen: bool,
}

impl Board {
    fn new(names: &[String]) -> Self {
        Self {
            asked: names.iter().map(|name| (name.clone(), None)).collect(),
            seen: false,
        }
    }

    fn apply(&mut self, message: pb::WatchStatusResponse) {
        match message.payload {
            Some(watch_status_response::Payload::Snapshot(snapshot)) => {
                self.seen = true;
                for (asked, slot) in &mut self.asked {
                    *slot = snapshot
                        .instances
                        .iter()
                        .find(|instance| names(instance, asked))
                        .cloned();
                }
            }
            Some(watch_status_response::Payload::Events(batch)) => {
                for event in batch.events {
                    match event.change {
                        Some(Change::InstanceChanged(changed)) => {
                            if let Some(instance) = changed.instance {
                                self.update(instance);
                            }
                        }
                        Some(Change::InstanceDeleted(deleted)) => {
                            for (asked, slot) in &mut self.asked {
                                if *asked == deleted.id || *asked == deleted.name {
                                    *slot = None;
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            None => {}
        }
    }

    fn update(&mut self, instance: pb::Instance) {
        for (asked, slot) in &mut self.asked {
            if names(&instance, asked) {
                *slot = Some(instance.clone());
            }
        }
    }

    /// A name the board has no instance for.
    fn missing(&self) -> Option<&str> {
        (self.asked.iter())
            .find(|(_, instance)| instance.is_none())
            .map(|(name, _)| name.as_str())
    }

    fn verdicts(&self, target: Target) -> BTreeMap<String, Verdict> {
        (self.asked.iter())
            .map(|(name, instance)| {
                let verdict = if self.seen {
                    target.judge(instance.as_ref())
                } else {
                    Verdict::Waiting
                };
                (name.clone(), verdict)
            })
            .collect()
    }

    fn state_of(&self, name: &str) -> String {
        match self.asked.get(name) {
            Some(Some(instance)) if !instance.waiting_for.is_empty() => format!(
                "{}, for {}",
                output::instance_state(instance.state),
                instance.waiting_for
            ),
            Some(Some(instance)) => output::instance_state(instance.state),
            _ => "deleted".to_owned(),
        }
    }

    fn names(&self) -> Vec<String> {
        self.asked.keys().cloned().collect()
    }

    fn summary(&self) -> BTreeMap<String, Option<pb::Instance>> {
        self.asked.clone()
    }
}

/// Whether `asked` names `instance` (by name or id).
fn names(instance: &pb::Instance, asked: &str) -> bool {
    instance.name == asked || instance.id == asked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(state: pb::InstanceState, exit: Option<Outcome>) -> pb::Instance {
        pb::Instance {
            name: "web".to_owned(),
            state: state.into(),
            last_exit: exit.map(|outcome| pb::ExitStatus {
                outcome: Some(outcome),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_target_judges_every_state() {
        use pb::InstanceState as S;
        let failed = |verdict: Verdict| matches!(verdict, Verdict::Failed(_));
        for state in [S::Starting, S::Backoff, S::Stopping] {
            for target in [Target::Ready, Target::Completed] {
                assert_eq!(target.judge(Some(&instance(state, None))), Verdict::Waiting);
            }
        }
        assert_eq!(
            Target::Ready.judge(Some(&instance(S::Running, None))),
            Verdict::Reached
        );
        assert!(failed(Target::Ready.judge(Some(&instance(S::Error, None)))));
        let mut blocked = instance(S::Waiting, None);
        assert_eq!(Target::Ready.judge(Some(&blocked)), Verdict::Waiting);
        blocked.state_reason = pb::TransitionReason::DependencyBlocked.into();
        assert!(failed(Target::Ready.judge(Some(&blocked))));
        assert!(failed(Target::Completed.judge(Some(&blocked))));
        assert!(failed(Target::Ready.judge(None)));
        assert_eq!(Target::Stopped.judge(None), Verdict::Reached);
        assert_eq!(
            Target::Stopped.judge(Some(&instance(S::Failed, None))),
            Verdict::Reached
        );
        assert_eq!(
            Target::Stopped.judge(Some(&instance(S::Running, None))),
            Verdict::Waiting
        );
        assert_eq!(
            Target::Completed.judge(Some(&instance(S::Stopped, Some(Outcome::Code(0))))),
            Verdict::Reached
        );
        assert!(failed(
            Target::Completed.judge(Some(&instance(S::Failed, Some(Outcome::Code(3)))))
        ));
        assert!(failed(
            Target::Completed.judge(Some(&instance(S::Stopped, Some(Outcome::Signal(15)))))
        ));
        assert_eq!(
            Target::Completed.judge(Some(&instance(S::Running, Some(Outcome::Code(0))))),
            Verdict::Waiting,
            "an exit before a restart is not the end"
        );
    }
}
