//! Sync's own bookkeeping, kept apart from the content: for each entity
//! the base (what the file and the database last agreed on), and the open
//! conflicts. It lives in the daemon's state database whichever database
//! holds the content (a forum's is never written to for outpost's sake);
//! the engine never names that database either.

use std::{collections::HashMap, future::Future};

use super::{Conflict, ContentError, Key, Kind, reconcile::Base};

/// Where bases and conflicts are kept.
pub trait Ledger: Send + Sync + 'static {
    /// The base of every entity of a collection, by item name.
    fn bases(
        &self,
        kind: Kind,
        collection: &str,
    ) -> impl Future<Output = Result<HashMap<String, Base>, ContentError>> + Send;

    /// The base of one entity.
    fn base(&self, key: &Key) -> impl Future<Output = Result<Option<Base>, ContentError>> + Send;

    /// Records what both sides agreed on, all or none.
    fn set_bases(
        &self,
        bases: &[(Key, Base)],
    ) -> impl Future<Output = Result<(), ContentError>> + Send;

    /// Forgets the base of one entity.
    fn forget_base(&self, key: &Key) -> impl Future<Output = Result<(), ContentError>> + Send;

    /// The collections of `kind` that have a base.
    fn synced_collections(
        &self,
        kind: Kind,
    ) -> impl Future<Output = Result<Vec<String>, ContentError>> + Send;

    /// Records a conflict.
    fn add_conflict(
        &self,
        conflict: &Conflict,
    ) -> impl Future<Output = Result<(), ContentError>> + Send;

    /// Every open conflict, oldest first.
    fn conflicts(&self) -> impl Future<Output = Result<Vec<Conflict>, ContentError>> + Send;

    /// One open conflict.
    fn conflict(&self, id: &str) -> impl Future<Output = Result<Conflict, ContentError>> + Send;

    /// Forgets a resolved conflict.
    fn remove_conflict(&self, id: &str) -> impl Future<Output = Result<(), ContentError>> + Send;
}
