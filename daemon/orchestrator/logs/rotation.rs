//! When log files are rotated: every [`ROTATE_EVERY`], each instance's
//! directory under the logs root is looked at and a file past
//! [`ROTATE_AT`](super::ROTATE_AT) rotated. Logs that did not grow since
//! they were last looked at are looked at less and less often (see
//! [`MAX_QUIET_SKIP`]), and again every round once they grow, so that a
//! thousand quiet instances cost next to nothing. The task knows the
//! instances by their directories alone, and lists them again only when
//! the logs root's mtime says one came or went.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use super::LogFiles;

/// How often log files are checked for rotation.
const ROTATE_EVERY: Duration = Duration::from_secs(10);
/// Most rotation rounds skipped for an instance whose logs did not grow:
/// quiet logs are looked at every 10 s, 20 s, 40 s … up to every 320 s.
const MAX_QUIET_SKIP: u32 = 31;

/// A directory whose mtime is this close to the listing may have changed
/// again within the same tick of the file system's clock: listed again.
const MTIME_TICK: Duration = Duration::from_secs(1);

/// Starts the rotation task over the log directories in `logs_root`; it
/// runs as long as the runtime does.
pub fn start(logs_root: PathBuf) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ROTATE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut rounds = Rounds::default();
        loop {
            tick.tick().await;
            rounds.rotate(&logs_root);
        }
    });
}

/// What the rotation remembers between rounds.
#[derive(Default)]
struct Rounds {
    /// The logs root's mtime when it was last listed.
    listed_mtime: Option<SystemTime>,
    /// Each instance directory and how its logs are watched.
    watched: HashMap<String, LogWatch>,
}

impl Rounds {
    /// One round: rotates what is due and has grown too large.
    fn rotate(&mut self, logs_root: &Path) {
        self.list(logs_root);
        for (id, watch) in &mut self.watched {
            if !watch.due() {
                continue;
            }
            match LogFiles::new(logs_root, id).rotate_if_larger(super::ROTATE_AT) {
                Ok(sizes) => watch.looked(sizes),
                Err(err) => tracing::warn!(id, %err, "cannot rotate logs"),
            }
        }
    }

    /// Lists the instance directories again if an entry may have come or
    /// gone since the last listing.
    fn list(&mut self, logs_root: &Path) {
        let mtime = fs::metadata(logs_root)
            .and_then(|meta| meta.modified())
            .ok();
        let recent = mtime.is_none_or(|mtime| {
            SystemTime::now()
                .duration_since(mtime)
                .is_ok_and(|age| age < MTIME_TICK)
        });
        if mtime == self.listed_mtime && !recent {
            return;
        }
        let entries = match fs::read_dir(logs_root) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(root = %logs_root.display(), %err, "cannot list the log directories");
                return;
            }
        };
        let ids: HashSet<String> = entries
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            // Spare directories (`.spare-N`) belong to no instance yet.
            .filter(|name| !name.starts_with('.'))
            .collect();
        self.watched.retain(|id, _| ids.contains(id));
        for id in ids {
            self.watched.entry(id).or_default();
        }
        self.listed_mtime = mtime;
    }
}

/// How the rotation check treats one instance's logs.
#[derive(Default)]
struct LogWatch {
    /// Sizes of stdout and stderr when last looked at.
    sizes: [u64; 2],
    /// Rounds to skip after each look while the logs stay the same.
    quiet: u32,
    /// Rounds still to skip before the next look.
    skip: u32,
}

