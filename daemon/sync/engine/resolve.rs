//! Resolving a conflict: keeping the disk side puts the conflict copy's
//! content in the database, over the version the conflict kept (a later
//! change in the database must be looked at first), and the file follows
//! through the reconciler; keeping the database side only drops the copy.
//! Either way the copy is removed and the conflict forgotten.

use std::{fs, io};

use super::{
    Resolved,
    worker::{Report, Worker, blocking, storage},
};
use crate::history::{Origin, Source};
use crate::sync::{
    ContentError, ContentStore,
    events::{EventKind, Notice},
    file::{self, Disk},
    ledger::Ledger,
};

impl<C: ContentStore, L: Ledger> Worker<C, L> {
    pub(super) async fn resolve(
        &self,
        id: &str,
        keep_disk: bool,
        report: &mut Report,
    ) -> Result<Resolved, ContentError> {
        let conflict = self.ledger.conflict(id).await?;
        let version = if keep_disk {
            let copy = conflict.copy_path.clone();
            let text = match blocking(move || file::read(&copy)).await {
                Disk::Content { text, .. } => text,
                Disk::Unreadable(reason) => {
                    return Err(storage(format!(
                        "the conflict copy {} {reason}",
                        conflict.copy_path.display()
                    )));
                }
                Disk::Missing => {
                    return Err(ContentError::Refused(format!(
                        "the conflict copy {} is gone; keep the database side instead",
                        conflict.copy_path.display()
                    )));
                }
                other => {
                    return Err(ContentError::Refused(format!(
                        "the conflict copy {} cannot be used: {other:?}",
                        conflict.copy_path.display()
                    )));
                }
            };
            let written = self
                .content
                .put(&conflict.key, &text, Some(conflict.db_version))
                .await?;
            report.history.push((
                Origin::daemon(Source::ConflictResolution),
                self.change(&conflict.key, Some(&written.item.content)),
            ));
            written.item.version
        } else {
            match self.content.get(&conflict.key).await {
                Ok(item) => item.version,
                Err(ContentError::NotFound(_)) => 0,
                Err(err) => return Err(err),
            }
        };
        match fs::remove_file(&conflict.copy_path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(storage(format!(
                    "cannot remove the conflict copy {}: {err}",
                    conflict.copy_path.display()
                )));
            }
            _ => {}
        }
        self.ledger.remove_conflict(id).await?;
        let side = if keep_disk { "disk" } else { "database" };
        self.board.publish(
            Notice::new(
                EventKind::ConflictResolved,
                format!("conflict {id} resolved: the {side} side kept"),
            )
            .key(&conflict.key)
            .path(&conflict.path)
            .version(version),
        );
        if keep_disk {
            Self::look_again_now(conflict.path, report);
        }
        Ok(Resolved {
            key: conflict.key,
            version,
        })
    }
}
