//! The content store the daemon was started with: its own SQLite database,
//! or a MyBB forum's. One type for both, so that sync and its front ends
//! are built once and stay unaware of which it is.

use std::sync::Arc;

use tokio::sync::watch;

use super::{Store, mybb::MybbStore};
use crate::sync::{
    Backend, Collection, ContentError, ContentStore, Item, Key, Kind, Trim, Written,
    layout::TemplateGroups,
};

/// Either content store.
pub enum ContentBackend {
    /// The daemon's own SQLite database.
    Native(Arc<Store>),
    /// A forum's database.
    Mybb(Arc<MybbStore>),
}

impl ContentStore for ContentBackend {
    fn template_groups(&self) -> watch::Receiver<TemplateGroups> {
        match self {
            Self::Native(store) => store.template_groups(),
            Self::Mybb(store) => store.template_groups(),
        }
    }

    fn trim(&self, kind: Kind) -> Trim {
        match self {
            Self::Native(store) => store.trim(kind),
            Self::Mybb(store) => store.trim(kind),
        }
    }

    fn backend(&self) -> Backend {
        match self {
            Self::Native(store) => store.backend(),
            Self::Mybb(store) => store.backend(),
        }
    }

    async fn collections(&self, kind: Kind) -> Result<Vec<Collection>, ContentError> {
        match self {
            Self::Native(store) => store.collections(kind).await,
            Self::Mybb(store) => store.collections(kind).await,
        }
    }

    async fn items(
        &self,
        kind: Kind,
        collection: &str,
        with_content: bool,
    ) -> Result<Vec<Item>, ContentError> {
        match self {
            Self::Native(store) => store.items(kind, collection, with_content).await,
            Self::Mybb(store) => store.items(kind, collection, with_content).await,
        }
    }

    async fn get(&self, key: &Key) -> Result<Item, ContentError> {
        match self {
            Self::Native(store) => store.get(key).await,
            Self::Mybb(store) => store.get(key).await,
        }
    }

    async fn put(
        &self,
        key: &Key,
        content: &str,
        expected: Option<u64>,
    ) -> Result<Written, ContentError> {
        match self {
            Self::Native(store) => store.put(key, content, expected).await,
            Self::Mybb(store) => store.put(key, content, expected).await,
        }
    }

    async fn delete(&self, key: &Key, expected: Option<u64>) -> Result<u64, ContentError> {
        match self {
            Self::Native(store) => store.delete(key, expected).await,
            Self::Mybb(store) => store.delete(key, expected).await,
        }
    }
}
