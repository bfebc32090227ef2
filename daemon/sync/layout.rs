//! Where content lives on disk:
//! `<root>/templates/<set>/<group>/<title>.html` and
//! `<root>/stylesheets/<theme>/<name>`, and the way back from a path to
//! the content it holds. Names were validated to be single file names, so
//! every path stays under the root; paths found on disk are checked the
//! same way, and a symbolic link anywhere below the root is refused.
//!
//! A template's group is the store's rule ([`TemplateGroups`]): the title's
//! prefix for the native store, the forum's own template groups for MyBB,
//! which are known only once its database has been read.

use std::{
    collections::BTreeSet,
    fs, io,
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use tokio::sync::watch;

use super::{
    Key, Kind,
    names::{self, CONFLICT_MARK, is_ignored},
};

/// Directory of templates under the root.
const TEMPLATES: &str = "templates";
/// Directory of stylesheets under the root.
const STYLESHEETS: &str = "stylesheets";
/// Ending of a template's file name.
const TEMPLATE_SUFFIX: &str = ".html";

/// Where templates of no group go, as a directory name.
pub const UNGROUPED: &str = "ungrouped";

/// How template titles are put in group directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateGroups {
    /// The title's prefix before its first `_`, else [`UNGROUPED`].
    ByPrefix,
    /// MyBB's rule: the title up to its first `_` (all of it if it has
    /// none), lower-cased, if that is one of these prefixes (lower-cased);
    /// else [`UNGROUPED`].
    Prefixes(Arc<BTreeSet<String>>),
    /// Not known yet (the forum's database has not been read): a path's
    /// group directory is taken as it is.
    Unknown,
}

impl TemplateGroups {
    /// MyBB's groups of these `templategroups.prefix` values.
    pub fn prefixes<S: AsRef<str>>(prefixes: impl IntoIterator<Item = S>) -> Self {
        Self::Prefixes(Arc::new(
            prefixes
                .into_iter()
                .map(|prefix| prefix.as_ref().to_lowercase())
                .filter(|prefix| !prefix.is_empty())
                .collect(),
        ))
    }

    /// The group of `title`; None while unknown.
    pub fn of(&self, title: &str) -> Option<String> {
        match self {
            Self::ByPrefix => Some(match title.split_once('_') {
                Some((group, _)) if !group.is_empty() => group.to_owned(),
                _ => UNGROUPED.to_owned(),
            }),
            Self::Prefixes(prefixes) => {
                let first = title.split('_').next().unwrap_or(title).to_lowercase();
                Some(if prefixes.contains(&first) {
                    first
                } else {
                    UNGROUPED.to_owned()
                })
            }
            Self::Unknown => None,
        }
    }
}

/// The sync root and the rule that places templates in it.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    groups: watch::Receiver<TemplateGroups>,
}

impl Layout {
    /// The layout of `root`, with the store's groups as they are now and
    /// as they change.
    pub fn new(root: PathBuf, groups: watch::Receiver<TemplateGroups>) -> Self {
        Self { root, groups }
    }

    /// The sync root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The group directory of template `title`. While the groups are not
    /// known, the title's prefix stands in: nothing is written then (the
    /// database is not there to read).
    pub fn group(&self, title: &str) -> String {
        let groups = self.groups.borrow();
        groups
            .of(title)
            .or_else(|| TemplateGroups::ByPrefix.of(title))
            .unwrap_or_else(|| UNGROUPED.to_owned())
    }

    /// The file of a piece of content.
    pub fn path(&self, key: &Key) -> PathBuf {
        let dir = collection_dir(&self.root, key.kind, &key.collection);
        match key.kind {
            Kind::Template => dir
                .join(self.group(&key.name))
                .join(format!("{}{TEMPLATE_SUFFIX}", key.name)),
            Kind::Stylesheet => dir.join(&key.name),
        }
    }

    /// The file of a piece of content relative to the root, as the
    /// history repository names it.
    pub fn relative(&self, key: &Key) -> String {
        let path = self.path(key);
        let relative = path.strip_prefix(&self.root).unwrap_or(&path);
        relative.to_string_lossy().into_owned()
    }

    /// Maps a path under the root to the content it would hold.
    pub fn classify(&self, path: &Path) -> Target {
        classify(&self.root, path, &self.groups.borrow())
    }

    /// Whether `path` names a directory level that holds content.
    pub fn is_content_dir(&self, path: &Path) -> bool {
        is_content_dir(&self.root, path)
    }
}

/// The directory of a template set or theme. A collection is mirrored
/// on disk while its directory exists.
pub fn collection_dir(root: &Path, kind: Kind, collection: &str) -> PathBuf {
    root.join(kind_dir(kind)).join(collection)
}

