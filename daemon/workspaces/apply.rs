//! One apply of a workspace: validate the file, diff it against the
//! instances the workspace owns, and carry the diff out — delete what was
//! removed, create what is new, change the rest in place (with rollback)
//! or, when its port or project changed, by delete and create. Also the
//! removal of a workspace whose file is gone, and the settled read of a
//! file an editor may be saving.

use std::{collections::BTreeMap, fs, path::Path, time::Duration};

use outpost::{
    spec::InstanceSpec,
    workspace_file::{self, Workspace},
};

use crate::orchestrator::{ListFilter, Orchestrator, OrchestratorError, events::WorkspaceDiff};

/// How long a missing, empty or changing file is given to settle.
const SETTLE: Duration = Duration::from_millis(300);
/// How often a file is looked at before it counts as settled as it is.
const SETTLE_TRIES: u32 = 3;

/// A file that was applied: what it defines, what changed, and what
/// failed while carrying the diff out (the rest was still done).
#[derive(Debug)]
pub(super) struct Done {
    pub workspace: Workspace,
    pub diff: WorkspaceDiff,
    pub errors: Vec<String>,
}

/// Validates `text` (the content of `file`) as workspace `name` and, unless
/// `dry_run`, applies it; a file that does not validate is refused with
/// every problem.
pub(super) async fn apply(
    orchestrator: &Orchestrator,
    name: &str,
    file: &Path,
    text: &str,
    dry_run: bool,
) -> Result<Done, Vec<String>> {
    let workspace = workspace_file::parse(file, text)?;
    let current = owned(orchestrator, name);
    let diff = diff(&current, &workspace.instances);
    let mut errors = Vec::new();
    if dry_run {
        return Ok(Done {
            workspace,
            diff,
            errors,
        });
    }
    for instance in &diff.deleted {
        if let Err(err) = orchestrator.delete_instance(instance, false, true).await {
            errors.push(format!("{instance}: cannot delete: {err}"));
        }
    }
    for spec in &workspace.instances {
        let result = if diff.created.contains(&spec.name) {
            orchestrator
                .create(spec.clone(), true, Some(name.to_owned()))
                .await
                .map(drop)
        } else if diff.changed.contains(&spec.name) {
            replace(orchestrator, name, &current[&spec.name], spec.clone()).await
        } else {
            Ok(())
        };
        if let Err(err) = result {
            errors.push(err.to_string());
        }
    }
    for error in &errors {
        tracing::warn!(workspace = name, error, "applying workspace");
    }
    Ok(Done {
        workspace,
        diff,
        errors,
    })
}

/// Changes an instance to `spec`: in place (with rollback) when only
/// what a restart can change differs, else by delete and create.
async fn replace(
    orchestrator: &Orchestrator,
    workspace: &str,
    current: &InstanceSpec,
    spec: InstanceSpec,
) -> Result<(), OrchestratorError> {
    if current.port == spec.port && current.project_path == spec.project_path {
        let name = spec.name.clone();
        return orchestrator.reconfigure(&name, spec).await.map(drop);
    }
    orchestrator
        .delete_instance(&spec.name, false, true)
        .await?;
    orchestrator
        .create(spec, true, Some(workspace.to_owned()))
        .await
        .map(drop)
}

/// Removes the instances of a workspace whose file is gone.
pub(super) async fn remove(orchestrator: &Orchestrator, name: &str) -> WorkspaceDiff {
    let current = owned(orchestrator, name);
    for instance in current.keys() {
        if let Err(err) = orchestrator.delete_instance(instance, false, true).await {
            tracing::warn!(workspace = name, instance, %err, "cannot delete");
        }
    }
    WorkspaceDiff {
        deleted: current.into_keys().collect(),
        ..Default::default()
    }
}

/// The specs of the instances workspace `name` owns now, by name.
pub(super) fn owned(orchestrator: &Orchestrator, name: &str) -> BTreeMap<String, InstanceSpec> {
    let filter = ListFilter {
        workspace: Some(name.to_owned()),
        ..Default::default()
    };
    orchestrator
        .list(&filter)
        .instances
        .into_iter()
        .map(|status| (status.spec.name.clone(), (*status.spec).clone()))
        .collect()
}

/// The diff from `current` (owned instances) to `desired`.
fn diff(current: &BTreeMap<String, InstanceSpec>, desired: &[InstanceSpec]) -> WorkspaceDiff {
    let mut diff = WorkspaceDiff::default();
    for spec in desired {
        match current.get(&spec.name) {
            None => diff.created.push(spec.name.clone()),
            Some(existing) if existing == spec => diff.unchanged.push(spec.name.clone()),
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

/// The content of `file` once it has settled, or `None` when it stays
/// missing. A file that is empty or changes while being read (an editor
/// mid-save) is read again after a grace period.
pub(super) async fn settled_text(file: &Path) -> Option<String> {
    let mut attempt = 1;
    loop {
        let last = attempt == SETTLE_TRIES;
        let before = fs::metadata(file).ok();
        let text = fs::read_to_string(file).ok();
        let after = fs::metadata(file).ok();
        let stable = match (&before, &after) {
            (Some(before), Some(after)) => {
                before.len() == after.len() && before.modified().ok() == after.modified().ok()
            }
            _ => false,
        };
        match text {
            Some(text) if last || (stable && !text.trim().is_empty()) => return Some(text),
            None if last => return None,
            _ => {}
        }
        attempt += 1;
        tokio::time::sleep(SETTLE).await;
    }
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
        let current: BTreeMap<String, InstanceSpec> =
            [spec("w.a", "x"), spec("w.b", "x"), spec("w.c", "x")]
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect();
        let desired = [spec("w.a", "x"), spec("w.b", "y"), spec("w.d", "x")];
        let diff = diff(&current, &desired);
        assert_eq!(diff.unchanged, ["w.a"]);
        assert_eq!(diff.changed, ["w.b"]);
        assert_eq!(diff.created, ["w.d"]);
        assert_eq!(diff.deleted, ["w.c"]);
    }
}
