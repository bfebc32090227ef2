//! PHP values as MyBB stores them in its serialized columns (`themes.
//! properties` and `stylesheets`, `datacache.cache`): read as MyBB's
//! `my_unserialize()` reads them and written as its `my_serialize()` writes
//! them, byte for byte.
//!
//! Not a general PHP `serialize()` crate, on purpose: MyBB has its own
//! reader and writer, and they differ from PHP's. The reader accepts only
//! `N`, `b`, `i`, `d`, `s` and `a` with its own patterns (`i:` saturates
//! like PHP's `(int)`, `d:` takes no `INF`/`NAN`, a duplicate key
//! overwrites, trailing `"0"` is let through because PHP's `empty("0")`);
//! the writer prints a float as PHP's string cast does (14 significant
//! digits, `d:0.1;`, `d:1.0E+25;`), not as `serialize()` does. And the
//! arrays are PHP's: ordered, with a string key that reads as a canonical
//! integer stored as that integer (`"5"` → `i:5;`, `"05"` stays a string).

use std::cmp::Ordering;
use std::fmt::Write as _;

/// A PHP array key: PHP stores an integer-like string as the integer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Int(i64),
    Str(Vec<u8>),
}

impl Key {
    /// The key PHP makes of `bytes` (`$a["5"]` is `$a[5]`, `$a["05"]`,
    /// `$a["-0"]` and `$a["+5"]` are strings).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Key {
        let bytes = bytes.into();
        match canonical_int(&bytes) {
            Some(n) => Key::Int(n),
            None => Key::Str(bytes),
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Key {
        Key::new(s.as_bytes())
    }
}

impl From<i64> for Key {
    fn from(n: i64) -> Key {
        Key::Int(n)
    }
}

/// `bytes` as an integer if PHP treats it as one in an array key (and in
/// comparisons): an optional `-`, no leading zero (but `"0"`), in range.
pub(crate) fn canonical_int(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    if digits.is_empty()
        || digits.len() > 20
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits[0] == b'0' && (digits.len() > 1 || digits.len() < bytes.len()))
    {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// A PHP value of the kinds MyBB serializes.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Vec<u8>),
    Array(Array),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(s.as_bytes().to_vec())
    }
}

/// A PHP array: keys in insertion order; writing an existing key keeps
/// its place.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Array {
    entries: Vec<(Key, Value)>,
    /// The key `$a[] = …` takes (PHP's `nNextFreeElement`), once an
    /// integer key has been used.
    next_index: Option<i64>,
}

impl Array {
    pub fn new() -> Array {
        Array::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Key, Value)> {
        self.entries.iter()
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `$a[$key] = $value`.
    pub fn insert(&mut self, key: Key, value: Value) {
        if let Key::Int(n) = key
            && self.next_index.is_none_or(|next| n >= next)
        {
            self.next_index = Some(n.saturating_add(1));
        }
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.entries.push((key, value)),
        }
    }

    /// `$a[] = $value`.
    pub fn push(&mut self, value: Value) {
        self.insert(Key::Int(self.next_index.unwrap_or(0)), value);
    }

