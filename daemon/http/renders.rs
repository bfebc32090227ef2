//! Each bus event rendered to JSON once, whatever the number of SSE streams
//! that send it: with a hundred pages open, rendering per stream cost the
//! daemon most of a core at 1,000 events/s (docs/benchmarks.md). An
//! event's JSON depends on nothing but the event (a stream's filter only
//! decides whether it is sent), and a revision names one event of its bus
//! for the daemon's lifetime, so the text is kept by bus and revision for
//! the most recent events.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

/// Events whose text is kept: streams that are this far behind render
/// for themselves (they are about to get a RESYNC anyway).
const KEPT: usize = 4096;

/// Which bus a revision belongs to (each counts on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Bus {
    Status,
    Sync,
}

/// The recent events' JSON, shared by every SSE stream.
#[derive(Default)]
pub(crate) struct Renders {
    /// A lock rather than a task: a lookup is a hash probe, held for
    /// nanoseconds, where asking a task would cost each stream two thread
    /// hops per event — more than the rendering it saves.
    recent: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    texts: HashMap<(Bus, u64), Arc<str>>,
    order: VecDeque<(Bus, u64)>,
}

impl Renders {
    /// The JSON of `revision` on `bus`: the kept text, or `render`'s, kept
    /// for the streams that follow.
    pub(crate) fn json(
        &self,
        bus: Bus,
        revision: u64,
        render: impl FnOnce() -> Result<Arc<str>, String>,
    ) -> Result<Arc<str>, String> {
        let key = (bus, revision);
        if let Some(text) = self.lock().texts.get(&key) {
            return Ok(text.clone());
        }
        // Rendered outside the lock: two streams may both render an event
        // the first time; the text is the same.
        let text = render()?;
        let mut recent = self.lock();
        if recent.texts.insert(key, text.clone()).is_none() {
            recent.order.push_back(key);
            if recent.order.len() > KEPT
                && let Some(oldest) = recent.order.pop_front()
            {
                recent.texts.remove(&oldest);
            }
        }
        Ok(text)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_rendered_once_and_old_ones_are_let_go() {
        let renders = Renders::default();
        let mut rendered = 0;
        for _ in 0..3 {
            let text = renders.json(Bus::Status, 7, || {
                rendered += 1;
                Ok("{\"revision\":\"7\"}".into())
            });
            assert_eq!(text.unwrap().as_ref(), "{\"revision\":\"7\"}");
        }
        assert_eq!(rendered, 1);
        let other_bus = renders.json(Bus::Sync, 7, || Ok("sync".into()));
        assert_eq!(other_bus.unwrap().as_ref(), "sync", "buses count apart");

        for revision in 100..100 + KEPT as u64 {
            renders
                .json(Bus::Status, revision, || Ok("".into()))
                .unwrap();
        }
        assert_eq!(renders.lock().texts.len(), KEPT);
        let again = renders.json(Bus::Status, 7, || Ok("re-rendered".into()));
        assert_eq!(again.unwrap().as_ref(), "re-rendered");
    }
}
