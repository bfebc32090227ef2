//! File events → hints. The sync root is watched recursively (directories,
//! never single files); an event only names paths that may have changed,
//! and what a writer is doing to them: writing, done (close-write), or
//! anything else. Reads (open, close-nowrite) and metadata changes are
//! not changes; editor droppings are dropped here already.

use std::path::Path;

use super::{Hint, queue::Signal};
use crate::sync::names;
use notify::{
    Config, ErrorKind, Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode, CreateKind, ModifyKind},
};

/// Watches `root`, handing each hint to `hint` (on the watcher's thread:
/// it must not block); the error says why it cannot.
pub(super) fn watch(
    root: &Path,
    hint: impl Fn(Hint) + Send + 'static,
) -> Result<RecommendedWatcher, String> {
    let watched_root = root.to_owned();
    let handler = move |result: notify::Result<Event>| match result {
        Ok(event) => {
            if event.need_rescan() {
                hint(Hint::Rescan);
            }
            if root_lost(&event, &watched_root) {
                hint(Hint::RootLost);
                return;
            }
            let Some(signal) = signal(&event.kind) else {
                return;
            };
            for path in event.paths {
                let ignored = path
                    .file_name()
                    .is_some_and(|name| names::is_ignored(&name.to_string_lossy()));
                if !ignored {
                    hint(Hint::Path(path, signal));
                }
            }
        }
        Err(err) => hint(Hint::Failed(describe(&err))),
    };
    // Links are never followed: not for content, and not for watches
    // (a link to / would use up every inotify watch).
    let config = Config::default().with_follow_symlinks(false);
    let mut watcher = RecommendedWatcher::new(handler, config).map_err(|err| describe(&err))?;
    watcher
        .watch(root, RecursiveMode::Recursive)
        .map_err(|err| format!("cannot watch {}: {}", root.display(), describe(&err)))?;
    Ok(watcher)
}

/// Whether `event` says the watched `root` itself went away (removed, or
/// renamed away): inotify then drops every watch under it.
fn root_lost(event: &Event, root: &Path) -> bool {
    matches!(
        event.kind,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    ) && event.paths.iter().any(|path| path == root)
        && !root.is_dir()
}

/// What an event says a writer is doing; None when it is no change.
fn signal(kind: &EventKind) -> Option<Signal> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Signal::Closed),
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => None,
        EventKind::Modify(ModifyKind::Data(_)) => Some(Signal::Writing),
        EventKind::Create(CreateKind::Folder) => Some(Signal::Dir),
        _ => Some(Signal::Changed),
    }
}

/// A watcher error, with what to do about a full watch table.
fn describe(err: &notify::Error) -> String {
    match err.kind {
        ErrorKind::MaxFilesWatch => format!(
            "{err}: the inotify watch limit is reached; raise fs.inotify.max_user_watches \
             (sysctl fs.inotify.max_user_watches=524288) and rescan"
        ),
        _ => format!("file watcher error: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{DataChange, RemoveKind, RenameMode};

    #[test]
    fn reads_are_not_changes_and_writers_are_followed() {
        assert_eq!(
            signal(&EventKind::Access(AccessKind::Open(AccessMode::Any))),
            None
        );
        assert_eq!(
            signal(&EventKind::Access(AccessKind::Close(AccessMode::Read))),
            None
        );
        assert_eq!(
            signal(&EventKind::Modify(ModifyKind::Data(DataChange::Any))),
            Some(Signal::Writing)
        );
        assert_eq!(
            signal(&EventKind::Access(AccessKind::Close(AccessMode::Write))),
            Some(Signal::Closed)
        );
        assert_eq!(
            signal(&EventKind::Modify(ModifyKind::Name(RenameMode::To))),
            Some(Signal::Changed)
        );
        assert_eq!(
            signal(&EventKind::Remove(RemoveKind::File)),
            Some(Signal::Changed)
        );
    }

    #[test]
    fn a_full_watch_table_names_the_setting() {
        let err = notify::Error::new(ErrorKind::MaxFilesWatch);
        assert!(describe(&err).contains("fs.inotify.max_user_watches"));
    }
}
