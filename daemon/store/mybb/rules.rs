//! MyBB's own rule for template content, as its admin panel applies it
//! (`docs/mybb-semantics.md`): the security check a template must pass
//! before it is saved. (The trailing whitespace a save strips is
//! [`Trim`](crate::sync::Trim); the groups are
//! [`TemplateGroups`](crate::sync::layout::TemplateGroups).)
//!
//! The check is MyBB's `check_template()` with the same three patterns,
//! matched on bytes as PHP's PCRE does without the `u` flag (ASCII case
//! folding and ASCII `\s`), so that it is neither looser nor stricter.

use std::sync::LazyLock;

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
}
