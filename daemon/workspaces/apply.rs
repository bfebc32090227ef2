//! One apply of a workspace: validate the file, diff it against the
//! instances the workspace owns, and carry the diff out — delete what was
//! removed, create what is new, change the rest in place or, when its port
//! or project changed, by delete and create. All of it or nothing: the
//! capacity is checked before anything changes, and when a step fails,
//! every step done before it is undone in reverse order (created instances
//! deleted, their processes stopped; deleted ones created again from their
//! spec; reconfigured ones given their previous spec back). Also the
//! removal of a workspace whose file is gone, and the settled read of a
//! file an editor may be saving.

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use outpost::{
    spec::{InstanceSpec, layers},
    workspace_file::{self, Workspace},
};

use super::ApplyError;
use crate::orchestrator::{ListFilter, Orchestrator, events::WorkspaceDiff, status::InstanceState};

/// How long a missing, empty or changing file is given to settle.
const SETTLE: Duration = Duration::from_millis(300);
/// How often a file is looked at before it counts as settled as it is.
const SETTLE_TRIES: u32 = 3;

/// A file that was applied whole: what it defines and what changed.
#[derive(Debug)]
pub(super) struct Done {
    pub workspace: Workspace,
    pub diff: WorkspaceDiff,
}

/// An instance a workspace owns: its spec, and whether it was to run.
#[derive(Clone, Debug)]
pub(super) struct Owned {
    spec: InstanceSpec,
    started: bool,
}

/// A step that was carried out, and so may have to be undone.
enum Step {
    /// An instance was created.
    Created(String),
    /// An instance was deleted.
    Deleted(Owned),
    /// An instance runs a new spec in place of this one.
    Reconfigured(Owned),
}

/// Validates `text` (the content of `file`) as workspace `name` and, unless
/// `dry_run`, applies it whole. Refused before anything changes: a file
/// that does not validate (every problem listed), an apply that would
/// hold more than `max_instances`. A step that fails undoes the steps
/// before it.
pub(super) async fn apply(
    orchestrator: &Orchestrator,
    max_instances: u32,
    name: &str,
    file: &Path,
    text: &str,
    dry_run: bool,
) -> Result<Done, ApplyError> {
    let workspace = workspace_file::parse(file, text).map_err(ApplyError::Rejected)?;
    let current = owned(orchestrator, name);
    let diff = diff(&current, &workspace.instances);
    check_capacity(orchestrator, max_instances, name, &diff)?;
    if dry_run {
        return Ok(Done { workspace, diff });
    }
    let mut done = Vec::new();
    if let Err(error) = carry_out(orchestrator, name, &current, &workspace, &diff, &mut done).await
    {
        let undone = undo(orchestrator, name, done).await;
        let message = format!("workspace {name}: {error}; {undone}");
        tracing::warn!(workspace = name, error = message, "applying workspace");
        return Err(ApplyError::Failed(message));
    }
    Ok(Done { workspace, diff })
}

/// Refuses an apply that would leave the daemon holding more instances
/// than it may. Deletes run before creates, so the count never goes over
/// the final one on the way. (Another client may create instances
/// meanwhile; the orchestrator's own limit then fails a create, and the
/// apply is undone.)
fn check_capacity(
    orchestrator: &Orchestrator,
    max_instances: u32,
    name: &str,
    diff: &WorkspaceDiff,
) -> Result<(), ApplyError> {
    let held: usize = orchestrator.counts().values().map(|&n| n as usize).sum();
    let (adds, removes) = (diff.created.len(), diff.deleted.len());
    let after = (held + adds).saturating_sub(removes);
    if adds > removes && after > max_instances as usize {
        return Err(ApplyError::LimitReached(format!(
            "workspace {name} would create {adds} and delete {removes} instances: the daemon \
             would hold {after} ({held} now), over its limit of {max_instances} \
             (--max-instances); nothing was changed"
        )));
    }
    Ok(())
}