    /// `$a[$key]` as an array to write into, made if missing or null, as
    /// PHP's `$a[$key][…] = …` does; `None` where PHP would stop with an
    /// error (a scalar there).
    pub fn array_at(&mut self, key: Key) -> Option<&mut Array> {
        let at = match self.entries.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                self.insert(key, Value::Null);
                self.entries.len() - 1
            }
        };
        let slot = &mut self.entries[at].1;
        if *slot == Value::Null {
            *slot = Value::Array(Array::new());
        }
        match slot {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl FromIterator<(Key, Value)> for Array {
    fn from_iter<I: IntoIterator<Item = (Key, Value)>>(iter: I) -> Array {
        let mut a = Array::new();
        for (k, v) in iter {
            a.insert(k, v);
        }
        a
    }
}

/// Why `my_unserialize()` would return `false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a value MyBB's my_unserialize() reads (stopped at byte {at})")]
pub struct ParseError {
    pub at: usize,
}

/// One token of the input, as `_safe_unserialize()` matches them.
enum Token<'a> {
    Close,
    Scalar(Value),
    Str(&'a [u8]),
    Open(i64),
}

/// Leading ASCII digits of `s` (the `[0-9]+` of MyBB's patterns).
fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// PHP's `(int)` of a string of digits with an optional `-`: saturating.
fn php_int(s: &[u8]) -> i64 {
    let negative = s.first() == Some(&b'-');
    let mut n: i64 = 0;
    for &d in &s[negative as usize..] {
        let d = i64::from(d - b'0');
        n = match n.checked_mul(10).and_then(|n| {
            if negative {
                n.checked_sub(d)
            } else {
                n.checked_add(d)
            }
        }) {
            Some(n) => n,
            None => return if negative { i64::MIN } else { i64::MAX },
        };
    }
    n
}

/// The next token and what follows it, or `None` where MyBB gives up.
fn token(s: &[u8]) -> Option<(Token<'_>, &[u8])> {
    match s.first()? {
        b'}' => Some((Token::Close, &s[1..])),
        b'N' => (s.get(1) == Some(&b';')).then(|| (Token::Scalar(Value::Null), &s[2..])),
        b'b' => match s.get(..4)? {
            b"b:0;" => Some((Token::Scalar(Value::Bool(false)), &s[4..])),
            b"b:1;" => Some((Token::Scalar(Value::Bool(true)), &s[4..])),
            _ => None,
        },
        b'i' => {
            let body = s.strip_prefix(b"i:")?;
            let sign = (body.first() == Some(&b'-')) as usize;
            let end = sign + digits(&body[sign..]);
            (end > sign && body.get(end) == Some(&b';')).then(|| {
                (
                    Token::Scalar(Value::Int(php_int(&body[..end]))),
                    &body[end + 1..],
                )
            })
        }
        b'd' => {
            // -?[0-9]+\.?[0-9]*(E[+-][0-9]+)?;
            let body = s.strip_prefix(b"d:")?;
            let mut end = (body.first() == Some(&b'-')) as usize;
            let int = digits(&body[end..]);
            if int == 0 {
                return None;
            }
            end += int;
            if body.get(end) == Some(&b'.') {
                end += 1;
            }
            end += digits(&body[end..]);
            if body.get(end) == Some(&b'E')
                && matches!(body.get(end + 1), Some(b'+' | b'-'))
                && digits(&body[end + 2..]) > 0
            {
                end += 2 + digits(&body[end + 2..]);
            }
            if body.get(end) != Some(&b';') {
                return None;
            }
            let number: f64 = std::str::from_utf8(&body[..end]).ok()?.parse().ok()?;
            Some((Token::Scalar(Value::Float(number)), &body[end + 1..]))
        }
        b's' => {
            let body = s.strip_prefix(b"s:")?;
            let n = digits(body);
            if n == 0 || body.get(n..n + 2)? != b":\"" {
                return None;
            }
            let len = usize::try_from(php_int(&body[..n])).ok()?;
            let rest = &body[n + 2..];
            (rest.get(len..len.checked_add(2)?)? == b"\";")
                .then(|| (Token::Str(&rest[..len]), &rest[len + 2..]))
        }
        b'a' => {
            let body = s.strip_prefix(b"a:")?;
            let n = digits(body);
            if n == 0 || body.get(n..n + 2)? != b":{" {
                return None;
            }
            Some((Token::Open(php_int(&body[..n])), &body[n + 2..]))
        }
        _ => None,
    }
}

/// Reads `input` as MyBB's `my_unserialize()` does (without its optional
/// size limits, which MyBB's theme code does not ask for); an error where
/// it returns `false`.
pub fn parse(input: &[u8]) -> Result<Value, ParseError> {
    if input.is_empty() || input == b"0" {
        return Err(ParseError { at: 0 });
    }
    // The open arrays, each with its declared length and the key it goes
    // under in its parent.
    let mut open: Vec<(Array, i64, Option<Key>)> = Vec::new();
    // Inside an array, the key read and waiting for its value.
    let mut key: Option<Key> = None;
    let mut s = input;
    let value = loop {
        let at = input.len() - s.len();
        let fail = ParseError { at };
        let (token, rest) = token(s).ok_or(fail)?;
        s = rest;
        let Some((list, expected, _)) = open.last_mut() else {
            match token {
                Token::Open(n) => open.push((Array::new(), n, None)),
                Token::Scalar(v) => break v,
                Token::Str(b) => break Value::Str(b.to_vec()),
                Token::Close => return Err(fail),
            }
            continue;
        };
        if let Some(k) = key.take() {
            match token {
                Token::Open(n) => open.push((Array::new(), n, Some(k))),
                Token::Scalar(v) => list.insert(k, v),
                Token::Str(b) => list.insert(k, Value::Str(b.to_vec())),
                Token::Close => return Err(fail),
            }
            continue;
        }
        let count = i64::try_from(list.len()).unwrap_or(i64::MAX);
        match token {
            Token::Close => {
                if count < *expected {
                    return Err(fail);
                }
                let (done, _, under) = open.pop().ok_or(fail)?;
                match (open.last_mut(), under) {
                    (Some((parent, _, _)), Some(k)) => parent.insert(k, Value::Array(done)),
                    _ => break Value::Array(done),
                }
            }
            Token::Scalar(Value::Int(n)) if count < *expected => key = Some(Key::Int(n)),
            Token::Str(b) if count < *expected => key = Some(Key::new(b)),
            _ => return Err(fail),
        }
    };
    if s.is_empty() || s == b"0" {
        Ok(value)
    } else {
        Err(ParseError {
            at: input.len() - s.len(),
        })
    }
}

/// `value` as MyBB's `my_serialize()` writes it.
pub fn serialize(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, value);
    out
}

fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"N;"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"b:1;" } else { b"b:0;" }),
        Value::Int(n) => out.extend_from_slice(format!("i:{n};").as_bytes()),
        Value::Float(f) => out.extend_from_slice(format!("d:{};", float_string(*f)).as_bytes()),
        Value::Str(s) => write_str(out, s),
        Value::Array(a) => {
            out.extend_from_slice(format!("a:{}:{{", a.len()).as_bytes());
            for (k, v) in a.iter() {
                match k {
                    Key::Int(n) => out.extend_from_slice(format!("i:{n};").as_bytes()),
                    Key::Str(s) => write_str(out, s),
                }
                write(out, v);
            }
            out.push(b'}');
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("s:{}:\"", s.len()).as_bytes());
    out.extend_from_slice(s);
    out.extend_from_slice(b"\";");
}

/// A float as PHP's string cast prints it (`precision` 14, the default):
/// 14 significant digits without trailing zeros, in exponent form
/// (`1.0E+25`, `1.5E-5`) below 1e-4 or from 1e14 on.
pub fn float_string(f: f64) -> String {
    if f.is_nan() {
        return "NAN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "INF" } else { "-INF" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{:.13e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let mut out = String::new();
    if f < 0.0 {
        out.push('-');
    }
    if !(-4..14).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "{first}.{rest}E{sign}{}", exp.abs());
    } else if exp < 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(digits);
    } else {
        let whole = exp as usize + 1;
        if digits.len() <= whole {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', whole - digits.len()));
        } else {
            let _ = write!(out, "{}.{}", &digits[..whole], &digits[whole..]);
        }
    }
    out
}

