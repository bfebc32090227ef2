//! Where content lives on disk:
//! `<root>/templates/<set>/<group>/<title>.html` and
//! `<root>/stylesheets/<theme>/<name>`. Names were validated to be single
//! file names, so every path stays under the root.

use std::path::{Path, PathBuf};

use super::{Key, Kind, template_group};

/// The file of a piece of content under `root`.
pub fn path(root: &Path, key: &Key) -> PathBuf {
    match key.kind {
        Kind::Template => root
            .join("templates")
            .join(&key.collection)
            .join(template_group(&key.name))
            .join(format!("{}.html", key.name)),
        Kind::Stylesheet => root
            .join("stylesheets")
            .join(&key.collection)
            .join(&key.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_grouped_by_title_prefix() {
        let key = Key {
            kind: Kind::Template,
            collection: "Default".to_owned(),
            name: "header_welcome".to_owned(),
        };
        assert_eq!(
            path(Path::new("/r"), &key),
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
}
