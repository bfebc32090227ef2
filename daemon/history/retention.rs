//! How long versions are kept (`--history-keep`), and pruning: the
//! commits beyond the retention are replaced by one root commit holding
//! the state they ended with — so what was current then can still be
//! shown and restored — the kept commits are written again on top of it
//! (same trees, messages, authors and times; new ids), the branch moves
//! to the new tip, and the loose objects nothing reaches any more are
//! removed. A crash before the branch moves leaves the old history whole;
//! after, only unreachable objects, which the next prune removes.

use std::{
    collections::HashSet,
    fmt, fs,
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use gix::{ObjectId, refs::transaction::PreviousValue};

use super::repository::{BRANCH, RepoError, Repository};

/// Which versions are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retention {
    /// Everything (the default).
    #[default]
    All,
    /// Commits younger than this (and always the newest).
    Newer(Duration),
    /// The newest this many commits.
    Last(u32),
}

impl FromStr for Retention {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "all" {
            return Ok(Self::All);
        }
        if let Ok(count) = text.parse::<u32>() {
            return if count == 0 {
                Err("keep at least 1 commit (or \"all\")".into())
            } else {
                Ok(Self::Last(count))
            };
        }
        match humantime::parse_duration(text) {
            Ok(age) if age >= Duration::from_secs(60) => Ok(Self::Newer(age)),
            Ok(_) => Err("an age under a minute would prune what was just saved".into()),
            Err(err) => Err(format!(
                "{text:?} is neither \"all\", a number of commits (500) nor an age (90d): {err}"
            )),
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Newer(age) => write!(f, "{}", humantime::format_duration(*age)),
            Self::Last(count) => write!(f, "{count}"),
        }
    }
}

impl Retention {
    /// How many of `times` (newest first, seconds) are kept at `now`.
    fn kept(self, times: &[i64], now: SystemTime) -> usize {
        let kept = match self {
            Self::All => times.len(),
            Self::Last(count) => count as usize,
            Self::Newer(age) => {
                let cutoff = now
                    .checked_sub(age)
                    .and_then(|cutoff| cutoff.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |cutoff| cutoff.as_secs() as i64);
                times.iter().take_while(|time| **time >= cutoff).count()
            }
        };
        kept.max(1)
    }
}

/// Prunes `repository` to `retention`; the number of commits dropped, or
/// None when nothing is beyond it. One commit beyond it is left alone:
/// it would only be replaced by a commit with the same tree.
pub fn prune(
    repository: &Repository,
    retention: Retention,
    now: SystemTime,
) -> Result<Option<usize>, RepoError> {
    if retention == Retention::All {
        return Ok(None);
    }
    let chain = repository.chain()?;
    let times: Vec<i64> = chain.iter().map(|(_, time)| *time).collect();
    let kept = retention.kept(&times, now);
    if chain.len() <= kept + 1 {
        return Ok(None);
    }
    let repo = repository.git();
    let fail = |what: &str, err: &dyn fmt::Display| RepoError {
        dir: repository.dir().to_owned(),
        reason: format!("pruning: {what}: {err}"),
    };
    let read = |id: ObjectId| -> Result<gix::objs::Commit, RepoError> {
        let commit = repo
            .find_commit(id)
            .map_err(|err| fail("cannot read a commit", &err))?;
        let decoded = commit
            .decode()
            .map_err(|err| fail("cannot read a commit", &err))?;
        decoded
            .to_owned()
            .map_err(|err| fail("cannot read a commit", &err))
    };
    let dropped = chain.len() - kept;
    // The newest dropped commit's state becomes the root.
    let (last_dropped, _) = chain[kept];
    let mut root = read(last_dropped)?;
    let until = humantime::format_rfc3339_seconds(
        UNIX_EPOCH + Duration::from_secs(root.committer.time.seconds.max(0) as u64),
    );
    root.parents.clear();
    root.message = format!(
        "history before {until} pruned ({dropped} commits; --history-keep {retention})\n\nThe tree is the state as it was then.\n"
    )
    .into();
    let mut parent = repo
        .write_object(&root)
        .map_err(|err| fail("cannot write the new root", &err))?
        .detach();
    for (id, _) in chain[..kept].iter().rev() {
        let mut commit = read(*id)?;
        commit.parents.clear();
        commit.parents.push(parent);
        parent = repo
            .write_object(&commit)
            .map_err(|err| fail("cannot write a commit", &err))?
            .detach();
    }
    let (old_head, _) = chain[0];
    repo.reference(
        BRANCH,
        parent,
        PreviousValue::MustExistAndMatch(gix::refs::Target::Object(old_head)),
        "prune",
    )
    .map_err(|err| fail("cannot move the branch", &err))?;
    remove_unreachable(repository, parent)?;
    Ok(Some(dropped))
}