/// A number as PHP 8 compares it: an integer, a float, or a string that
/// is a canonical integer. Other strings compare by PHP's string rules,
/// which this module does not model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub fn of(value: &Value) -> Option<Number> {
        match value {
            Value::Int(n) => Some(Number::Int(*n)),
            Value::Float(f) => Some(Number::Float(*f)),
            Value::Str(s) => canonical_int(s).map(Number::Int),
            _ => None,
        }
    }

    /// PHP's `$n + 1` (an integer past the top becomes a float).
    pub fn plus_one(self) -> Number {
        match self {
            Number::Int(n) => n
                .checked_add(1)
                .map_or(Number::Float(n as f64 + 1.0), Number::Int),
            Number::Float(f) => Number::Float(f + 1.0),
        }
    }

    /// PHP 8's `<=>` on two numbers.
    pub fn compare(self, other: Number) -> Ordering {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a.cmp(&b),
            (a, b) => a
                .as_f64()
                .partial_cmp(&b.as_f64())
                .unwrap_or(Ordering::Equal),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Int(n) => n as f64,
            Number::Float(f) => f,
        }
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Value {
        match n {
            Number::Int(n) => Value::Int(n),
            Number::Float(f) => Value::Float(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &str) -> String {
        String::from_utf8(serialize(&parse(s.as_bytes()).unwrap())).unwrap()
    }

    #[test]
    fn scalars_read_and_write_back() {
        for s in [
            "N;",
            "b:0;",
            "b:1;",
            "i:5;",
            "i:-12;",
            "d:0.5;",
            "d:-1.0E+25;",
            "s:0:\"\";",
            "s:5:\"a\"b;c\";",
            "s:2:\"é\";",
            "a:0:{}",
        ] {
            assert_eq!(round_trip(s), s);
        }
    }

    #[test]
    fn nested_arrays_keep_order_and_key_kinds() {
        let s = "a:3:{s:9:\"disporder\";a:2:{s:10:\"global.css\";i:2;s:7:\"a.css\";i:1;}i:7;s:1:\"x\";s:2:\"05\";a:0:{}}";
        // The string key's length is wrong on purpose in one place below.
        assert!(parse(s.as_bytes()).is_err());
        let s = "a:3:{s:9:\"disporder\";a:2:{s:10:\"global.css\";i:2;s:5:\"a.css\";i:1;}i:7;s:1:\"x\";s:2:\"05\";a:0:{}}";
        assert_eq!(round_trip(s), s);
        let Value::Array(a) = parse(s.as_bytes()).unwrap() else {
            panic!("an array")
        };
        let keys: Vec<_> = a.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            keys,
            [
                Key::from("disporder"),
                Key::Int(7),
                Key::Str(b"05".to_vec())
            ]
        );
    }

    #[test]
    fn integer_like_string_keys_become_integers() {
        assert_eq!(round_trip("a:1:{s:1:\"5\";i:1;}"), "a:1:{i:5;i:1;}");
        assert_eq!(round_trip("a:1:{s:2:\"-3\";i:1;}"), "a:1:{i:-3;i:1;}");
        for kept in ["05", "-0", "+5", "5 ", "", "9223372036854775808"] {
            assert_eq!(
                Key::from(kept),
                Key::Str(kept.as_bytes().to_vec()),
                "{kept:?}"
            );
        }
        assert_eq!(Key::from("-9223372036854775808"), Key::Int(i64::MIN));
    }

    #[test]
    fn my_unserialize_quirks() {
        // (int) saturates, leading zeros go.
        assert_eq!(parse(b"i:99999999999999999999;"), Ok(Value::Int(i64::MAX)));
        assert_eq!(round_trip("i:007;"), "i:7;");
        // A trailing "0" passes PHP's empty(); nothing else does.
        assert_eq!(parse(b"i:1;0"), Ok(Value::Int(1)));
        assert!(parse(b"i:1;00").is_err());
        assert!(parse(b"i:1; ").is_err());
        // A duplicate key overwrites in place, so the count can still match.
        assert_eq!(
            round_trip("a:2:{i:0;i:1;i:0;i:2;i:1;i:3;}"),
            "a:2:{i:0;i:2;i:1;i:3;}"
        );
        assert!(parse(b"a:2:{i:0;i:1;i:0;i:2;}").is_err());
        for bad in [
            "",
            "0",
            "N",
            "b:2;",
            "i:+1;",
            "i:;",
            "d:INF;",
            "d:1e5;",
            "d:.5;",
            "s:1:\"ab\";",
            "s:3:\"ab\";",
            "a:1:{}",
            "a:0:{i:0;i:1;}",
            "a:1:{N;i:1;}",
            "a:1:{i:0;}",
            "}",
            "O:8:\"stdClass\":0:{}",
            "a:1:{i:0;a:0:{}",
            "i:1;i:2;",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(parse(b"d:1.E+5;"), Ok(Value::Float(100000.0)));
        assert_eq!(parse(b"d:1E-2;"), Ok(Value::Float(0.01)));
    }

    #[test]
    fn floats_print_like_php_string_casts() {
        for (f, s) in [
            (0.1, "0.1"),
            (0.1 + 0.2, "0.3"),
            (5.0, "5"),
            (-0.0, "-0"),
            (1e25, "1.0E+25"),
            (1.5e-5, "1.5E-5"),
            (1e14, "1.0E+14"),
            (12345678901234.0, "12345678901234"),
            (123456789012345.0, "1.2345678901234E+14"),
            (0.0001, "0.0001"),
            (1.0 / 3.0, "0.33333333333333"),
            (-1e100, "-1.0E+100"),
            (99999999999999.9, "1.0E+14"),
            (f64::INFINITY, "INF"),
            (9.223372036854776E18, "9.2233720368548E+18"),
        ] {
            assert_eq!(float_string(f), s, "{f:e}");
        }
    }

    #[test]
    fn arrays_append_after_the_highest_integer_key() {
        let mut a = Array::new();
        a.push(Value::Int(1));
        a.insert(Key::from("x"), Value::Null);
        a.push(Value::Int(2));
        a.insert(Key::Int(10), Value::Null);
        a.push(Value::Int(3));
        a.insert(Key::Int(0), Value::Int(9));
        assert_eq!(
            String::from_utf8(serialize(&Value::Array(a))).unwrap(),
            "a:5:{i:0;i:9;s:1:\"x\";N;i:1;i:2;i:10;N;i:11;i:3;}"
        );
    }

    #[test]
    fn numbers_compare_as_php_8() {
        let n = |v: Value| Number::of(&v).unwrap();
        assert_eq!(
            n(Value::str("10")).compare(n(Value::Int(9))),
            Ordering::Greater
        );
        assert_eq!(
            n(Value::str("3")).compare(n(Value::Float(3.0))),
            Ordering::Equal
        );
        assert_eq!(Number::of(&Value::str("3.0")), None);
        assert_eq!(
            Number::Int(i64::MAX).plus_one(),
            Number::Float(9.223372036854776E18)
        );
    }
}
