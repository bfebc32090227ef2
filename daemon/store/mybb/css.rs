//! The cached copies MyBB serves of a stylesheet
//! (`cache/themes/theme{tid}/{name}` and its `.min.css`): the content its
//! admin panel writes there, byte for byte — `{theme}` replaced by the
//! theme's cache directory, relative `url()`s pointed three levels up (the
//! file lives three below the forum root), and MyBB's minification.

use std::sync::LazyLock;

use regex::bytes::{Captures, Regex};

/// `url(X)`, `url('X')` or `url("X")`, X without quotes or whitespace.
/// MyBB matches the quotes with a back-reference; here the three cases
/// are spelled out, in the same order.
static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?-u)url\((?:"([^"'\s]*?)"|'([^"'\s]*?)'|([^"'\s]*?))\)"#)
        .expect("a valid pattern")
});

/// A URL left as it is: absolute (a scheme) or rooted.
static ABSOLUTE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i-u)^([a-z0-9]+:|/)").expect("a valid pattern"));

static COMMENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s-u)/\*.*?\*/").expect("a valid pattern"));

static SPACE_AROUND: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u)\s*([{}:;,])\s*").expect("a valid pattern"));

/// Where theme `tid`'s cached stylesheets live, relative to the forum root.
pub fn theme_dir(tid: u32) -> String {
    format!("cache/themes/theme{tid}")
}

/// Whether MyBB caches a sheet of this name (case-sensitive, as MyBB).
pub fn is_cached(name: &str) -> bool {
    name.ends_with(".css")
}

/// The minified copy's name: every ".css" in it becomes ".min.css".
pub fn minified_name(name: &str) -> String {
    name.replace(".css", ".min.css")
}

/// What MyBB writes to `cache/themes/theme{tid}/{name}` for `css`.
pub fn cached(tid: u32, css: &str) -> String {
    let css = css.replace("{theme}", &theme_dir(tid));
    let fixed = URL.replace_all(css.as_bytes(), |captures: &Captures<'_>| {
        let url = (1..=3)
            .find_map(|group| captures.get(group))
            .map_or(&b""[..], |found| found.as_bytes());
        let relative = !ABSOLUTE.is_match(url) && find(url, b"../../../").is_none();
        let mut replaced = b"url(".to_vec();
        if relative {
            replaced.extend_from_slice(b"../../../");
        }
        replaced.extend_from_slice(url);
        replaced.push(b')');
        replaced
    });
    // Only ASCII was matched and inserted: the text stays UTF-8.
    String::from_utf8_lossy(&fixed).into_owned()
}

/// MyBB's minification of a cached stylesheet.
pub fn minified(cached: &str) -> String {
    let text = COMMENT.replace_all(cached.as_bytes(), &b""[..]);
    let text = SPACE_AROUND.replace_all(&text, &b"$1"[..]);
    let text = String::from_utf8_lossy(&text).replace(";}", "}");
    short_colours(&text)
        .trim_matches([' ', '\t', '\n', '\r', '\0', '\x0b'])
        .to_owned()
}

/// `#aabbcc` → `#abc`, pairs compared without case (MyBB's pattern is
/// case-insensitive, back-references included) and without a boundary
/// check (`#aabbccdd` → `#abcdd`, as in MyBB).
fn short_colours(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(offset) = text[at..].find('#') {
        let hash = at + offset;
        out.push_str(&text[at..=hash]);
        at = hash + 1;
        let digits = bytes.get(at..at + 6);
        let pairs = digits.filter(|d| {
            d.iter().all(u8::is_ascii_hexdigit)
                && d.chunks(2)
                    .all(|pair| pair[0].eq_ignore_ascii_case(&pair[1]))
        });
        if let Some(digits) = pairs {
            for pair in digits.chunks(2) {
                out.push(char::from(pair[0]));
            }
            at += 6;
        }
    }
    out.push_str(&text[at..]);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theme_variables_and_relative_urls_are_rewritten() {
        assert_eq!(
            cached(2, r#"a{background:url("{theme}/bg.png")}"#),
            "a{background:url(../../../cache/themes/theme2/bg.png)}"
        );
        assert_eq!(
            cached(2, "url('images/x.png')"),
            "url(../../../images/x.png)"
        );
        assert_eq!(cached(2, "url(#frag)"), "url(../../../#frag)");
        for kept in [
            "url(data:image/png;base64,AAAA)",
            "url(http://x/y.png)",
            "url(/abs.png)",
            "url(//cdn/x.png)",
            "url(../../../already.png)",
        ] {
            assert_eq!(cached(1, kept), kept, "{kept}");
        }
        // Quotes go either way; whitespace inside leaves the url alone.
        assert_eq!(cached(1, "url('/a.png')"), "url(/a.png)");
        assert_eq!(cached(1, "url('a b.png')"), "url('a b.png')");
        assert_eq!(cached(1, "url( x )"), "url( x )");
        assert_eq!(cached(1, "é url(ü.png)"), "é url(../../../ü.png)");
    }

    #[test]
    fn minification_is_mybbs() {
        let css = "/* head */\nbody {\n  color : #AAbbcc ;\n  margin: 0 , 1;\n}\n\n.x { c: #aabbccdd; d: #abcdef }\n";
        assert_eq!(
            minified(css),
            "body{color:#Abc;margin:0,1}.x{c:#abcdd;d:#abcdef}"
        );
        assert_eq!(minified("  a{b:c;}  "), "a{b:c}");
        assert_eq!(minified("#aab"), "#aab");
    }

    #[test]
    fn names() {
        assert!(is_cached("global.css"));
        assert!(!is_cached("global.CSS"));
        assert_eq!(minified_name("a.css.css"), "a.min.css.min.css");
        assert_eq!(theme_dir(12), "cache/themes/theme12");
    }
}
