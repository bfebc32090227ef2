//! Reads the PHP assignments a forum's `inc/config.php` is made of:
//! `$config['database']['hostname'] = 'localhost';` and the like, with
//! single- or double-quoted strings, numbers, booleans, `null` and
//! `array(...)` / `[...]` values, between comments. Nothing is evaluated:
//! a statement of any other shape, or a value that would need PHP to run
//! (a constant, a call, a `$` inside double quotes), is an error naming
//! its line, so a config we cannot read exactly is never half-read.

use std::collections::BTreeMap;

/// A value a config assigns.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// PHP's ordered array, keys as PHP normalises them (integer-like
    /// strings become integers).
    Array(Vec<(ArrayKey, Value)>),
}

/// A PHP array key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ArrayKey {
    Int(i64),
    Str(String),
}

/// Why a config cannot be read, with the 1-based line.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Everything a config file assigns to `$config`, by key path.
#[derive(Debug, Default, PartialEq)]
pub struct PhpConfig {
    values: BTreeMap<Vec<ArrayKey>, Value>,
}

impl PhpConfig {
    /// Parses the text of a config file.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut parser = Parser {
            text: text.as_bytes(),
            at: 0,
        };
        let mut config = Self::default();
        loop {
            parser.skip_space_and_comments()?;
            if parser.at == parser.text.len() {
                return Ok(config);
            }
            if parser.eat("<?php") {
                continue;
            }
            if parser.eat("?>") {
                // Anything after a closing tag is output, not code.
                let rest = &parser.text[parser.at..];
                if rest.iter().all(u8::is_ascii_whitespace) {
                    return Ok(config);
                }
                return Err(parser.error("text after the closing ?> tag"));
            }
            let (path, value) = parser.assignment()?;
            config.values.insert(path, value);
        }
    }

    /// The value at `path` (keys below `$config`), if assigned: either
    /// directly or as part of an assigned array.
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        let wanted: Vec<ArrayKey> = path.iter().map(|key| ArrayKey::of(key)).collect();
        // The longest assigned prefix decides; later keys index into it.
        (0..=wanted.len()).rev().find_map(|len| {
            let assigned = self.values.get(&wanted[..len])?;
            wanted[len..]
                .iter()
                .try_fold(assigned, |value, key| match value {
                    Value::Array(entries) => {
                        entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
                    }
                    _ => None,
                })
        })
    }

    /// The value at `path` as PHP would turn it into a string (a missing
    /// value, null and false are "").
    pub fn string(&self, path: &[&str]) -> Option<String> {
        Some(match self.get(path)? {
            Value::Null | Value::Bool(false) => String::new(),
            Value::Bool(true) => "1".to_owned(),
            Value::Int(n) => n.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.clone(),
            Value::Array(_) => return None,
        })
    }

    /// The keys of the array at `path`, whether it is assigned whole or
    /// key by key (`$config['memcache'][0]['host'] = …`), each once, in
    /// the order assigned whole, then in key order.
    pub fn keys(&self, path: &[&str]) -> Vec<String> {
        let wanted: Vec<ArrayKey> = path.iter().map(|key| ArrayKey::of(key)).collect();
        let mut keys: Vec<&ArrayKey> = match self.get(path) {
            Some(Value::Array(entries)) => entries.iter().map(|(key, _)| key).collect(),
            _ => Vec::new(),
        };
        for assigned in self.values.keys() {
            if assigned.len() > wanted.len() && assigned.starts_with(&wanted) {
                keys.push(&assigned[wanted.len()]);
            }
        }
        let mut seen = Vec::new();
        keys.retain(|key| {
            let new = !seen.contains(key);
            seen.push(*key);
            new
        });
        keys.into_iter().map(ArrayKey::text).collect()
    }
}

impl ArrayKey {
    /// The key as PHP prints it.
    fn text(&self) -> String {
        match self {
            ArrayKey::Int(n) => n.to_string(),
            ArrayKey::Str(s) => s.clone(),
        }
    }

