//! MyBB's own rules for template content, as its admin panel applies them
//! (`docs/mybb-semantics.md`): the security check a template must pass
//! before it is saved, the trailing whitespace a save strips, and the
//! group a template's title puts it in.
//!
//! The check is MyBB's `check_template()` with the same three patterns,
//! matched on bytes as PHP's PCRE does without the `u` flag (ASCII case
//! folding and ASCII `\s`), so that it is neither looser nor stricter.

use std::{collections::BTreeSet, sync::LazyLock};

use regex::bytes::Regex;

/// Rule 1: a database setting of the forum's config, anywhere.
static DATABASE_SETTING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i-u)\$config\[((['|"]database['|"])|([^'"].*?))\]\[((['|"](database|hostname|password|table_prefix|username)['|"])|([^'"].*?))\]"#,
    )
    .expect("a valid pattern")
});

/// Rule 2: PHP's complex interpolation, `${…}`.
static COMPLEX_SYNTAX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u)\$\s*\{").expect("a valid pattern"));

/// Rule 3, first half: the simple expressions a template may hold,
/// `{$name}`, `{$a->b}`, `{$a::b}`, `{$a['key']}` and chains of them. MyBB
/// writes the key's quotes as a back-reference; here the three cases are
/// spelled out.
static ALLOWED_EXPRESSION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?-u)\{\$+[a-zA-Z_][a-zA-Z_0-9]*((?:->|::)\$*[a-zA-Z_][a-zA-Z_0-9]*|\[\s*\$*(?:'[a-zA-Z_ 0-9]+'|"[a-zA-Z_ 0-9]+"|[a-zA-Z_ 0-9]+)\]\s*)*\}"#,
    )
    .expect("a valid pattern")
});

/// Rule 3, second half: any `{$…}` left is refused.
static ANY_EXPRESSION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s-u)\{\$.+?\}").expect("a valid pattern"));

/// Why MyBB would refuse to save `template`, if it would.
pub fn check_template(template: &str) -> Result<(), &'static str> {
    let bytes = template.as_bytes();
    if DATABASE_SETTING.is_match(bytes) {
        return Err(
            "it names the forum's database settings ($config['database'][…]), which MyBB's check_template() refuses: a template printing them would show them to every visitor",
        );
    }
    if COMPLEX_SYNTAX.is_match(bytes) {
        return Err(
            "it holds ${ (PHP's complex interpolation, also JavaScript's template literals), which MyBB's check_template() refuses",
        );
    }
    let left = ALLOWED_EXPRESSION.replace_all(bytes, &b""[..]);
    if ANY_EXPRESSION.is_match(&left) {
        return Err(
            "it holds a {$…} expression other than a variable, property or array key (a call, say, or jQuery's {$(…)}), which MyBB's check_template() refuses",
        );
    }
    Ok(())
}

/// What a save stores: the content without trailing whitespace, as PHP's
/// `rtrim` strips it (space, tab, newline, carriage return, NUL, vertical
/// tab).
pub fn rtrim(content: &str) -> &str {
    content.trim_end_matches([' ', '\t', '\n', '\r', '\0', '\x0b'])
}

/// Template groups by their prefixes, lower-cased.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Groups(BTreeSet<String>);

/// Where templates of no group go, as a directory name.
pub const UNGROUPED: &str = "ungrouped";

impl Groups {
    /// The groups of these `templategroups.prefix` values.
    pub fn new<S: AsRef<str>>(prefixes: impl IntoIterator<Item = S>) -> Self {
        Self(
            prefixes
                .into_iter()
                .map(|prefix| prefix.as_ref().to_lowercase())
                .filter(|prefix| !prefix.is_empty())
                .collect(),
        )
    }

    /// The group of a template: its title up to the first `_`, lower-cased,
    /// if that is a group's prefix; else [`UNGROUPED`].
    pub fn of(&self, title: &str) -> String {
        let first = title.split('_').next().unwrap_or(title).to_lowercase();
        if self.0.contains(&first) {
            first
        } else {
            UNGROUPED.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_settings_are_refused_in_every_spelling() {
        for refused in [
            "{$config['database']['password']}",
            "$config[database][username]",
            r#"$CONFIG["Database"]["Username"]"#,
            "x $config['database']['table_prefix'] y",
            "$config[|database|][hostname]",
            "$config['database'][whatever]",
        ] {
            assert!(check_template(refused).is_err(), "{refused}");
        }
        for allowed in [
            "$config['foo']['password']",
            "$config['admin_dir']",
            "{$mybb->settings['bbname']}",
        ] {
            assert_eq!(check_template(allowed), Ok(()), "{allowed}");
        }
    }

    #[test]
    fn complex_interpolation_is_refused() {
        for refused in ["${x}", "$ {x}", "`${a}`", "$\n{"] {
            assert!(check_template(refused).is_err(), "{refused:?}");
        }
        assert_eq!(check_template("$ x {y}"), Ok(()));
    }

    #[test]
    fn only_simple_expressions_are_allowed() {
        for allowed in [
            "{$a}",
            "{$$a}",
            "{$a->b->c}",
            "{$a::b}",
            "{$a->$b}",
            "{$a['b']['c']}",
            "{$a[$b]}",
            "{$a['b']->c['d']}",
            "{$a['b'] }",
            "{$_x}",
            r#"{$a["b c"]}"#,
            "{$a[b]}",
            "<?php echo 1; ?> ok",
            "{ $a }",
            "<div>{$lang->welcome_back}</div>\n{$header}",
        ] {
            assert_eq!(check_template(allowed), Ok(()), "{allowed}");
        }
        for refused in [
            "{$a->b()}",
            "{$a[-1]}",
            r#"{$a['b"]}"#,
            "{$a.b}",
            "{$a ['b']}",
            r#"{$a[ "x y" ]}"#,
            "{$1}",
            "{$a\n}",
            "<script>jQuery(function(){$(\"#x\").hide();});</script>",
        ] {
            assert!(check_template(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn saves_strip_trailing_whitespace_only() {
        assert_eq!(rtrim("  a b \t\r\n\0\x0b"), "  a b");
        assert_eq!(rtrim("a\u{a0}"), "a\u{a0}");
        assert_eq!(rtrim("\n\n"), "");
    }

    #[test]
    fn groups_follow_mybbs_rule() {
        let groups = Groups::new(["header", "Index", "postbit"]);
        assert_eq!(groups.of("header_welcomeblock_guest"), "header");
        assert_eq!(groups.of("index"), "index");
        assert_eq!(groups.of("INDEX_boardstats"), "index");
        assert_eq!(groups.of("postbit_author_user"), "postbit");
        assert_eq!(groups.of("headerinclude"), UNGROUPED);
        assert_eq!(groups.of("sedan_chair"), UNGROUPED);
        assert_eq!(groups.of("_odd"), UNGROUPED);
    }
}
