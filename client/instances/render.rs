//! Instances as text: the one-line summary, `get`'s details, `ls`'s table,
//! `logs`' lines and `watch`'s events.

use std::{collections::BTreeMap, process::ExitCode, time::SystemTime};

use outpost::proto::v1::{self as pb, status_event::Change, watch_status_response::Payload};
use serde::Serialize;

use crate::{failure::Failure, output};

/// A response that carries the instance a command acted on.
pub(super) trait InstanceReply: Serialize {
    fn instance(&self) -> Option<&pb::Instance>;
}

macro_rules! instance_replies {
    ($($response:ty),+ $(,)?) => {$(
        impl InstanceReply for $response {
            fn instance(&self) -> Option<&pb::Instance> {
                self.instance.as_ref()
            }
        }
    )+};
}

instance_replies!(
    pb::CreateInstanceResponse,
    pb::GetOrCreateInstanceResponse,
    pb::StartInstanceResponse,
    pb::StopInstanceResponse,
    pb::RestartInstanceResponse,
    pb::RecordActivityResponse,
    pb::RegisterExternalInstanceResponse,
);

/// Prints a response holding one instance: JSON, or a one-line summary.
pub(super) fn print_instance(
    json: bool,
    response: &impl InstanceReply,
) -> Result<ExitCode, Failure> {
    if json {
        output::json(response)?;
    } else if let Some(instance) = response.instance() {
        let mut facts = Vec::new();
        if instance.pid != 0 {
            facts.push(format!("pid {}", instance.pid));
        }
        if instance.port != 0 {
            facts.push(format!("port {}", instance.port));
        }
        let facts = if facts.is_empty() {
            String::new()
        } else {
            format!(" ({})", facts.join(", "))
        };
        let state = output::instance_state(instance.state);
        output::outln!("{}: {state}{facts}", instance.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// `ls` in text form.
pub fn print_table(instances: &[pb::Instance]) -> Result<ExitCode, Failure> {
    let mut rows = vec![HEADER.map(str::to_owned)];
    rows.extend(instances.iter().map(row));
    output::done(output::table(&rows))
}

const HEADER: [&str; 8] = [
    "NAME", "STATE", "PID", "PORT", "UPTIME", "RESTARTS", "CPU", "MEM",
];

fn row(instance: &pb::Instance) -> [String; 8] {
    let (cpu, memory) = usage(instance);
    [
        instance.name.clone(),
        output::instance_state(instance.state),
        number(instance.pid),
        number(instance.port),
        uptime(instance),
        instance.restart_count.to_string(),
        cpu,
        memory,
    ]
}

/// `ls` over several daemons: a CONTEXT column first; a daemon that
/// answered with an error (or not at all) is one row saying so.
pub fn print_across(
    answers: &BTreeMap<String, Result<pb::ListInstancesResponse, String>>,
) -> Result<ExitCode, Failure> {
    let mut rows = vec![std::array::from_fn::<String, 9, _>(|i| match i {
        0 => "CONTEXT".to_owned(),
        i => HEADER[i - 1].to_owned(),
    })];
    for (context, answer) in answers {
        match answer {
            Ok(response) => rows.extend(response.instances.iter().map(|instance| {
                let cells = row(instance);
                std::array::from_fn(|i| match i {
                    0 => context.clone(),
                    i => cells[i - 1].clone(),
                })
            })),
            // The reason last, where its length widens no column.
            Err(error) => rows.push(std::array::from_fn(|i| match i {
                0 => context.clone(),
                1 => "-".to_owned(),
                2 => "unreachable".to_owned(),
                8 => error.clone(),
                _ => String::new(),
            })),
        }
    }
    output::done(output::table(&rows))
}

/// `get` in text form.
pub(super) fn print_details(instance: &pb::Instance) -> Result<(), Failure> {
    let spec = instance.spec.clone().unwrap_or_default();
    let command = std::iter::once(spec.command.as_str())
        .chain(spec.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let unspecified = || "unspecified".to_owned();
    let kind = output::word(
        instance.kind,
        pb::InstanceKind::as_str_name,
        "INSTANCE_KIND_",
    )
    .unwrap_or_else(unspecified);
    let last_exit = instance
        .last_exit
        .as_ref()
        .map_or("-".to_owned(), |exit| match exit.outcome {
            Some(pb::exit_status::Outcome::Code(code)) => format!("exit code {code}"),
            Some(pb::exit_status::Outcome::Signal(_)) => format!("signal {}", exit.signal_name),
            None => "unknown".to_owned(),
        });
    let mut rows = vec![
        ("name", instance.name.clone()),
        ("id", instance.id.clone()),
        ("kind", kind),
        ("state", output::instance_state(instance.state)),
        ("pid", number(instance.pid)),
        ("port", number(instance.port)),
        ("uptime", uptime(instance)),
        ("restarts", instance.restart_count.to_string()),
        ("last exit", last_exit),
        ("command", command),
        ("project", non_empty(&instance.project_path)),
    ];
    if let Some(health) = &instance.health {
        let mut text = output::word(health.state, pb::HealthState::as_str_name, "HEALTH_STATE_")
            .filter(|state| state != "unspecified")
            .unwrap_or_else(|| "unknown".to_owned());
        if !health.last_failure.is_empty() {
            text = format!("{text} (last failure: {})", health.last_failure);
        }
        rows.push(("health", text));
    }
    if let Some(backoff) = &instance.backoff {
        let breaker = output::word(
            backoff.breaker,
            pb::BreakerState::as_str_name,
            "BREAKER_STATE_",
        )
        .unwrap_or_else(unspecified);
        rows.push((
            "breaker",
            format!(
                "{breaker}, {} failures in a row",
                backoff.consecutive_failures
            ),
        ));
        if let Some(next) = &backoff.next_attempt_at {
            let wait = outpost::limits::system_time(next)
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            rows.push((
                "next attempt",
                format!("in {}", output::seconds(wait.as_secs())),
            ));
        }
    }
    if let Some(spec) = instance.spec.as_ref().filter(|s| !s.depends_on.is_empty()) {
        let mut after: Vec<String> = (spec.depends_on.iter())
            .map(|(name, &condition)| {
                let condition = output::word(
                    condition,
                    pb::DependencyCondition::as_str_name,
                    "DEPENDENCY_CONDITION_",
                )
                .filter(|word| word != "unspecified")
                .unwrap_or_else(|| "ready".to_owned());
                format!("{name} ({condition})")
            })
            .collect();
        after.sort();
        rows.push(("after", after.join(", ")));
    }
    if instance.spec.as_ref().is_some_and(|s| s.restart_dependents) {
        rows.push(("dependents", "restarted with it".to_owned()));
    }
    if !instance.waiting_for.is_empty() {
        rows.push(("waiting for", instance.waiting_for.clone()));
    }
    if !instance.ready_by.is_empty() {
        rows.push(("ready by", instance.ready_by.clone()));
    }
    if !instance.notify_status.is_empty() {
        rows.push(("status", instance.notify_status.clone()));
    }
    if !instance.limits_enforcement.is_empty() {
        rows.push(("limits", instance.limits_enforcement.clone()));
    }
    let (cpu, memory) = usage(instance);
    rows.push(("cpu / memory", format!("{cpu} / {memory}")));
    if !instance.last_error.is_empty() {
        rows.push(("last error", instance.last_error.clone()));
    }
    output::rows(&rows)?;
    for failure in &instance.recent_failures {
        output::outln!("  failure: {}", failure.message);
    }
    Ok(())
}

/// One `logs` message: stdout lines to stdout, stderr lines to stderr; a
/// piece of a long line is followed by the next piece, not a newline.
pub(super) fn print_log_lines(response: pb::StreamLogsResponse) {
    for line in response.lines {
        if line.stream == pb::LogStream::Stderr as i32 {
            output::piece(&mut std::io::stderr(), &line.text, line.partial);
        } else {
            output::piece(&mut std::io::stdout(), &line.text, line.partial);
        }
    }
}

/// One `watch` message: a snapshot's instances, or a line per event.
pub(super) fn print_watch(response: pb::WatchStatusResponse) {
    match response.payload {
        Some(Payload::Snapshot(snapshot)) => {
            let kind = if snapshot.kind == pb::SnapshotKind::Resync as i32 {
                "resync"
            } else {
                "snapshot"
            };
            output::outln!(
                "{:>6}  {kind}: {} instances",
                snapshot.revision,
                snapshot.instances.len()
            );
            for instance in &snapshot.instances {
                let state = output::instance_state(instance.state);
                output::outln!("{:>6}  {} {state}", "", instance.name);
            }
        }
        Some(Payload::Events(events)) => {
            for event in events.events {
                output::outln!("{:>6}  {}", event.revision, describe_event(event.change));
            }
        }
        None => {}
    }
}

/// A status change, e.g. "web starting → running (ready)".
fn describe_event(change: Option<Change>) -> String {
    match change {
        Some(Change::InstanceChanged(changed)) => {
            let Some(instance) = changed.instance else {
                return String::new();
            };
            let reason = output::word(
                changed.reason,
                pb::TransitionReason::as_str_name,
                "TRANSITION_REASON_",
            )
            .unwrap_or_default();
            let previous = if changed.previous_state == 0 {
                "created".to_owned()
            } else {
                output::instance_state(changed.previous_state)
            };
            let detail = if changed.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", changed.detail)
            };
            format!(
                "{} {previous} → {} ({reason}{detail})",
                instance.name,
                output::instance_state(instance.state)
            )
        }
        Some(Change::InstanceDeleted(deleted)) => format!("{} deleted", deleted.name),
        Some(Change::WorkspaceApplied(applied)) => {
            format!(
                "workspace {} applied",
                applied.workspace.map(|w| w.name).unwrap_or_default()
            )
        }
        Some(Change::WorkspaceRejected(rejected)) => {
            format!(
                "workspace {} rejected: {}",
                rejected.workspace,
                rejected.errors.join("; ")
            )
        }
        None => String::new(),
    }
}

/// CPU% and resident memory, or dashes when not sampled.
fn usage(instance: &pb::Instance) -> (String, String) {
    match &instance.usage {
        Some(usage) => (
            format!("{:.1}%", usage.cpu_percent),
            format!("{:.1}M", usage.rss_bytes as f64 / (1 << 20) as f64),
        ),
        None => ("-".to_owned(), "-".to_owned()),
    }
}

/// A pid or port; 0 means none.
fn number(value: u32) -> String {
    if value == 0 {
        "-".to_owned()
    } else {
        value.to_string()
    }
}

/// Time since the current process started, while one runs.
fn uptime(instance: &pb::Instance) -> String {
    match instance.started_at.as_ref().filter(|_| instance.pid != 0) {
        Some(started) => output::seconds(output::seconds_since(started.seconds.max(0))),
        None => "-".to_owned(),
    }
}

fn non_empty(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}
