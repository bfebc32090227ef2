//! Dependencies between instances, as the daemon holds them: whether an
//! instance's conditions hold given what its dependencies are doing (and,
//! when not, what it waits for in words), the checks a new or changed
//! spec must pass against the instances there are (every name known, no
//! cycle), and the order in which instances stop (dependents first). The
//! [`coordinator`] applies the judgement as events arrive.

pub mod coordinator;

use std::collections::{BTreeMap, BTreeSet};

use outpost::spec::{Condition, Graph, InstanceSpec, describe_cycle, find_cycle, layers};

use super::{
    error::OrchestratorError,
    status::{ExitOutcome, InstanceState, InstanceStatus},
};

/// What a dependent needs to know of one of its dependencies.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub state: InstanceState,
    pub last_exit: Option<ExitOutcome>,
    pub last_error: Option<String>,
}

impl Seen {
    pub fn of(status: &InstanceStatus) -> Self {
        Self {
            state: status.state,
            last_exit: status.last_exit.map(|exit| exit.outcome),
            last_error: status.last_error.clone(),
        }
    }
}

/// Whether an instance may start, and if not, what it waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Every condition holds.
    Met,
    /// Some do not.
    Waiting {
        /// What for, dependency by dependency: "shop.db to be ready".
        text: String,
        /// A dependency is gone or failed: it will not come by itself.
        blocked: bool,
    },
}

/// Whether `condition` holds for a dependency that is as `seen` says.
fn holds(condition: Condition, seen: &Seen) -> bool {
    match condition {
        Condition::Started => {
            matches!(seen.state, InstanceState::Starting | InstanceState::Running)
        }
        Condition::Ready => seen.state == InstanceState::Running,
        Condition::Completed => {
            seen.state == InstanceState::Stopped
                && seen.last_exit.is_some_and(ExitOutcome::is_success)
        }
    }
}

/// "shop.db to be ready".
fn need(name: &str, condition: Condition) -> String {
    let verb = match condition {
        Condition::Started => "to start",
        Condition::Ready => "to be ready",
        Condition::Completed => "to complete",
    };
    format!("{name} {verb}")
}

/// What an instance waits for before anything is known of its
/// dependencies: each of them.
pub fn needs(depends_on: &BTreeMap<String, Condition>) -> String {
    depends_on
        .iter()
        .map(|(name, &condition)| need(name, condition))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Judges `depends_on` against the dependencies as `find` shows them.
pub fn judge<'a>(
    depends_on: &BTreeMap<String, Condition>,
    find: impl Fn(&str) -> Option<&'a Seen>,
) -> Judgement {
    let mut waiting = Vec::new();
    let mut blocked = false;
    for (name, &condition) in depends_on {
        let Some(seen) = find(name) else {
            blocked = true;
            waiting.push(format!(
                "{}, but there is no such instance",
                need(name, condition)
            ));
            continue;
        };
        if holds(condition, seen) {
            continue;
        }
        let error = seen.last_error.as_deref().unwrap_or("no error recorded");
        let how = match seen.state {
            InstanceState::Failed => Some(format!(", but it failed ({error})")),
            InstanceState::Error => Some(format!(", but its circuit breaker is open ({error})")),
            _ => None,
        };
        match how {
            Some(how) => {
                blocked = true;
                waiting.push(format!("{}{how}", need(name, condition)));
            }
            None if seen.state == InstanceState::Stopped => {
                waiting.push(format!("{} (it is stopped)", need(name, condition)));
            }
            None => waiting.push(need(name, condition)),
        }
    }
    if waiting.is_empty() {
        Judgement::Met
    } else {
        Judgement::Waiting {
            text: waiting.join("; "),
            blocked,
        }
    }
}

/// Refuses `spec` if it names an instance that `statuses` lacks, or
/// closes a cycle with them (its own earlier version, if any, replaced).
pub fn check<'a>(
    spec: &InstanceSpec,
    statuses: impl Iterator<Item = &'a InstanceStatus>,
) -> Result<(), OrchestratorError> {
    let invalid = |reason: String| OrchestratorError::Invalid {
        field: "spec.depends_on".to_owned(),
        reason,
    };
    let mut graph: Graph<'_> = graph(statuses.filter(|s| s.spec.name != spec.name));
    for name in spec.depends_on.keys() {
        if !graph.contains_key(name.as_str()) {
            return Err(invalid(format!(
                "no instance is named {name}: create it first"
            )));
        }
    }
    graph.insert(
        spec.name.as_str(),
        spec.depends_on.keys().map(String::as_str).collect(),
    );
    match find_cycle(&graph) {
        Some(cycle) => Err(invalid(format!("{} is a cycle", describe_cycle(&cycle)))),
        None => Ok(()),
    }
}

