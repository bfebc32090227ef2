//! The bearer token that guards TCP listeners.
//!
//! A [`Token`] never shows its value: `Debug` prints a placeholder and there
//! is no `Display`, so it cannot leak into logs or configuration dumps.

use std::{fmt, io::Read, os::unix::fs::PermissionsExt, path::Path};

use subtle::ConstantTimeEq;
use thiserror::Error;

/// Environment variable that carries the token when no file is given.
pub const TOKEN_ENV: &str = "OUTPOST_TOKEN";

/// Shortest token accepted: anything shorter is guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// Largest token file read: a token is one line; anything much larger is
/// not a token file.
const MAX_TOKEN_FILE: u64 = 4096;

/// A validated bearer token.
#[derive(Clone)]
pub struct Token(String);

/// Why a token could not be loaded.
#[derive(Debug, Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The token file may be read by users other than its owner, who
    /// could then reach the daemon over TCP as its owner.
    #[error(
        "token file {path} may be read or written by group or others (mode {mode:04o}); make it private: chmod 600 {path}"
    )]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The token is too short.
    #[error("token is shorter than {MIN_TOKEN_LEN} characters")]
    TooShort,
    /// The token has characters that cannot travel in an HTTP header.
    #[error("token may only contain printable ASCII without spaces")]
    BadCharacters,
}

impl Token {
    /// Validates a token given as text (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::BadCharacters);
        }
        if text.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort);
        }
        Ok(Self(text.to_owned()))
    }

    /// Reads and validates a token from a file (a trailing newline is
    /// fine). Like ssh with a private key, a file that group or others may
    /// read is refused: the token is as good as the owner's login.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let unreadable = |source| TokenError::Unreadable {
            path: path.display().to_string(),
            source,
        };
        let (file, metadata) = crate::bounded_read::open_regular(path).map_err(unreadable)?;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Exposed {
                path: path.display().to_string(),
                mode,
            });
        }
        let mut text = String::new();
        file.take(MAX_TOKEN_FILE + 1)
            .read_to_string(&mut text)
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_TOKEN_FILE {
            return Err(unreadable(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("larger than {MAX_TOKEN_FILE} bytes"),
            )));
        }
        Self::parse(&text)
    }

    /// Reads the token from `--token-file` if given, else from
    /// `$OUTPOST_TOKEN`; `None` when neither is set (or the variable is empty).
    pub fn load(file: Option<&Path>) -> Result<Option<Self>, TokenError> {
        match (file, std::env::var(TOKEN_ENV)) {
            (Some(path), _) => Self::from_file(path).map(Some),
            (None, Ok(text)) if !text.trim().is_empty() => Self::parse(&text).map(Some),
            (None, _) => Ok(None),
        }
    }

    /// Compares an `authorization` header value with `Bearer <token>` in
    /// constant time.
    pub fn matches_header(&self, header: &[u8]) -> bool {
        let Some(presented) = header.strip_prefix(b"Bearer ") else {
            return false;
        };
        presented.ct_eq(self.0.as_bytes()).into()
    }

    /// The `authorization` header value a client sends.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let token = Token::parse("s3cret-s3cret-s3cret").unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn header_must_match_exactly() {
        let token = Token::parse("0123456789abcdef\n").unwrap();
        assert!(token.matches_header(b"Bearer 0123456789abcdef"));
        assert!(!token.matches_header(b"Bearer 0123456789abcdeX"));
        assert!(!token.matches_header(b"Bearer 0123456789abcde"));
        assert!(!token.matches_header(b"0123456789abcdef"));
        assert!(!token.matches_header(b"bearer 0123456789abcdef"));
    }

    #[test]
    fn rejects_short_and_unprintable_tokens() {
        assert!(matches!(Token::parse("short"), Err(TokenError::TooShort)));
        assert!(matches!(
            Token::parse("0123456789 abcdef"),
            Err(TokenError::BadCharacters)
        ));
    }
}
