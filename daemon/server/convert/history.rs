//! Translation between the History service's messages and the history
//! domain: subjects from requests (checked like every other name), versions
//! into messages, history errors into statuses.

use tonic::Status;

use outpost::{proto::v1 as pb, workspace_file};

use super::{invalid, sync, timestamp};
use crate::{
    history::{HistoryError, Source, Subject, Version},
    sync::Key,
};

impl From<HistoryError> for Status {
    fn from(err: HistoryError) -> Self {
        let message = err.to_string();
        match err {
            HistoryError::Off => Status::failed_precondition(message),
            HistoryError::NotFound(_) => Status::not_found(message),
            HistoryError::Invalid { .. } => Status::invalid_argument(message),
            HistoryError::Failed(_) => Status::unavailable(message),
        }
    }
}

/// The subject a request names.
pub fn subject(subject: Option<pb::HistorySubject>) -> Result<Subject, Status> {
    use pb::history_subject::Subject as Named;
    match subject.and_then(|subject| subject.subject) {
        Some(Named::Template(key)) => Ok(Subject::Content(sync::template_key(Some(key))?)),
        Some(Named::Stylesheet(key)) => Ok(Subject::Content(sync::stylesheet_key(Some(key))?)),
        Some(Named::Workspace(name)) => {
            workspace_name("subject.workspace", &name)?;
            Ok(Subject::Workspace(name))
        }
        None => Err(invalid(
            "subject",
            "is required: a template, a stylesheet or a workspace",
        )),
    }
}

/// A template's or stylesheet's key from a `RestoreContent` request.
pub fn content_key(key: Option<pb::ContentKey>) -> Result<Key, Status> {
    use pb::content_key::Key as Named;
    match key.and_then(|key| key.key) {
        Some(Named::Template(key)) => sync::template_key(Some(key)),
        Some(Named::Stylesheet(key)) => sync::stylesheet_key(Some(key)),
        None => Err(invalid("key", "is required: a template or a stylesheet")),
    }
}

/// A workspace name from a request.
pub fn workspace_name(field: &str, name: &str) -> Result<(), Status> {
    workspace_file::validate_workspace_name(field, name)
        .map_err(|err| invalid(&err.field, err.reason))
}

fn source(source: Option<Source>) -> pb::HistorySource {
    match source {
        None => pb::HistorySource::Unspecified,
        Some(Source::FileSave) => pb::HistorySource::FileSave,
        Some(Source::Api) => pb::HistorySource::Api,
        Some(Source::Database) => pb::HistorySource::Database,
        Some(Source::ConflictResolution) => pb::HistorySource::ConflictResolution,
        Some(Source::Export) => pb::HistorySource::Export,
        Some(Source::Rescan) => pb::HistorySource::Rescan,
        Some(Source::Restore) => pb::HistorySource::Restore,
        Some(Source::WorkspaceApply) => pb::HistorySource::WorkspaceApply,
        Some(Source::WorkspaceRollback) => pb::HistorySource::WorkspaceRollback,
    }
}

pub fn version(version: Version) -> pb::HistoryVersion {
    pb::HistoryVersion {
        rev: version.rev,
        committed_at: Some(timestamp(version.committed_at)),
        source: source(version.source).into(),
        actor: version.actor,
        summary: version.summary,
        path: version.path,
        deleted: version.blob.is_none(),
        size: version.size,
    }
}