    /// The key PHP makes of a string: a canonical decimal integer becomes
    /// an integer key.
    pub fn of(key: &str) -> Self {
        let canonical = key == "0"
            || (!key.starts_with('0')
                && !key.starts_with("-0")
                && key != "-"
                && key
                    .strip_prefix('-')
                    .unwrap_or(key)
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                && !key.is_empty());
        match key.parse() {
            Ok(n) if canonical => Self::Int(n),
            _ => Self::Str(key.to_owned()),
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn line(&self) -> usize {
        1 + self.text[..self.at].iter().filter(|&&b| b == b'\n').count()
    }

    fn error(&self, reason: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line(),
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.text[self.at..].starts_with(token.as_bytes()) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    /// Eats a keyword (case-insensitive, as PHP's are) not followed by a
    /// name character.
    fn eat_word(&mut self, word: &str) -> bool {
        let end = self.at + word.len();
        let matches = self
            .text
            .get(self.at..end)
            .is_some_and(|found| found.eq_ignore_ascii_case(word.as_bytes()))
            && !self
                .text
                .get(end)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if matches {
            self.at = end;
        }
        matches
    }

    fn expect(&mut self, token: &str, what: &str) -> Result<(), ParseError> {
        self.skip_space_and_comments()?;
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(format!("expected {what}")))
        }
    }

    fn skip_space_and_comments(&mut self) -> Result<(), ParseError> {
        loop {
            while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
                self.at += 1;
            }
            if self.eat("//") || self.eat("#") {
                while let Some(b) = self.peek() {
                    if b == b'\n' || self.text[self.at..].starts_with(b"?>") {
                        break;
                    }
                    self.at += 1;
                }
            } else if self.text[self.at..].starts_with(b"/*") {
                let start = self.line();
                match find(&self.text[self.at + 2..], b"*/") {
                    Some(end) => self.at += 2 + end + 2,
                    None => {
                        return Err(ParseError {
                            line: start,
                            reason: "a /* comment is never closed".to_owned(),
                        });
                    }
                }
            } else {
                return Ok(());
            }
        }
    }

