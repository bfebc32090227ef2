//! Dependencies between instances: what a dependent needs of each instance
//! it starts after, how people write it (`db`, `db:ready`,
//! `migrate:completed`), and the checks of the graph they make. A cycle is
//! refused wherever it can be seen — `outpostctl workspace check` sees one
//! within a file, the daemon one through the instances it holds — so both
//! find it with the same code and name it with the same words.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{InvalidField, invalid, validate_name};
use crate::limits::quoted;

/// Most dependencies of one instance.
pub const MAX_DEPENDENCIES: usize = 64;

/// What a dependent waits for in one of its dependencies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Its process was spawned (STARTING or RUNNING).
    Started,
    /// It is ready (RUNNING).
    #[default]
    Ready,
    /// It exited 0: a one-shot task such as a migration.
    Completed,
}

impl Condition {
    /// Every condition, as written.
    pub const ALL: [Self; 3] = [Self::Started, Self::Ready, Self::Completed];

    /// The word for it: "started", "ready", "completed".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Ready => "ready",
            Self::Completed => "completed",
        }
    }

    /// Reads the word for a condition.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|condition| condition.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "{} is not a condition: use started, ready or completed",
                    quoted(text)
                )
            })
    }
}

impl From<Condition> for crate::proto::v1::DependencyCondition {
    fn from(condition: Condition) -> Self {
        match condition {
            Condition::Started => Self::Started,
            Condition::Ready => Self::Ready,
            Condition::Completed => Self::Completed,
        }
    }
}

/// Reads `NAME` or `NAME:CONDITION` (the CLI's `--after`); the condition
/// defaults to ready.
pub fn parse_after(text: &str) -> Result<(String, Condition), String> {
    let (name, condition) = match text.split_once(':') {
        Some((name, condition)) => (name, Condition::parse(condition)?),
        None => (text, Condition::Ready),
    };
    validate_name("after", name).map_err(|err| err.reason)?;
    Ok((name.to_owned(), condition))
}

/// Checks the dependencies of instance `name`: how many, that each is a
/// valid name, and not the instance itself.
pub fn validate(
    field: &str,
    name: &str,
    depends_on: &BTreeMap<String, Condition>,
) -> Result<(), InvalidField> {
    if depends_on.len() > MAX_DEPENDENCIES {
        return Err(invalid(
            field,
            format!(
                "{} dependencies, more than the limit of {MAX_DEPENDENCIES}",
                depends_on.len()
            ),
        ));
    }
    for dependency in depends_on.keys() {
        validate_name(field, dependency)?;
        if dependency == name {
            return Err(invalid(
                field,
                format!("{} cannot depend on itself", quoted(name)),
            ));
        }
    }
    Ok(())
}

/// Each instance's dependencies, by name.
pub type Graph<'a> = BTreeMap<&'a str, BTreeSet<&'a str>>;

/// The first cycle of `graph`, as the path that closes it (`a → b → a`
/// is `["a", "b", "a"]`); names outside the graph end a path. The same
/// graph always gives the same cycle.
pub fn find_cycle(graph: &Graph<'_>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    for &root in graph.keys() {
        if marks.contains_key(root) {
            continue;
        }
        // Depth first, without recursion: the path and, for each name on
        // it, the dependencies still to visit.
        let mut path: Vec<&str> = vec![root];
        let mut pending: Vec<Vec<&str>> = vec![next(graph, root)];
        marks.insert(root, Mark::OnPath);
        while let Some(todo) = pending.last_mut() {
            let Some(dependency) = todo.pop() else {
                let done = path.pop().expect("a path as long as the pending lists");
                marks.insert(done, Mark::Done);
                pending.pop();
                continue;
            };
            match marks.get(dependency) {
                Some(Mark::Done) => {}
                Some(Mark::OnPath) => {
                    let start = path.iter().position(|&n| n == dependency).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|&n| n.to_owned()).collect();
                    cycle.push(dependency.to_owned());
                    return Some(cycle);
                }
                None if graph.contains_key(dependency) => {
                    marks.insert(dependency, Mark::OnPath);
                    path.push(dependency);
                    pending.push(next(graph, dependency));
                }
                None => {}
            }
        }
    }
    None
}

/// The dependencies of `name` in visiting order (the last is visited first,
/// so that the smallest name is).
fn next<'a>(graph: &Graph<'a>, name: &str) -> Vec<&'a str> {
    graph
        .get(name)
        .map(|dependencies| dependencies.iter().rev().copied().collect())
        .unwrap_or_default()
}