impl LogWatch {
    /// Whether this round looks at the logs (otherwise it is skipped).
    fn due(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// Records the sizes found: the same as before doubles the rounds
    /// skipped (up to [`MAX_QUIET_SKIP`]), a change skips none.
    fn looked(&mut self, sizes: [u64; 2]) {
        self.quiet = if sizes == self.sizes {
            (self.quiet * 2 + 1).min(MAX_QUIET_SKIP)
        } else {
            0
        };
        self.skip = self.quiet;
        self.sizes = sizes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds in which a watch looks at its logs, out of `rounds`, with the
    /// sizes `size_at(round)` gives.
    fn looks(rounds: u32, size_at: impl Fn(u32) -> u64) -> Vec<u32> {
        let mut watch = LogWatch::default();
        (0..rounds)
            .filter(|&round| {
                let due = watch.due();
                if due {
                    watch.looked([size_at(round), 0]);
                }
                due
            })
            .collect()
    }

    #[test]
    fn quiet_logs_are_looked_at_less_and_less_often() {
        assert_eq!(looks(100, |_| 0), [0, 2, 6, 14, 30, 62, 94]);
    }

    #[test]
    fn growing_logs_are_looked_at_every_round() {
        assert_eq!(looks(5, |round| u64::from(round) + 1), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn logs_that_start_growing_are_looked_at_every_round_again() {
        // Quiet until round 40: the next look (round 62) sees the growth.
        let growing_from_40 = |round: u32| u64::from(round.saturating_sub(40));
        let expected = [0, 2, 6, 14, 30, 62, 63, 64, 65];
        assert_eq!(looks(66, growing_from_40), expected);
    }

    #[test]
    fn a_round_rotates_large_logs_of_instance_directories_only() {
        let dir = tempfile::tempdir().unwrap();
        let big = "x".repeat(super::super::ROTATE_AT as usize + 1);
        for name in ["i-1", ".spare-1"] {
            fs::create_dir(dir.path().join(name)).unwrap();
            fs::write(dir.path().join(name).join("stdout.log"), &big).unwrap();
        }
        let mut rounds = Rounds::default();
        rounds.rotate(dir.path());
        assert!(dir.path().join("i-1/stdout.log.1").exists());
        assert_eq!(
            fs::metadata(dir.path().join("i-1/stdout.log"))
                .unwrap()
                .len(),
            0
        );
        assert!(!dir.path().join(".spare-1/stdout.log.1").exists());
        assert_eq!(rounds.watched.keys().collect::<Vec<_>>(), ["i-1"]);

        // A new instance's directory is found, a deleted one forgotten.
        fs::remove_dir_all(dir.path().join("i-1")).unwrap();
        fs::create_dir(dir.path().join("i-2")).unwrap();
        rounds.rotate(dir.path());
        assert_eq!(rounds.watched.keys().collect::<Vec<_>>(), ["i-2"]);
    }

    /// Sets the mtime of directory `dir`.
    fn set_mtime(dir: &Path, mtime: SystemTime) {
        fs::File::open(dir).unwrap().set_modified(mtime).unwrap();
    }

    #[test]
    fn the_root_is_listed_again_only_when_its_mtime_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        fs::create_dir(root.join("i-1")).unwrap();
        set_mtime(root, hour_ago);
        let mut rounds = Rounds::default();
        rounds.list(root);
        assert_eq!(rounds.watched.keys().collect::<Vec<_>>(), ["i-1"]);

        // Same mtime, old enough to be final: not listed, so a directory
        // slipped in behind the clock's back is not seen.
        fs::create_dir(root.join("i-2")).unwrap();
        set_mtime(root, hour_ago);
        rounds.list(root);
        assert_eq!(rounds.watched.keys().collect::<Vec<_>>(), ["i-1"]);

        // Another mtime, even an older one: listed again.
        set_mtime(root, hour_ago - Duration::from_secs(60));
        rounds.list(root);
        let mut ids: Vec<_> = rounds.watched.keys().cloned().collect();
        ids.sort();
        assert_eq!(ids, ["i-1", "i-2"]);

        // An mtime within the clock's tick of now: listed every time.
        fs::create_dir(root.join("i-3")).unwrap();
        let now = SystemTime::now();
        set_mtime(root, now);
        rounds.list(root);
        fs::create_dir(root.join("i-4")).unwrap();
        set_mtime(root, now);
        rounds.list(root);
        assert!(rounds.watched.contains_key("i-4"));
    }
}