    /// `$config[key]...[key] = value;`
    fn assignment(&mut self) -> Result<(Vec<ArrayKey>, Value), ParseError> {
        if !self.eat("$config")
            || self
                .peek()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(self.error(
                "only assignments to $config (`$config['key'] = value;`) are understood here",
            ));
        }
        let mut path = Vec::new();
        loop {
            self.skip_space_and_comments()?;
            if !self.eat("[") {
                break;
            }
            self.skip_space_and_comments()?;
            let key = match self.value()? {
                Value::Str(key) => ArrayKey::of(&key),
                Value::Int(n) => ArrayKey::Int(n),
                _ => return Err(self.error("an array key must be a string or an integer")),
            };
            path.push(key);
            self.expect("]", "]")?;
        }
        self.expect("=", "= after $config[...]")?;
        self.skip_space_and_comments()?;
        let value = self.value()?;
        self.expect(";", "; at the end of the assignment")?;
        Ok((path, value))
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.peek() {
            Some(b'\'') => self.single_quoted().map(Value::Str),
            Some(b'"') => self.double_quoted().map(Value::Str),
            Some(b'[') => {
                self.at += 1;
                self.array_entries("]")
            }
            Some(b) if b.is_ascii_digit() || b == b'-' || b == b'+' || b == b'.' => self.number(),
            _ if self.eat_word("array") => {
                self.expect("(", "( after array")?;
                self.array_entries(")")
            }
            _ if self.eat_word("true") => Ok(Value::Bool(true)),
            _ if self.eat_word("false") => Ok(Value::Bool(false)),
            _ if self.eat_word("null") => Ok(Value::Null),
            _ => Err(self
                .error("a value must be a quoted string, a number, true, false, null or an array")),
        }
    }

    fn array_entries(&mut self, close: &str) -> Result<Value, ParseError> {
        let mut entries: Vec<(ArrayKey, Value)> = Vec::new();
        let mut next_index = 0i64;
        loop {
            self.skip_space_and_comments()?;
            if self.eat(close) {
                return Ok(Value::Array(entries));
            }
            let first = self.value()?;
            self.skip_space_and_comments()?;
            let (key, value) = if self.eat("=>") {
                let key = match first {
                    Value::Str(key) => ArrayKey::of(&key),
                    Value::Int(n) => ArrayKey::Int(n),
                    _ => return Err(self.error("an array key must be a string or an integer")),
                };
                self.skip_space_and_comments()?;
                (key, self.value()?)
            } else {
                (ArrayKey::Int(next_index), first)
            };
            if let ArrayKey::Int(n) = key {
                next_index = next_index.max(n.saturating_add(1));
            }
            // A repeated key replaces the earlier value, in its place.
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => entries.push((key, value)),
            }
            self.skip_space_and_comments()?;
            if !self.eat(",") {
                self.expect(close, &format!(", or {close} in the array"))?;
                return Ok(Value::Array(entries));
            }
        }
    }

    fn single_quoted(&mut self) -> Result<String, ParseError> {
        let start = self.line();
        self.at += 1;
        let mut bytes = Vec::new();
        loop {
            match self.peek() {
                None => return Err(unterminated(start)),
                Some(b'\'') => {
                    self.at += 1;
                    break;
                }
                // Only \' and \\ are escapes; any other backslash is kept.
                Some(b'\\') if matches!(self.text.get(self.at + 1), Some(b'\'' | b'\\')) => {
                    bytes.push(self.text[self.at + 1]);
                    self.at += 2;
                }
                Some(b) => {
                    bytes.push(b);
                    self.at += 1;
                }
            }
        }
        self.utf8(bytes)
    }

    fn double_quoted(&mut self) -> Result<String, ParseError> {
        let start = self.line();
        self.at += 1;
        let mut bytes = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(unterminated(start));
            };
            self.at += 1;
            match b {
                b'"' => break,
                b'$' => {
                    return Err(self.error(
                        "a $ in a double-quoted string would be PHP interpolation; write \\$ or use single quotes",
                    ));
                }
                b'\\' => {
                    let Some(escaped) = self.peek() else {
                        return Err(unterminated(start));
                    };
                    self.at += 1;
                    match escaped {
                        b'n' => bytes.push(b'\n'),
                        b't' => bytes.push(b'\t'),
                        b'r' => bytes.push(b'\r'),
                        b'v' => bytes.push(0x0b),
                        b'e' => bytes.push(0x1b),
                        b'f' => bytes.push(0x0c),
                        b'0'..=b'7' => {
                            let mut value = u32::from(escaped - b'0');
                            for _ in 0..2 {
                                match self.peek() {
                                    Some(d @ b'0'..=b'7') => {
                                        value = value * 8 + u32::from(d - b'0');
                                        self.at += 1;
                                    }
                                    _ => break,
                                }
                            }
                            bytes.push(value as u8);
                        }
                        b'x' if self.peek().is_some_and(|d| d.is_ascii_hexdigit()) => {
                            let mut value = 0u8;
                            for _ in 0..2 {
                                match self.peek() {
                                    Some(d) if d.is_ascii_hexdigit() => {
                                        value = value * 16
                                            + (d as char).to_digit(16).unwrap_or(0) as u8;
                                        self.at += 1;
                                    }
                                    _ => break,
                                }
                            }
                            bytes.push(value);
                        }
                        b'\\' | b'"' | b'$' => bytes.push(escaped),
                        b'u' if self.peek() == Some(b'{') => {
                            let close = find(&self.text[self.at..], b"}")
                                .ok_or_else(|| self.error("\\u{ is never closed"))?;
                            let digits =
                                std::str::from_utf8(&self.text[self.at + 1..self.at + close])
                                    .ok()
                                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                                    .and_then(char::from_u32)
                                    .ok_or_else(|| self.error("not a valid \\u{...} escape"))?;
                            self.at += close + 1;
                            let mut buffer = [0; 4];
                            bytes.extend_from_slice(digits.encode_utf8(&mut buffer).as_bytes());
                        }
                        // An unknown escape keeps its backslash.
                        other => bytes.extend_from_slice(&[b'\\', other]),
                    }
                }
                b => bytes.push(b),
            }
        }
        self.utf8(bytes)
    }

    fn utf8(&self, bytes: Vec<u8>) -> Result<String, ParseError> {
        String::from_utf8(bytes).map_err(|_| self.error("a string is not valid UTF-8"))
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.at;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.at += 1;
        }
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        {
            self.at += 1;
        }
        let literal = std::str::from_utf8(&self.text[start..self.at])
            .unwrap_or_default()
            .replace('_', "");
        if let Ok(n) = literal.parse::<i64>() {
            return Ok(Value::Int(n));
        }
        match literal.parse::<f64>() {
            Ok(f) if literal.contains(['.', 'e', 'E']) => Ok(Value::Float(f)),
            _ => Err(self.error(format!("{literal:?} is not a number outpost reads"))),
        }
    }
}