/// The dependencies of each of `statuses`, by name.
fn graph<'a>(statuses: impl Iterator<Item = &'a InstanceStatus>) -> Graph<'a> {
    statuses
        .map(|status| {
            let dependencies = status.spec.depends_on.keys().map(String::as_str).collect();
            (status.spec.name.as_str(), dependencies)
        })
        .collect()
}

/// The instances of `statuses` that depend on `name`, directly or through
/// others.
pub fn dependents<'a>(
    statuses: impl Iterator<Item = &'a InstanceStatus>,
    name: &str,
) -> Vec<&'a InstanceStatus> {
    let statuses: Vec<&InstanceStatus> = statuses.collect();
    let mut found: BTreeSet<&str> = BTreeSet::new();
    let mut pending = vec![name];
    while let Some(current) = pending.pop() {
        for status in &statuses {
            let dependent = status.spec.name.as_str();
            if status.spec.depends_on.contains_key(current) && found.insert(dependent) {
                pending.push(dependent);
            }
        }
    }
    statuses
        .into_iter()
        .filter(|status| found.contains(status.spec.name.as_str()))
        .collect()
}

/// `statuses` in the order to start them: layers, each depending only on
/// earlier ones, so that a dependency's start (a one-shot task going back
/// to waiting, say) is on the bus before its dependents are judged.
pub fn start_order(statuses: &[InstanceStatus]) -> Vec<Vec<&InstanceStatus>> {
    let by_name: BTreeMap<&str, &InstanceStatus> = statuses
        .iter()
        .map(|status| (status.spec.name.as_str(), status))
        .collect();
    layers(&graph(statuses.iter()))
        .into_iter()
        .map(|layer| layer.into_iter().map(|name| by_name[name]).collect())
        .collect()
}

