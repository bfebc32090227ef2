//! The MyBB content store (work in progress, issue #17): a forum's own
//! database as the content store, with MyBB 1.8's rules
//! (`docs/mybb-semantics.md`).

#![allow(dead_code)]

pub mod css;
pub mod php_config;
pub mod rules;

/// MyBB's own PHP as the judge of `rules` and `css` (a developer's check,
/// not run in CI: it needs MyBB's source). Extract `check_template` from
/// `admin/inc/functions.php` and `parse_theme_variables`,
/// `minify_stylesheet`, `fix_css_urls` from `admin/inc/functions_themes.php`
/// into a PHP script that reads `/tmp/cases.json` (`{"templates": [..],
/// "css": [..]}`) and prints `{"templates": [0|1..], "cached": [..],
/// "min": [..]}` to `/tmp/php-out.json`; 20,000 random cases of each
/// agreed on 2026-12-06 (MyBB 1.8.37, PHP 8.2).
#[cfg(test)]
mod judge {
    #[test]
    #[ignore = "needs MyBB's PHP output in /tmp"]
    fn against_php() {
        let cases: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string("/tmp/cases.json").unwrap()).unwrap();
        let php: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string("/tmp/php-out.json").unwrap()).unwrap();
        let mut bad = 0;
        for (i, t) in cases["templates"].as_array().unwrap().iter().enumerate() {
            let t = t.as_str().unwrap();
            let ours = super::rules::check_template(t).is_err() as i64;
            if ours != php["templates"][i].as_i64().unwrap() {
                bad += 1;
                if bad < 10 {
                    eprintln!("template {t:?}: php {} ours {ours}", php["templates"][i]);
                }
            }
        }
        for (i, c) in cases["css"].as_array().unwrap().iter().enumerate() {
            let c = c.as_str().unwrap();
            let cached = super::css::cached(2, c);
            let min = super::css::minified(&cached);
            if cached != php["cached"][i].as_str().unwrap()
                || min != php["min"][i].as_str().unwrap()
            {
                bad += 1;
                if bad < 20 {
                    eprintln!(
                        "css {c:?}\n ours {cached:?} {min:?}\n php  {:?} {:?}",
                        php["cached"][i], php["min"][i]
                    );
                }
            }
        }
        assert_eq!(bad, 0);
    }
}