fn unterminated(line: usize) -> ParseError {
    ParseError {
        line,
        reason: "a string is never closed".to_owned(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config as MyBB 1.8's installer writes it.
    const INSTALLED: &str = r#"<?php
/**
 * Database configuration
 *
 * Please see the MyBB Docs for advanced
 * database configuration for larger installations
 * https://docs.mybb.com/
 */

$config['database']['type'] = 'mysqli';
$config['database']['database'] = 'forum';
$config['database']['table_prefix'] = 'mybb_';

$config['database']['hostname'] = 'localhost';
$config['database']['username'] = 'forum';
$config['database']['password'] = 'it\'s a \\ secret';

/**
 * Admin CP directory
 */

$config['admin_dir'] = 'admin';
$config['hide_admin_links'] = 0;
$config['cache_store'] = 'db';
$config['memcache']['host'] = 'localhost';
$config['memcache']['port'] = 11211;
$config['super_admins'] = '1';
$config['database']['encoding'] = 'utf8mb4';
$config['log_pruning'] = array(
	'admin_logs' => 365, // Administrator logs
	'mod_logs' => 365, // Moderator logs
);
$config['disallowed_remote_hosts'] = array(
	'localhost',
);
/**
 * Admin CP Secret PIN
 */
$config['secret_pin'] = '';"#;

    #[test]
    fn reads_what_the_installer_writes() {
        let config = PhpConfig::parse(INSTALLED).unwrap();
        let s = |path: &[&str]| config.string(path);
        assert_eq!(s(&["database", "type"]).as_deref(), Some("mysqli"));
        assert_eq!(s(&["database", "table_prefix"]).as_deref(), Some("mybb_"));
        assert_eq!(
            s(&["database", "password"]).as_deref(),
            Some("it's a \\ secret")
        );
        assert_eq!(s(&["database", "encoding"]).as_deref(), Some("utf8mb4"));
        assert_eq!(config.get(&["memcache", "port"]), Some(&Value::Int(11211)));
        assert_eq!(
            config.get(&["log_pruning", "mod_logs"]),
            Some(&Value::Int(365))
        );
        assert_eq!(
            config.get(&["disallowed_remote_hosts", "0"]),
            Some(&Value::Str("localhost".to_owned()))
        );
        assert_eq!(config.get(&["database", "nothing"]), None);
    }

    #[test]
    fn an_assigned_array_is_indexed_into_and_later_assignments_win() {
        let text = "<?php\n$config['database'] = array('hostname' => 'a', 'port' => 1);\n\
                    $config['database']['hostname'] = \"b\\tc\";\n$config[\"x\"] = [1, 2, 'k' => true];";
        let config = PhpConfig::parse(text).unwrap();
        assert_eq!(
            config.string(&["database", "hostname"]).as_deref(),
            Some("b\tc")
        );
        assert_eq!(config.get(&["database", "port"]), Some(&Value::Int(1)));
        assert_eq!(config.get(&["x", "1"]), Some(&Value::Int(2)));
        assert_eq!(config.get(&["x", "k"]), Some(&Value::Bool(true)));
        assert_eq!(config.keys(&["x"]), ["0", "1", "k"]);
        let text = "<?php\n$config['m'] = [2 => 'x'];\n$config['m'][0]['host'] = 'a';\n$config['m'][2]['port'] = 1;";
        let config = PhpConfig::parse(text).unwrap();
        assert_eq!(config.keys(&["m"]), ["2", "0"]);
        assert!(config.keys(&["nothing"]).is_empty());
    }

    #[test]
    fn what_cannot_be_read_exactly_is_an_error_naming_the_line() {
        let line = |text: &str| PhpConfig::parse(text).unwrap_err().line;
        assert_eq!(line("<?php\n\n$config['a'] = PASSWORD;"), 3);
        assert_eq!(line("<?php\n$config['a'] = \"x$y\";"), 2);
        assert_eq!(line("<?php\ndefine('X', 1);"), 2);
        assert_eq!(line("<?php\n$config['a'] = 'never closed;\n"), 2);
        assert_eq!(line("<?php\n$config['a'] = 'x'\n$config['b'] = 'y';"), 3);
        assert_eq!(line("<?php\n/* open"), 2);
        assert_eq!(line("<?php\n$configs['a'] = 1;"), 2);
        assert!(PhpConfig::parse("<?php $config['a'] = 1; ?>\n").is_ok());
        assert_eq!(line("<?php $config['a'] = 1; ?>\nhello"), 1);
    }

    #[test]
    fn keys_are_normalised_as_php_does() {
        assert_eq!(ArrayKey::of("7"), ArrayKey::Int(7));
        assert_eq!(ArrayKey::of("-7"), ArrayKey::Int(-7));
        assert_eq!(ArrayKey::of("07"), ArrayKey::Str("07".to_owned()));
        assert_eq!(ArrayKey::of(""), ArrayKey::Str(String::new()));
        assert_eq!(ArrayKey::of("-0"), ArrayKey::Str("-0".to_owned()));
    }
}
