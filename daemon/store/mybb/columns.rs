//! What a forum's columns can hold, read from the live schema. Many
//! servers run without strict mode, where a write the column cannot hold
//! is silently truncated or has its characters turned into `?`: content
//! is checked against the column before it is written, and refused with
//! the reason instead.

/// One text column as the server defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// `table.column`, for messages.
    pub name: String,
    /// Its character set (`utf8mb3`, `utf8mb4`, …).
    pub charset: String,
    /// The most bytes it holds.
    pub max_bytes: u64,
    /// The most characters it holds, for `char`/`varchar` columns (a
    /// `TEXT` column's limit is in bytes only).
    pub max_chars: Option<u64>,
}

impl Column {
    /// Why `text` cannot be stored exactly in this column through a
    /// connection that is `narrow` (3-byte UTF-8), if it cannot.
    pub fn refuses(&self, text: &str, narrow: bool) -> Option<String> {
        let three_byte = matches!(self.charset.as_str(), "utf8" | "utf8mb3");
        let wide = text.char_indices().find(|(_, c)| c.len_utf8() == 4);
        if let Some((index, wide)) = wide.filter(|_| three_byte || narrow) {
            let line = text[..index].matches('\n').count() + 1;
            let through = if three_byte {
                format!("the {} column {}", self.charset, self.name)
            } else {
                "the forum's utf8 connection (its config.php encoding)".to_owned()
            };
            return Some(format!(
                "holds U+{:04X} on line {line}, a 4-byte character {through} cannot store; MySQL would turn it into '?' or refuse it",
                wide as u32
            ));
        }
        if text.len() as u64 > self.max_bytes {
            return Some(format!(
                "is {} bytes; the column {} holds at most {} (MySQL would cut it short)",
                text.len(),
                self.name,
                self.max_bytes
            ));
        }
        if let Some(max_chars) = self.max_chars {
            let chars = text.chars().count() as u64;
            if chars > max_chars {
                return Some(format!(
                    "is {chars} characters; the column {} holds at most {max_chars}",
                    self.name
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_column(charset: &str) -> Column {
        Column {
            name: "mybb_templates.template".to_owned(),
            charset: charset.to_owned(),
            max_bytes: 65_535,
            max_chars: None,
        }
    }

    #[test]
    fn four_byte_characters_need_utf8mb4_all_the_way() {
        let text = "<p>\nhello 😀</p>";
        let refused = text_column("utf8mb3").refuses(text, false).unwrap();
        assert!(refused.contains("U+1F600 on line 2"), "{refused}");
        assert!(refused.contains("utf8mb3 column mybb_templates.template"));
        assert!(text_column("utf8mb4").refuses(text, false).is_none());
        let narrow = text_column("utf8mb4").refuses(text, true).unwrap();
        assert!(narrow.contains("connection"), "{narrow}");
        // Other characters outside ASCII are fine in utf8mb3.
        assert!(text_column("utf8").refuses("é ü → ☃", false).is_none());
    }

    #[test]
    fn limits_are_in_bytes_and_for_varchar_in_characters() {
        let column = text_column("utf8mb4");
        assert!(column.refuses(&"a".repeat(65_535), false).is_none());
        assert!(column.refuses(&"é".repeat(32_768), false).is_some());
        let title = Column {
            name: "mybb_templates.title".to_owned(),
            charset: "utf8mb4".to_owned(),
            max_bytes: 480,
            max_chars: Some(120),
        };
        assert!(title.refuses(&"é".repeat(120), false).is_none());
        assert!(title.refuses(&"é".repeat(121), false).is_some());
    }
}