/// The directory holding every collection of `kind`.
pub fn kind_dir(kind: Kind) -> &'static str {
    match kind {
        Kind::Template => TEMPLATES,
        Kind::Stylesheet => STYLESHEETS,
    }
}

/// Where the disk side of conflict `id` on `file` is kept.
pub fn conflict_copy(file: &Path, id: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(format!("{CONFLICT_MARK}{id}"));
    PathBuf::from(name)
}

/// What a path under the root stands for.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// The file of this content.
    Item(Key),
    /// Nothing sync looks at (a directory level, an editor's temp).
    Ignored,
    /// Could be content but is not acceptable; says why.
    Rejected(String),
}

/// Maps a path under `root` to the content it would hold, with templates
/// grouped by `groups`.
fn classify(root: &Path, path: &Path, groups: &TemplateGroups) -> Target {
    let Ok(relative) = path.strip_prefix(root) else {
        return Target::Ignored;
    };
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => match part.to_str() {
                Some(part) => parts.push(part),
                None => return Target::Rejected("its name is not valid UTF-8".to_owned()),
            },
            _ => return Target::Ignored,
        }
    }
    if parts.last().is_some_and(|name| is_ignored(name)) {
        return Target::Ignored;
    }
    let named = |kind, collection: &str, name: &str| {
        let checks =
            names::validate("collection", collection).and_then(|()| names::validate("name", name));
        match checks {
            Ok(()) => Target::Item(Key {
                kind,
                collection: collection.to_owned(),
                name: name.to_owned(),
            }),
            Err(err) => Target::Rejected(format!("not a valid name: {err}")),
        }
    };
    match parts.as_slice() {
        [TEMPLATES, set, group, file] => {
            let Some(title) = file.strip_suffix(TEMPLATE_SUFFIX) else {
                return Target::Rejected(format!(
                    "a template's file name ends in {TEMPLATE_SUFFIX}"
                ));
            };
            match (named(Kind::Template, set, title), groups.of(title)) {
                (Target::Item(_), Some(belongs)) if belongs != *group => Target::Rejected(format!(
                    "template {title:?} belongs in the group directory {belongs:?}, not {group:?}"
                )),
                (target, _) => target,
            }
        }
        [STYLESHEETS, theme, name] => named(Kind::Stylesheet, theme, name),
        _ => Target::Ignored,
    }
}

/// Whether `path` names a directory level that holds content: a set or
/// a group directory of templates, a theme directory of stylesheets.
fn is_content_dir(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return false;
    };
    let parts: Vec<_> = relative.components().collect();
    match parts.first().and_then(|part| part.as_os_str().to_str()) {
        Some(TEMPLATES) => matches!(parts.len(), 2 | 3),
        Some(STYLESHEETS) => parts.len() == 2,
        _ => false,
    }
}

/// What stands in the way of a path under the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// A symbolic link where a directory must be: never followed, so
    /// refused for good.
    Link(String),
    /// Something that may go away: a file where a directory must be, a
    /// directory that cannot be looked at.
    Now(String),
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Link(reason) | Self::Now(reason) => f.write_str(reason),
        }
    }
}

