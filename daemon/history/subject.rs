//! What has a history, and where its versions live in the repository:
//! `templates/<set>/<group>/<title>.html` and `stylesheets/<theme>/<name>`
//! as in the sync root, `workspaces/<name>.toml|json` as in the workspaces
//! directory. The index reads a path back into its subject, so whatever
//! wrote a path — outpost, or someone with plain git — is listed under it.

use std::fmt;

use crate::sync::{Key, Kind};

/// A template, a stylesheet or a workspace file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Content(Key),
    Workspace(String),
}

/// The three columns a subject is indexed by.
pub struct Columns<'a> {
    pub kind: &'static str,
    pub collection: &'a str,
    pub name: &'a str,
}

impl Subject {
    pub fn columns(&self) -> Columns<'_> {
        match self {
            Self::Content(key) => Columns {
                kind: match key.kind {
                    Kind::Template => "template",
                    Kind::Stylesheet => "stylesheet",
                },
                collection: &key.collection,
                name: &key.name,
            },
            Self::Workspace(name) => Columns {
                kind: "workspace",
                collection: "",
                name,
            },
        }
    }

    /// The subject whose versions `path` holds; None for a path no
    /// subject has (a file someone added by hand elsewhere).
    pub fn of_path(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.split('/').collect();
        let key = |kind, collection: &str, name: &str| {
            Some(Self::Content(Key {
                kind,
                collection: collection.to_owned(),
                name: name.to_owned(),
            }))
        };
        match parts.as_slice() {
            ["templates", set, _group, file] => {
                let title = file.strip_suffix(".html")?;
                key(Kind::Template, set, title)
            }
            ["stylesheets", theme, name] => key(Kind::Stylesheet, theme, name),
            ["workspaces", file] => {
                let (name, extension) = file.rsplit_once('.')?;
                matches!(extension, "toml" | "json").then(|| Self::Workspace(name.to_owned()))
            }
            _ => None,
        }
    }
}

/// The history path of workspace `name` kept in a file named `file_name`.
pub fn workspace_path(file_name: &str) -> String {
    format!("workspaces/{file_name}")
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Content(key) => key.fmt(f),
            Self::Workspace(name) => write!(f, "workspace {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(set: &str, title: &str) -> Subject {
        Subject::Content(Key {
            kind: Kind::Template,
            collection: set.into(),
            name: title.into(),
        })
    }

    #[test]
    fn paths_read_back_into_their_subjects() {
        assert_eq!(
            Subject::of_path("templates/Default/header/header_welcome.html"),
            Some(template("Default", "header_welcome"))
        );
        assert_eq!(
            Subject::of_path("stylesheets/Default/global.css"),
            Some(Subject::Content(Key {
                kind: Kind::Stylesheet,
                collection: "Default".into(),
                name: "global.css".into(),
            }))
        );
        assert_eq!(
            Subject::of_path("workspaces/web.toml"),
            Some(Subject::Workspace("web".into()))
        );
        assert_eq!(
            Subject::of_path("workspaces/web.json"),
            Some(Subject::Workspace("web".into()))
        );
    }

    #[test]
    fn other_paths_have_no_subject() {
        for path in [
            "README",
            "templates/Default/header.html",
            "templates/Default/header/header.txt",
            "stylesheets/global.css",
            "workspaces/web.yaml",
            "workspaces/nested/web.toml",
        ] {
            assert_eq!(Subject::of_path(path), None, "{path}");
        }
    }

    #[test]
    fn columns_name_kind_collection_and_name() {
        let columns = template("Default", "index").columns().kind;
        assert_eq!(columns, "template");
        let workspace = Subject::Workspace("web".into());
        let columns = workspace.columns();
        assert_eq!(
            (columns.kind, columns.collection, columns.name),
            ("workspace", "", "web")
        );
    }
}
