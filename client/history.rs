//! History commands: `history` lists the versions of a template, a
//! stylesheet or a workspace, `history show REV …` prints one, `restore`
//! brings a template or stylesheet back to one (`workspace rollback` is
//! with the workspace commands).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use outpost::{endpoint::Connection, proto::v1 as pb};

use crate::{
    failure::Failure,
    output::{self, outln},
    workspaces::workspace_name,
};

/// What has a history.
#[derive(Debug, Clone, Subcommand)]
pub enum Subject {
    /// A template: SET TITLE
    Template { set: String, title: String },
    /// A stylesheet: THEME NAME
    Stylesheet { theme: String, name: String },
    /// A workspace: NAME
    Workspace {
        #[arg(value_parser = workspace_name)]
        name: String,
    },
}

impl Subject {
    fn message(self) -> pb::HistorySubject {
        use pb::history_subject::Subject as Named;
        pb::HistorySubject {
            subject: Some(match self {
                Self::Template { set, title } => Named::Template(pb::TemplateKey { set, title }),
                Self::Stylesheet { theme, name } => {
                    Named::Stylesheet(pb::StylesheetKey { theme, name })
                }
                Self::Workspace { name } => Named::Workspace(name),
            }),
        }
    }
}

/// `outpostctl history …`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    command: HistoryCommand,
}

#[derive(Debug, Subcommand)]
enum HistoryCommand {
    /// One version's content (to stdout): history show REV template SET TITLE
    Show {
        /// A commit: an id (or its first digits) from the listing, or main~N
        rev: String,
        #[command(subcommand)]
        subject: Subject,
    },
    #[command(flatten)]
    List(ListSubject),
}

/// The listing's subject, with `--limit`.
#[derive(Debug, Subcommand)]
enum ListSubject {
    /// Versions of a template, newest first: history template SET TITLE
    Template {
        set: String,
        title: String,
        #[command(flatten)]
        limit: Limit,
    },
    /// Versions of a stylesheet, newest first: history stylesheet THEME NAME
    Stylesheet {
        theme: String,
        name: String,
        #[command(flatten)]
        limit: Limit,
    },
    /// Versions of a workspace file, newest first: history workspace NAME
    Workspace {
        #[arg(value_parser = workspace_name)]
        name: String,
        #[command(flatten)]
        limit: Limit,
    },
}

#[derive(Debug, Args)]
struct Limit {
    /// At most this many versions (at most 10000)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
}

impl ListSubject {
    fn split(self) -> (Subject, u32) {
        match self {
            Self::Template { set, title, limit } => (Subject::Template { set, title }, limit.limit),
            Self::Stylesheet { theme, name, limit } => {
                (Subject::Stylesheet { theme, name }, limit.limit)
            }
            Self::Workspace { name, limit } => (Subject::Workspace { name }, limit.limit),
        }
    }
}

/// `outpostctl restore template SET TITLE --to REV` (and stylesheets).
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(subcommand)]
    what: RestoreSubject,
}

#[derive(Debug, Subcommand)]
enum RestoreSubject {
    /// Bring a template back to a version: restore template SET TITLE --to REV
    Template {
        set: String,
        title: String,
        #[command(flatten)]
        to: RestoreTo,
    },
    /// Bring a stylesheet back to a version: restore stylesheet THEME NAME --to REV
    Stylesheet {
        theme: String,
        name: String,
        #[command(flatten)]
        to: RestoreTo,
    },
}

#[derive(Debug, Args)]
struct RestoreTo {
    /// The commit whose version to restore (from `outpostctl history`)
    #[arg(long = "to", value_name = "REV")]
    rev: String,
    /// Only restore if the item is at this version now (0: only if deleted)
    #[arg(long)]
    expect_version: Option<u64>,
}

/// One version as a listing row: revision, time, source, who, summary.
fn row(version: &pb::HistoryVersion) -> [String; 5] {
    let when = version
        .committed_at
        .as_ref()
        .map(|at| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.seconds.max(0) as u64),
            )
            .to_string()
        })
        .unwrap_or_default();
    let source = output::word(
        version.source,
        pb::HistorySource::as_str_name,
        "HISTORY_SOURCE_",
    )
    .map(|word| word.replace('_', "-"))
    .unwrap_or_else(|| "unspecified".into());
    let mut summary = version.summary.clone();
    if version.deleted {
        summary.push_str(" [deleted]");
    }
    [
        version.rev.chars().take(12).collect(),
        when,
        source,
        version.actor.clone(),
        summary,
    ]
}

pub async fn run(
    connection: &Connection,
    json: bool,
    args: HistoryArgs,
) -> Result<ExitCode, Failure> {
    let mut client = connection.history();
    match args.command {
        HistoryCommand::List(list) => {
            let (subject, limit) = list.split();
            let response = client
                .list_history(pb::ListHistoryRequest {
                    subject: Some(subject.message()),
                    limit,
                })
                .await?
                .into_inner();
            if json {
                return output::done(output::json(&response));
            }
            let mut rows = vec![["REV", "COMMITTED", "SOURCE", "BY", "SUMMARY"].map(str::to_owned)];
            rows.extend(response.versions.iter().map(row));
            output::done(output::table(&rows))
        }
        HistoryCommand::Show { rev, subject } => {
            let response = client
                .get_history_version(pb::GetHistoryVersionRequest {
                    subject: Some(subject.message()),
                    rev,
                })
                .await?
                .into_inner();
            if json {
                return output::done(output::json(&response));
            }
            output::done(std::io::Write::write_all(
                &mut std::io::stdout().lock(),
                response.content.as_bytes(),
            ))
        }
    }
}

pub async fn restore(
    connection: &Connection,
    json: bool,
    args: RestoreArgs,
) -> Result<ExitCode, Failure> {
    use pb::content_key::Key;
    let (key, to, shown) = match args.what {
        RestoreSubject::Template { set, title, to } => {
            let shown = format!("template {set}/{title}");
            (Key::Template(pb::TemplateKey { set, title }), to, shown)
        }
        RestoreSubject::Stylesheet { theme, name, to } => {
            let shown = format!("stylesheet {theme}/{name}");
            (
                Key::Stylesheet(pb::StylesheetKey { theme, name }),
                to,
                shown,
            )
        }
    };
    let response = connection
        .history()
        .restore_content(pb::RestoreContentRequest {
            key: Some(pb::ContentKey { key: Some(key) }),
            rev: to.rev,
            expected_version: to.expect_version,
        })
        .await?
        .into_inner();
    if json {
        return output::done(output::json(&response));
    }
    let restored = response.restored.unwrap_or_default();
    outln!(
        "{shown}: restored to {} ({}), version {}",
        restored.rev.chars().take(12).collect::<String>(),
        restored.summary,
        response.version
    );
    Ok(ExitCode::SUCCESS)
}
