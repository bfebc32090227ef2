//! Where content lives on disk:
//! `<root>/templates/<set>/<group>/<title>.html` and
//! `<root>/stylesheets/<theme>/<name>`, and the way back from a path to
//! the content it holds. Names were validated to be single file names, so
//! every path stays under the root; paths found on disk are checked the
//! same way, and a symbolic link anywhere below the root is refused.

use std::{
    fs, io,
    path::{Component, Path, PathBuf},
};

use super::{
    Key, Kind,
    names::{self, CONFLICT_MARK, is_ignored},
    template_group,
};

/// Directory of templates under the root.
const TEMPLATES: &str = "templates";
/// Directory of stylesheets under the root.
const STYLESHEETS: &str = "stylesheets";
/// Ending of a template's file name.
const TEMPLATE_SUFFIX: &str = ".html";

/// The file of a piece of content under `root`.
pub fn path(root: &Path, key: &Key) -> PathBuf {
    match key.kind {
        Kind::Template => collection_dir(root, key.kind, &key.collection)
            .join(template_group(&key.name))
            .join(format!("{}{TEMPLATE_SUFFIX}", key.name)),
        Kind::Stylesheet => collection_dir(root, key.kind, &key.collection).join(&key.name),
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

/// Maps a path under `root` to the content it would hold.
pub fn classify(root: &Path, path: &Path) -> Target {
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
            match named(Kind::Template, set, title) {
                Target::Item(_) if template_group(title) != *group => Target::Rejected(format!(
                    "template {title:?} belongs in the group directory {:?}, not {group:?}",
                    template_group(title)
                )),
                target => target,
            }
        }
        [STYLESHEETS, theme, name] => named(Kind::Stylesheet, theme, name),
        _ => Target::Ignored,
    }
}

/// Whether `path` names a directory level that holds content: a set or
/// a group directory of templates, a theme directory of stylesheets.
pub fn is_content_dir(root: &Path, path: &Path) -> bool {
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

/// Checks that every directory between `root` and `path` is a real
/// directory, not a symbolic link (a missing one is fine: nothing is
/// there yet).
pub fn check_dirs(root: &Path, path: &Path) -> Result<(), String> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let mut dir = root.to_owned();
    for component in parent.strip_prefix(root).unwrap_or(parent).components() {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symbolic link; links are never followed",
                    dir.display()
                ));
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(format!("{} is not a directory", dir.display()));
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(format!("cannot look at {}: {err}", dir.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            path(Path::new("/r"), &template("Default", "header_welcome")),
            Path::new("/r/templates/Default/header/header_welcome.html")
        );
        let css = Key {
            kind: Kind::Stylesheet,
            collection: "Default".to_owned(),
            name: "global.css".to_owned(),
        };
        assert_eq!(
            path(Path::new("/r"), &css),
            Path::new("/r/stylesheets/Default/global.css")
        );
    }

    #[test]
    fn paths_map_back_to_their_content() {
        let root = Path::new("/r");
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
            assert_eq!(classify(root, &path(root, &key)), Target::Item(key));
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
                classify(root, Path::new(ignored)),
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
                matches!(classify(root, Path::new(rejected)), Target::Rejected(_)),
                "{rejected}"
            );
        }
    }

    #[test]
    fn content_directories_are_known_by_their_level() {
        let root = Path::new("/r");
        for dir in [
            "/r/templates/D",
            "/r/templates/D/header",
            "/r/stylesheets/T",
        ] {
            assert!(is_content_dir(root, Path::new(dir)), "{dir}");
        }
        for other in [
            "/r/templates",
            "/r/stylesheets/T/a.css",
            "/r/notes",
            "/x/templates/D",
        ] {
            assert!(!is_content_dir(root, Path::new(other)), "{other}");
        }
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
        assert!(
            check_dirs(root.path(), &file)
                .unwrap_err()
                .contains("symbolic link")
        );
        let fine = templates.join("Default/header/header_a.html");
        assert_eq!(check_dirs(root.path(), &fine), Ok(()));
    }
}