/// Carries the diff out, recording each step done in `done`; stops at the
/// first step that fails.
async fn carry_out(
    orchestrator: &Orchestrator,
    workspace: &str,
    current: &BTreeMap<String, Owned>,
    desired: &Workspace,
    diff: &WorkspaceDiff,
    done: &mut Vec<Step>,
) -> Result<(), String> {
    // Dependents go before what they depend on, and come after it.
    let current_specs: Vec<InstanceSpec> = current.values().map(|o| o.spec.clone()).collect();
    let current_layers = layer_of(&current_specs);
    let mut deleted: Vec<&String> = diff.deleted.iter().collect();
    deleted.sort_by_key(|name| std::cmp::Reverse(current_layers.get(name.as_str()).copied()));
    let desired_layers = layer_of(&desired.instances);
    let mut desired_specs: Vec<&InstanceSpec> = desired.instances.iter().collect();
    desired_specs.sort_by_key(|spec| desired_layers.get(spec.name.as_str()).copied());
    for instance in deleted {
        orchestrator
            .delete_instance(instance, false, true)
            .await
            .map_err(|err| format!("deleting {instance} failed: {err}"))?;
        done.push(Step::Deleted(current[instance].clone()));
    }
    // One layer at a time: its instances depend only on earlier ones.
    let layer_of = |spec: &&InstanceSpec| desired_layers.get(spec.name.as_str()).copied();
    for layer in desired_specs.chunk_by(|a, b| layer_of(a) == layer_of(b)) {
        let mut creates = Vec::new();
        for spec in layer {
            let name = &spec.name;
            if let Some(old) = current.get(name).filter(|_| diff.changed.contains(name)) {
                if old.spec.port == spec.port && old.spec.project_path == spec.project_path {
                    orchestrator
                        .reconfigure(name, (*spec).clone())
                        .await
                        .map_err(|err| format!("changing {name} failed: {err}"))?;
                    done.push(Step::Reconfigured(old.clone()));
                    continue;
                }
                orchestrator
                    .delete_instance(name, false, true)
                    .await
                    .map_err(|err| format!("replacing {name} failed: {err}"))?;
                done.push(Step::Deleted(old.clone()));
                creates.push(*spec);
            } else if diff.created.contains(name) {
                creates.push(*spec);
            }
        }
        create_together(orchestrator, workspace, &creates, done).await?;
    }
    Ok(())
}

