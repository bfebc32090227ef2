//! Names of template sets, themes, templates and stylesheets become path
//! components under the sync root, so each is checked to be one harmless
//! file name: nothing can address a path outside the root, and nothing
//! looks like a hidden, temporary or backup file — the names sync ignores
//! on disk, which are here too.

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
    if is_ignored(name) {
        return Err(invalid(format!(
            "{name:?} looks like an editor's temporary or backup file, which sync ignores"
        )));
    }
    Ok(())
}

/// Marks a conflict copy: `<file>.outpost-conflict-<id>`.
pub const CONFLICT_MARK: &str = ".outpost-conflict-";

/// Whether a file name is never content: our temps and conflict copies,
/// hidden files, and what editors and tools leave behind while saving
/// (backups, swap and lock files, vim's `4913` probe, JetBrains' and
/// sed's temps, GIO's output streams).
pub fn is_ignored(name: &str) -> bool {
    let bytes = name.as_bytes();
    let vim_swap = bytes.len() > 4 && bytes[..bytes.len() - 1].ends_with(b".sw");
    let sed_temp = bytes.len() == 9
        && name.starts_with("sed")
        && bytes[3..].iter().all(u8::is_ascii_alphanumeric);
    super::atomic::is_temp(name)
        || name.contains(CONFLICT_MARK)
        || name.starts_with('.')
        || name.ends_with('~')
        || (name.starts_with('#') && name.ends_with('#'))
        || vim_swap
        || (!name.is_empty() && name.bytes().all(|byte| byte.is_ascii_digit()))
        || name.ends_with("___jb_tmp___")
        || name.ends_with("___jb_old___")
        || sed_temp
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