/// Removes every loose object `tip` does not reach.
fn remove_unreachable(repository: &Repository, tip: ObjectId) -> Result<(), RepoError> {
    let repo = repository.git();
    let fail = |err: &dyn fmt::Display| RepoError {
        dir: repository.dir().to_owned(),
        reason: format!("pruning: {err}"),
    };
    let mut reachable = HashSet::new();
    let mut trees = Vec::new();
    let mut next = Some(tip);
    while let Some(id) = next {
        reachable.insert(id);
        let commit = repo.find_commit(id).map_err(|err| fail(&err))?;
        trees.push(commit.tree_id().map_err(|err| fail(&err))?.detach());
        next = commit.parent_ids().next().map(|id| id.detach());
    }
    while let Some(tree) = trees.pop() {
        if !reachable.insert(tree) {
            continue;
        }
        let tree = repo.find_tree(tree).map_err(|err| fail(&err))?;
        for entry in tree.decode().map_err(|err| fail(&err))?.entries {
            if entry.mode.is_tree() {
                trees.push(entry.oid.to_owned());
            } else {
                reachable.insert(entry.oid.to_owned());
            }
        }
    }
    let objects = repository.dir().join("objects");
    for fanout in fs::read_dir(&objects).map_err(|err| fail(&err))? {
        let fanout = fanout.map_err(|err| fail(&err))?;
        let prefix = fanout.file_name();
        let Some(prefix) = prefix.to_str().filter(|p| p.len() == 2) else {
            continue;
        };
        for object in fs::read_dir(fanout.path()).map_err(|err| fail(&err))? {
            let object = object.map_err(|err| fail(&err))?;
            let name = object.file_name();
            let hex = format!("{prefix}{}", name.to_string_lossy());
            let Ok(id) = ObjectId::from_hex(hex.as_bytes()) else {
                continue;
            };
            if !reachable.contains(&id) {
                fs::remove_file(object.path()).map_err(|err| fail(&err))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_reads_ages_counts_and_all() {
        assert_eq!("all".parse(), Ok(Retention::All));
        assert_eq!("500".parse(), Ok(Retention::Last(500)));
        assert_eq!(
            "90d".parse(),
            Ok(Retention::Newer(Duration::from_secs(90 * 86_400)))
        );
        assert!("0".parse::<Retention>().unwrap_err().contains("at least 1"));
        assert!(
            "10s"
                .parse::<Retention>()
                .unwrap_err()
                .contains("under a minute")
        );
        assert!("soon".parse::<Retention>().unwrap_err().contains("neither"));
    }

    #[test]
    fn the_newest_commit_is_always_kept() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let times = [999_990, 900_000, 800_000];
        assert_eq!(
            Retention::Newer(Duration::from_secs(60)).kept(&times, now),
            1
        );
        assert_eq!(
            Retention::Newer(Duration::from_secs(150_000)).kept(&times, now),
            2
        );
        assert_eq!(Retention::Newer(Duration::from_secs(1)).kept(&[1], now), 1);
        assert_eq!(Retention::Last(2).kept(&times, now), 2);
        assert_eq!(Retention::All.kept(&times, now), 3);
    }
}