/// Creates `specs` at once (their records are stored by one group commit
/// rather than one after the other), recording each created one in `done`;
/// the first failure, if any, names every create that failed.
async fn create_together(
    orchestrator: &Orchestrator,
    workspace: &str,
    specs: &[&InstanceSpec],
    done: &mut Vec<Step>,
) -> Result<(), String> {
    let creates = specs.iter().map(|spec| async move {
        let created = orchestrator
            .create((*spec).clone(), true, Some(workspace.to_owned()))
            .await;
        (spec.name.clone(), created)
    });
    let mut failed = Vec::new();
    for (name, created) in futures_util::future::join_all(creates).await {
        match created {
            Ok(_) => done.push(Step::Created(name)),
            Err(err) => failed.push(format!("creating {name} failed: {err}")),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// The layer of each of `specs`: 0 for one that depends on none of them,
/// one more than its deepest dependency among them otherwise.
fn layer_of(specs: &[InstanceSpec]) -> BTreeMap<&str, usize> {
    let graph = workspace_file::dependency_graph(specs);
    layers(&graph)
        .into_iter()
        .enumerate()
        .flat_map(|(index, layer)| layer.into_iter().map(move |name| (name, index)))
        .collect()
}

/// Undoes `done`, last step first; says what it did.
async fn undo(orchestrator: &Orchestrator, workspace: &str, done: Vec<Step>) -> String {
    let mut undone = Vec::new();
    let mut failed = Vec::new();
    for step in done.into_iter().rev() {
        let (what, result) = match step {
            Step::Created(name) => (
                format!("removed {name}"),
                orchestrator
                    .delete_instance(&name, false, true)
                    .await
                    .map(drop),
            ),
            Step::Deleted(old) => (
                format!("restored {}", old.spec.name),
                orchestrator
                    .create(old.spec, old.started, Some(workspace.to_owned()))
                    .await
                    .map(drop),
            ),
            Step::Reconfigured(old) => (
                format!("gave {} its previous spec", old.spec.name),
                orchestrator
                    .reconfigure(&old.spec.name.clone(), old.spec)
                    .await
                    .map(drop),
            ),
        };
        match result {
            Ok(()) => undone.push(what),
            Err(err) => failed.push(format!("could not have {what}: {err}")),
        }
    }
    let mut report = if undone.is_empty() {
        "no other step had been done".to_owned()
    } else {
        format!("rolled back: {}", undone.join(", "))
    };
    if !failed.is_empty() {
        report = format!("{report}; rollback incomplete: {}", failed.join("; "));
    }
    report
}

/// Removes the instances of a workspace whose file is gone.
pub(super) async fn remove(orchestrator: &Orchestrator, name: &str) -> WorkspaceDiff {
    let current = owned(orchestrator, name);
    let specs: Vec<InstanceSpec> = current.values().map(|o| o.spec.clone()).collect();
    let layers = layer_of(&specs);
    let mut instances: Vec<&String> = current.keys().collect();
    instances.sort_by_key(|name| std::cmp::Reverse(layers.get(name.as_str()).copied()));
    for instance in instances {
        if let Err(err) = orchestrator.delete_instance(instance, false, true).await {
            tracing::warn!(workspace = name, instance, %err, "cannot delete");
        }
    }
    WorkspaceDiff {
        deleted: current.into_keys().collect(),
        ..Default::default()
    }
}

/// The instances workspace `name` owns now, by name.
pub(super) fn owned(orchestrator: &Orchestrator, name: &str) -> BTreeMap<String, Owned> {
    let filter = ListFilter {
        workspace: Some(name.to_owned()),
        ..Default::default()
    };
    orchestrator
        .list(&filter)
        .instances
        .into_iter()
        .map(|status| {
            let owned = Owned {
                spec: (*status.spec).clone(),
                started: status.state != InstanceState::Stopped,
            };
            (owned.spec.name.clone(), owned)
        })
        .collect()
}

/// The diff from `current` (owned instances) to `desired`.
fn diff(current: &BTreeMap<String, Owned>, desired: &[InstanceSpec]) -> WorkspaceDiff {
    let mut diff = WorkspaceDiff::default();
    for spec in desired {
        match current.get(&spec.name) {
            None => diff.created.push(spec.name.clone()),
            Some(existing) if existing.spec == *spec => diff.unchanged.push(spec.name.clone()),
            Some(_) => diff.changed.push(spec.name.clone()),
        }
    }
    diff.deleted = current
        .keys()
        .filter(|name| !desired.iter().any(|spec| &spec.name == *name))
        .cloned()
        .collect();
    diff
}

/// What looking at a workspace file came to.
pub(super) enum Read {
    /// Its content.
    Text(String),
    /// It stayed missing.
    Missing,
    /// It cannot be read, or is refused (not a regular file, too large,
    /// not UTF-8): "path: reason".
    Refused(String),
}

/// The content of `file` once it has settled. A file that is empty or
/// changes while being read (an editor mid-save), is missing or cannot be
/// read is looked at again after a grace period. The reads run off the
/// async threads, through the contract's defensive read.
pub(super) async fn settled_text(file: &Path) -> Read {
    let mut attempt = 1;
    loop {
        let last = attempt == SETTLE_TRIES;
        let (text, stable) = look(file.to_owned()).await;
        match text {
            Ok(text) if last || (stable && !text.trim().is_empty()) => return Read::Text(text),
            Err(err) if last && err.kind() == io::ErrorKind::NotFound => return Read::Missing,
            Err(err) if last => return Read::Refused(format!("{}: {err}", file.display())),
            _ => {}
        }
        attempt += 1;
        tokio::time::sleep(SETTLE).await;
    }
}

/// Reads `file` once (in a blocking thread), and whether its size and
/// modification time were the same before and after.
async fn look(file: PathBuf) -> (io::Result<String>, bool) {
    tokio::task::spawn_blocking(move || {
        let before = fs::metadata(&file).ok();
        let text = workspace_file::read(&file);
        let after = fs::metadata(&file).ok();
        let stable = match (&before, &after) {
            (Some(before), Some(after)) => {
                before.len() == after.len() && before.modified().ok() == after.modified().ok()
            }
            _ => false,
        };
        (text, stable)
    })
    .await
    .unwrap_or_else(|err| (Err(io::Error::other(err)), false))
}

/// Reads a file an `ApplyWorkspace` names (once, in a blocking thread).
/// Writes `text` to `file` atomically (a temporary file beside it, synced,
/// renamed over it, the directory synced) and returns it: a rollback's
/// version is on disk before it is applied, as if the user had saved it.
pub(super) async fn write(file: PathBuf, text: String) -> io::Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut batch = crate::sync::atomic::Batch::default();
        batch.stage(&file, text.as_bytes())?;
        batch.commit()?;
        Ok(text)
    })
    .await
    .unwrap_or_else(|err| Err(io::Error::other(err)))
}

pub(super) async fn read_once(file: PathBuf) -> io::Result<String> {
    tokio::task::spawn_blocking(move || workspace_file::read(&file))
        .await
        .unwrap_or_else(|err| Err(io::Error::other(err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, command: &str) -> InstanceSpec {
        let input = outpost::spec::SpecInput {
            name: name.to_owned(),
            command: command.to_owned(),
            ..Default::default()
        };
        InstanceSpec::validate(input).unwrap()
    }

    #[test]
    fn diff_sorts_instances_into_what_to_do() {
        let current: BTreeMap<String, Owned> =
            [spec("w.a", "x"), spec("w.b", "x"), spec("w.c", "x")]
                .into_iter()
                .map(|spec| {
                    let name = spec.name.clone();
                    (
                        name,
                        Owned {
                            spec,
                            started: true,
                        },
                    )
                })
                .collect();
        let desired = [spec("w.a", "x"), spec("w.b", "y"), spec("w.d", "x")];
        let diff = diff(&current, &desired);
        assert_eq!(diff.unchanged, ["w.a"]);
        assert_eq!(diff.changed, ["w.b"]);
        assert_eq!(diff.created, ["w.d"]);
        assert_eq!(diff.deleted, ["w.c"]);
    }
}