/// `statuses` in the order to stop them: layers, each of instances that
/// no instance of a later layer depends on — first those nothing depends
/// on, what they depend on after them.
pub fn stop_order(statuses: &[InstanceStatus]) -> Vec<Vec<&InstanceStatus>> {
    let by_name: BTreeMap<&str, &InstanceStatus> = statuses
        .iter()
        .map(|status| (status.spec.name.as_str(), status))
        .collect();
    // Each instance "waits" for its dependents to stop.
    let mut dependents: Graph<'_> = by_name
        .keys()
        .map(|&name| (name, BTreeSet::new()))
        .collect();
    for status in statuses {
        for dependency in status.spec.depends_on.keys() {
            if let Some(waiting) = dependents.get_mut(dependency.as_str()) {
                waiting.insert(status.spec.name.as_str());
            }
        }
    }
    layers(&dependents)
        .into_iter()
        .map(|layer| layer.into_iter().map(|name| by_name[name]).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::status::InstanceKind;

    fn seen(state: InstanceState, exit: Option<ExitOutcome>) -> Seen {
        Seen {
            state,
            last_exit: exit,
            last_error: Some("process exited with exit code 3".to_owned()),
        }
    }

    fn status(name: &str, depends_on: &[&str]) -> InstanceStatus {
        let input = outpost::spec::SpecInput {
            name: name.to_owned(),
            command: "true".to_owned(),
            depends_on: (depends_on.iter())
                .map(|d| ((*d).to_owned(), Condition::Ready))
                .collect(),
            ..Default::default()
        };
        let spec = InstanceSpec::validate(input).unwrap();
        InstanceStatus::new(
            format!("id-{name}"),
            spec,
            InstanceKind::Managed,
            InstanceState::Running,
            None,
        )
    }

    #[test]
    fn each_condition_holds_in_its_states_only() {
        use InstanceState::*;
        let ok = Some(ExitOutcome::Code(0));
        let bad = Some(ExitOutcome::Code(3));
        let cases = [
            (Condition::Started, seen(Starting, None), true),
            (Condition::Started, seen(Running, None), true),
            (Condition::Started, seen(Waiting, None), false),
            (Condition::Ready, seen(Starting, None), false),
            (Condition::Ready, seen(Running, None), true),
            (Condition::Ready, seen(Backoff, None), false),
            (Condition::Completed, seen(Running, None), false),
            (Condition::Completed, seen(Stopped, ok), true),
            (Condition::Completed, seen(Stopped, bad), false),
            (Condition::Completed, seen(Stopped, None), false),
            (Condition::Completed, seen(Failed, bad), false),
        ];
        for (condition, seen, expected) in cases {
            assert_eq!(holds(condition, &seen), expected, "{condition:?} {seen:?}");
        }
    }

    #[test]
    fn the_judgement_says_what_is_missing_and_whether_it_can_still_come() {
        let depends_on = BTreeMap::from([
            ("db".to_owned(), Condition::Ready),
            ("migrate".to_owned(), Condition::Completed),
        ]);
        let db = seen(InstanceState::Starting, None);
        let done = seen(InstanceState::Stopped, Some(ExitOutcome::Code(0)));
        let failed = seen(InstanceState::Failed, Some(ExitOutcome::Code(3)));
        let running = seen(InstanceState::Running, None);
        let waiting = judge(&depends_on, |name| match name {
            "db" => Some(&db),
            _ => Some(&done),
        });
        assert_eq!(
            waiting,
            Judgement::Waiting {
                text: "db to be ready".to_owned(),
                blocked: false
            }
        );
        let blocked = judge(&depends_on, |name| match name {
            "db" => Some(&running),
            _ => Some(&failed),
        });
        assert_eq!(
            blocked,
            Judgement::Waiting {
                text: "migrate to complete, but it failed (process exited with exit code 3)"
                    .to_owned(),
                blocked: true
            }
        );
        let gone = judge(&depends_on, |name| (name == "db").then_some(&running));
        assert!(
            matches!(gone, Judgement::Waiting { blocked: true, ref text } if text.contains("no such instance"))
        );
        let met = judge(&depends_on, |name| match name {
            "db" => Some(&running),
            _ => Some(&done),
        });
        assert_eq!(met, Judgement::Met);
        assert_eq!(needs(&depends_on), "db to be ready; migrate to complete");
    }

    #[test]
    fn specs_must_name_instances_there_are_and_close_no_cycle() {
        let statuses = vec![
            status("db", &[]),
            status("api", &["db"]),
            status("web", &["api"]),
        ];
        let fine = status("worker", &["db", "api"]);
        assert!(check(&fine.spec, statuses.iter()).is_ok());
        let unknown = status("worker", &["cache"]);
        let err = check(&unknown.spec, statuses.iter())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("spec.depends_on: no instance is named cache"),
            "{err}"
        );
        // db changed to depend on web: db → web → api → db.
        let mut statuses_with_db = statuses.clone();
        statuses_with_db.push(status("x", &[]));
        let cyclic = status("db", &["web"]);
        let err = check(&cyclic.spec, statuses_with_db.iter())
            .unwrap_err()
            .to_string();
        assert!(err.contains("api → db → web → api is a cycle"), "{err}");
    }

    #[test]
    fn dependents_stop_before_what_they_depend_on() {
        let statuses = vec![
            status("db", &[]),
            status("api", &["db"]),
            status("web", &["api"]),
            status("docs", &[]),
        ];
        let names = |list: Vec<&InstanceStatus>| -> Vec<String> {
            list.into_iter().map(|s| s.spec.name.clone()).collect()
        };
        assert_eq!(names(dependents(statuses.iter(), "db")), vec!["api", "web"]);
        assert_eq!(
            names(dependents(statuses.iter(), "web")),
            Vec::<String>::new()
        );
        let order: Vec<Vec<String>> = stop_order(&statuses).into_iter().map(names).collect();
        assert_eq!(order, vec![vec!["docs", "web"], vec!["api"], vec!["db"]]);
        let order: Vec<Vec<String>> = start_order(&statuses).into_iter().map(names).collect();
        assert_eq!(order, vec![vec!["db", "docs"], vec!["api"], vec!["web"]]);
    }
}