/// Checks that every directory between `root` and `path` is a real
/// directory, not a symbolic link (a missing one is fine: nothing is
/// there yet).
pub fn check_dirs(root: &Path, path: &Path) -> Result<(), Blocked> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let mut dir = root.to_owned();
    for component in parent.strip_prefix(root).unwrap_or(parent).components() {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Blocked::Link(format!(
                    "{} is a symbolic link; links are never followed",
                    dir.display()
                )));
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(Blocked::Now(format!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => {
                return Err(Blocked::Now(format!(
                    "cannot look at {}: {err}",
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_prefix(root: &str) -> Layout {
        Layout::new(root.into(), watch::channel(TemplateGroups::ByPrefix).1)
    }

    fn template(set: &str, title: &str) -> Key {
        Key {
            kind: Kind::Template,
            collection: set.to_owned(),
            name: title.to_owned(),
        }
    }

    #[test]
    fn templates_are_grouped_by_title_prefix() {
        assert_eq!(
            by_prefix("/r").path(&template("Default", "header_welcome")),
            Path::new("/r/templates/Default/header/header_welcome.html")
        );
        let css = Key {
            kind: Kind::Stylesheet,
            collection: "Default".to_owned(),
            name: "global.css".to_owned(),
        };
        assert_eq!(
            by_prefix("/r").path(&css),
            Path::new("/r/stylesheets/Default/global.css")
        );
    }

    #[test]
    fn paths_map_back_to_their_content() {
        let layout = by_prefix("/r");
        for key in [
            template("Default", "header_welcome"),
            template("Default", "sedan_chair"),
            template("Default", "index"),
            Key {
                kind: Kind::Stylesheet,
                collection: "Dark".to_owned(),
                name: "global.css".to_owned(),
            },
        ] {
            assert_eq!(layout.classify(&layout.path(&key)), Target::Item(key));
        }
        for ignored in [
            "/r/templates/Default",
            "/r/templates/Default/header",
            "/r/templates/Default/header/.header_a.html.swp",
            "/r/templates/Default/header/header_a.html~",
            "/r/templates/Default/header/4913",
            "/r/templates/Default/header/header_a.html___jb_tmp___",
            "/r/templates/Default/header/sedAb12Cd",
            "/r/templates/Default/header/.outpost-1-2-header_a.html.tmp",
            "/r/templates/Default/header/header_a.html.outpost-conflict-7",
            "/r/stylesheets/Dark/#global.css#",
            "/r/stylesheets/Dark/.goutputstream-XYZ123",
            "/r/notes.txt",
            "/elsewhere/templates/Default/header/header_a.html",
        ] {
            assert_eq!(
                layout.classify(Path::new(ignored)),
                Target::Ignored,
                "{ignored}"
            );
        }
        for rejected in [
            "/r/templates/Default/header/index.html",
            "/r/templates/Default/header/header_a.txt",
            "/r/stylesheets/Dark/-x.css",
        ] {
            assert!(
                matches!(layout.classify(Path::new(rejected)), Target::Rejected(_)),
                "{rejected}"
            );
        }
    }

    #[test]
    fn content_directories_are_known_by_their_level() {
        let layout = by_prefix("/r");
        for dir in [
            "/r/templates/D",
            "/r/templates/D/header",
            "/r/stylesheets/T",
        ] {
            assert!(layout.is_content_dir(Path::new(dir)), "{dir}");
        }
        for other in [
            "/r/templates",
            "/r/stylesheets/T/a.css",
            "/r/notes",
            "/x/templates/D",
        ] {
            assert!(!layout.is_content_dir(Path::new(other)), "{other}");
        }
    }

    #[test]
    fn a_forum_groups_by_its_own_prefixes() {
        let groups = TemplateGroups::prefixes(["Header", "index", "postbit"]);
        assert_eq!(groups.of("header_welcomeblock").as_deref(), Some("header"));
        assert_eq!(groups.of("Header").as_deref(), Some("header"));
        assert_eq!(groups.of("INDEX_boardstats").as_deref(), Some("index"));
        assert_eq!(groups.of("headerinclude").as_deref(), Some(UNGROUPED));
        assert_eq!(groups.of("index").as_deref(), Some("index"));
        assert_eq!(groups.of("zzcustom_box").as_deref(), Some(UNGROUPED));
        assert_eq!(groups.of("_x").as_deref(), Some(UNGROUPED));
        assert_eq!(TemplateGroups::Unknown.of("index"), None);

        let (sender, receiver) = watch::channel(TemplateGroups::Unknown);
        let layout = Layout::new("/r".into(), receiver);
        let index = template("Default", "index");
        // Unknown: the directory is taken as it is.
        assert_eq!(
            layout.classify(Path::new("/r/templates/Default/anything/index.html")),
            Target::Item(index.clone())
        );
        sender.send_replace(groups);
        assert_eq!(
            layout.path(&index),
            Path::new("/r/templates/Default/index/index.html")
        );
        assert_eq!(layout.classify(&layout.path(&index)), Target::Item(index));
        assert!(matches!(
            layout.classify(Path::new("/r/templates/Default/zzcustom/zzcustom_box.html")),
            Target::Rejected(_)
        ));
    }

    #[test]
    fn conflict_copies_sit_beside_the_file() {
        assert_eq!(
            conflict_copy(Path::new("/r/stylesheets/D/a.css"), "12"),
            Path::new("/r/stylesheets/D/a.css.outpost-conflict-12")
        );
    }

    #[test]
    fn linked_directories_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let templates = root.path().join("templates");
        fs::create_dir_all(&templates).unwrap();
        std::os::unix::fs::symlink(outside.path(), templates.join("Evil")).unwrap();
        let file = templates.join("Evil/header/header_a.html");
        assert!(matches!(
            check_dirs(root.path(), &file),
            Err(Blocked::Link(reason)) if reason.contains("symbolic link")
        ));
        // A file where a directory must be may go away.
        fs::write(templates.join("Flat"), "").unwrap();
        assert!(matches!(
            check_dirs(root.path(), &templates.join("Flat/header/header_a.html")),
            Err(Blocked::Now(reason)) if reason.contains("not a directory")
        ));
        let fine = templates.join("Default/header/header_a.html");
        assert_eq!(check_dirs(root.path(), &fine), Ok(()));
    }
}
