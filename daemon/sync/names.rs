//! Names of template sets, themes, templates and stylesheets become path
//! components under the sync root, so each is checked to be one harmless
//! file name: nothing can address a path outside the root, and nothing
//! looks like a hidden, temporary or backup file.

/// Longest name, in bytes.
pub const MAX_NAME: usize = 120;

/// Checks one name; `field` names it in the error.
pub fn validate(field: &'static str, name: &str) -> Result<(), super::ContentError> {
    let invalid = |reason: String| super::ContentError::Invalid { field, reason };
    if name.is_empty() {
        return Err(invalid("must not be empty".to_owned()));
    }
    if name.len() > MAX_NAME {
        return Err(invalid(format!("is longer than {MAX_NAME} bytes")));
    }
    if name == "." || name == ".." || name.contains("..") {
        return Err(invalid(format!("{name:?} must not contain \"..\"")));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| matches!(c, '/' | '\\') || c.is_control())
    {
        return Err(invalid(format!("{name:?} must not contain {bad:?}")));
    }
    if name.starts_with(['.', '#', '~', '-']) || name.ends_with('~') || name.ends_with(' ') {
        return Err(invalid(format!(
            "{name:?} must not start with '.', '#', '~' or '-', nor end with '~' or a space"
        )));
    }
    if super::layout::is_ignored(name) {
        return Err(invalid(format!(
            "{name:?} looks like an editor's temporary or backup file, which sync ignores"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_pass() {
        for good in [
            "header_welcomeblock",
            "global.css",
            "Default Templates",
            "ünïcode",
        ] {
            validate("name", good).unwrap();
        }
        let long = "x".repeat(MAX_NAME + 1);
        for bad in [
            "",
            "..",
            "../etc",
            "a/b",
            "/abs",
            "a\\b",
            "a\0b",
            ".hidden",
            "back~",
            "#auto#",
            "4913",
            "sedAb12Cd",
            "global.css.swp",
            long.as_str(),
        ] {
            assert!(validate("name", bad).is_err(), "{bad:?}");
        }
    }
}
