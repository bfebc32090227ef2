//! A commit's message: a summary line a person reads in `git log`, the
//! paths it changed, and trailers (`Outpost-Source`, `Outpost-Actor`) the
//! index reads back — so the index is derived from the repository alone
//! and can always be rebuilt from it.

use std::fmt;

/// Trailer naming what made the change.
const SOURCE: &str = "Outpost-Source";
/// Trailer naming who made it.
const ACTOR: &str = "Outpost-Actor";
/// At most this many paths are listed in a message body.
const LISTED_PATHS: usize = 50;

/// What made a change take effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A file saved under the sync root, imported into the database.
    FileSave,
    /// A write through the gRPC or HTTP API.
    Api,
    /// An edit in the database itself (a forum's admin panel), written to
    /// the file.
    Database,
    /// A conflict resolved.
    ConflictResolution,
    /// A collection exported to files.
    Export,
    /// A rescan of the sync root.
    Rescan,
    /// A content version brought back (`outpostctl restore`).
    Restore,
    /// A workspace file applied (saved, or applied on request).
    WorkspaceApply,
    /// A workspace file taken back to an earlier version.
    WorkspaceRollback,
}

impl Source {
    pub const ALL: [Self; 9] = [
        Self::FileSave,
        Self::Api,
        Self::Database,
        Self::ConflictResolution,
        Self::Export,
        Self::Rescan,
        Self::Restore,
        Self::WorkspaceApply,
        Self::WorkspaceRollback,
    ];

    /// The trailer's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FileSave => "file-save",
            Self::Api => "api",
            Self::Database => "database",
            Self::ConflictResolution => "conflict-resolution",
            Self::Export => "export",
            Self::Rescan => "rescan",
            Self::Restore => "restore",
            Self::WorkspaceApply => "workspace-apply",
            Self::WorkspaceRollback => "workspace-rollback",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|source| source.as_str() == text)
    }

    /// How the summary line says it.
    fn phrase(self) -> &'static str {
        match self {
            Self::FileSave => "file save",
            Self::Api => "API write",
            Self::Database => "database edit",
            Self::ConflictResolution => "conflict resolution",
            Self::Export => "export",
            Self::Rescan => "rescan",
            Self::Restore => "restore",
            Self::WorkspaceApply => "workspace apply",
            Self::WorkspaceRollback => "workspace rollback",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the index keeps of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub summary: String,
    /// None for a commit outpost did not make.
    pub source: Option<Source>,
    pub actor: String,
}

/// The message of a commit by `source` and `actor` changing `paths`
/// (what changed, as "template Default/header", when it is one thing).
pub fn render(
    source: Source,
    actor: &str,
    note: Option<&str>,
    what: &str,
    paths: &[&str],
) -> String {
    let mut message = format!("{}: {what}", source.phrase());
    if let Some(note) = note {
        message.push_str(&format!(" ({note})"));
    }
    message.push_str("\n\n");
    if paths.len() > 1 {
        for path in paths.iter().take(LISTED_PATHS) {
            message.push_str(&format!("{path}\n"));
        }
        if paths.len() > LISTED_PATHS {
            message.push_str(&format!("… and {} more\n", paths.len() - LISTED_PATHS));
        }
        message.push('\n');
    }
    // A trailer is one line: a line break in the actor would end it.
    let actor = actor.replace(['\n', '\r'], " ");
    message.push_str(&format!("{SOURCE}: {source}\n{ACTOR}: {actor}\n"));
    message
}

/// Reads a message back; trailers are looked for in its last paragraph.
pub fn parse(message: &str) -> Parsed {
    let summary = message.lines().next().unwrap_or_default().trim().to_owned();
    let last = message.trim_end().rsplit("\n\n").next().unwrap_or_default();
    let trailer = |name: &str| {
        last.lines().find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name).then(|| value.trim().to_owned())
        })
    };
    Parsed {
        summary,
        source: trailer(SOURCE).and_then(|value| Source::parse(&value)),
        actor: trailer(ACTOR).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_back() {
        let message = render(
            Source::FileSave,
            "uid 1000",
            None,
            "template Default/header",
            &["templates/Default/header/header.html"],
        );
        assert_eq!(
            message,
            "file save: template Default/header\n\nOutpost-Source: file-save\nOutpost-Actor: uid 1000\n"
        );
        assert_eq!(
            parse(&message),
            Parsed {
                summary: "file save: template Default/header".into(),
                source: Some(Source::FileSave),
                actor: "uid 1000".into(),
            }
        );
    }

    #[test]
    fn a_burst_lists_its_paths_up_to_a_limit() {
        let paths: Vec<String> = (0..60).map(|i| format!("stylesheets/t/{i}.css")).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        let message = render(
            Source::Export,
            "outpostd",
            Some("theme t"),
            "60 items",
            &paths,
        );
        assert!(message.starts_with("export: 60 items (theme t)\n\nstylesheets/t/0.css\n"));
        assert!(message.contains("stylesheets/t/49.css\n… and 10 more\n\n"));
        assert!(!message.contains("stylesheets/t/50.css"));
        assert_eq!(parse(&message).source, Some(Source::Export));
    }

    #[test]
    fn every_source_survives_the_round_trip() {
        for source in Source::ALL {
            let parsed = parse(&render(source, "a\nb", None, "x", &[]));
            assert_eq!(parsed.source, Some(source));
            assert_eq!(parsed.actor, "a b");
        }
    }

    #[test]
    fn a_commit_made_by_hand_has_no_source() {
        let parsed = parse("fix the header by hand\n");
        assert_eq!(parsed.summary, "fix the header by hand");
        assert_eq!(parsed.source, None);
        assert_eq!(parsed.actor, "");
    }
}