/// A cycle as people read it: `a → b → a`.
pub fn describe_cycle(cycle: &[String]) -> String {
    cycle.join(" → ")
}

/// The instances of `graph` in layers: each depends only on earlier
/// layers (or on names outside the graph), so creating layer by layer
/// never names an instance that is not there yet, and stopping the layers
/// in reverse stops every dependent before what it depends on. Instances
/// in a cycle come last, in one layer.
pub fn layers<'a>(graph: &Graph<'a>) -> Vec<Vec<&'a str>> {
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut layers = Vec::new();
    while placed.len() < graph.len() {
        let layer: Vec<&str> = graph
            .iter()
            .filter(|(name, _)| !placed.contains(*name))
            .filter(|(_, dependencies)| {
                dependencies
                    .iter()
                    .all(|d| placed.contains(d) || !graph.contains_key(d))
            })
            .map(|(&name, _)| name)
            .collect();
        if layer.is_empty() {
            layers.push(
                graph
                    .keys()
                    .copied()
                    .filter(|name| !placed.contains(name))
                    .collect(),
            );
            break;
        }
        placed.extend(layer.iter().copied());
        layers.push(layer);
    }
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph<'a>(edges: &[(&'a str, &[&'a str])]) -> Graph<'a> {
        edges
            .iter()
            .map(|(name, dependencies)| (*name, dependencies.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn conditions_and_after_are_read_as_written() {
        assert_eq!(
            parse_after("db").unwrap(),
            ("db".to_owned(), Condition::Ready)
        );
        assert_eq!(
            parse_after("shop.migrate:completed").unwrap(),
            ("shop.migrate".to_owned(), Condition::Completed)
        );
        assert_eq!(parse_after("db:started").unwrap().1, Condition::Started);
        assert!(
            parse_after("db:done")
                .unwrap_err()
                .contains("started, ready or completed")
        );
        assert!(parse_after("Db").unwrap_err().contains("not a valid name"));
        assert!(parse_after(":ready").is_err());
    }

    #[test]
    fn an_instance_may_not_depend_on_itself_or_on_too_many() {
        let own = BTreeMap::from([("web".to_owned(), Condition::Ready)]);
        let err = validate("spec.depends_on", "web", &own).unwrap_err();
        assert!(err.reason.contains("cannot depend on itself"), "{err}");
        let many: BTreeMap<String, Condition> = (0..=MAX_DEPENDENCIES)
            .map(|n| (format!("d{n}"), Condition::Ready))
            .collect();
        let err = validate("spec.depends_on", "web", &many).unwrap_err();
        assert!(err.reason.contains("limit of 64"), "{err}");
        let bad = BTreeMap::from([("../x".to_owned(), Condition::Ready)]);
        assert_eq!(
            validate("spec.depends_on", "web", &bad).unwrap_err().field,
            "spec.depends_on"
        );
    }

    #[test]
    fn cycles_are_found_and_named_as_the_path_that_closes_them() {
        let chain = graph(&[("api", &["db"]), ("web", &["api"]), ("db", &[])]);
        assert_eq!(find_cycle(&chain), None);
        let diamond = graph(&[
            ("top", &["left", "right"]),
            ("left", &["base"]),
            ("right", &["base"]),
            ("base", &[]),
        ]);
        assert_eq!(find_cycle(&diamond), None);
        let outside = graph(&[("api", &["elsewhere"])]);
        assert_eq!(find_cycle(&outside), None);
        let cycle = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &["a"])]);
        let found = find_cycle(&cycle).unwrap();
        assert_eq!(describe_cycle(&found), "a → b → c → a");
        let two = graph(&[("x", &["web"]), ("web", &["api"]), ("api", &["web"])]);
        assert_eq!(
            describe_cycle(&find_cycle(&two).unwrap()),
            "api → web → api"
        );
    }

    #[test]
    fn layers_put_dependencies_first() {
        let stack = graph(&[
            ("web", &["api"]),
            ("api", &["db", "migrate"]),
            ("migrate", &["db"]),
            ("db", &[]),
            ("docs", &["outside"]),
        ]);
        assert_eq!(
            layers(&stack),
            vec![
                vec!["db", "docs"],
                vec!["migrate"],
                vec!["api"],
                vec!["web"]
            ]
        );
        let cyclic = graph(&[("a", &["b"]), ("b", &["a"]), ("c", &[])]);
        assert_eq!(layers(&cyclic), vec![vec!["c"], vec!["a", "b"]]);
    }
}
