//! The registry: which instances exist, found by id, name or project path,
//! and the ports they hold. It is one plain structure behind one lock; each
//! instance's state lives in its actor and on the status board, not here.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use tokio::sync::mpsc;

use outpost::spec::looks_like_id;

use super::{actor::Command, error::OrchestratorError, ports::PortPool};

/// How the rest of the daemon talks to one actor.
#[derive(Clone, Debug)]
pub struct InstanceHandle {
    /// The instance's id.
    pub id: String,
    /// Its command channel.
    pub commands: mpsc::Sender<Command>,
}

/// Instances by id, name and project path, and the port pool.
pub struct Registry {
    handles: HashMap<String, InstanceHandle>,
    names: HashMap<String, String>,
    projects: HashMap<PathBuf, String>,
    pub ports: PortPool,
    max_instances: u32,
}

/// A fresh random id (uniqueness is checked against the registry).
fn random_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let salt = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("i-{:016x}", RandomState::new().hash_one(salt))
}

impl Registry {
    /// An empty registry.
    pub fn new(ports: PortPool, max_instances: u32) -> Self {
        Self {
            handles: HashMap::new(),
            names: HashMap::new(),
            projects: HashMap::new(),
            ports,
            max_instances,
        }
    }

    /// Finds an instance by id or name.
    pub fn resolve(&self, key: &str) -> Result<&InstanceHandle, OrchestratorError> {
        let id = if looks_like_id(key) {
            key
        } else {
            self.names.get(key).map(String::as_str).unwrap_or(key)
        };
        self.handles.get(id).ok_or_else(|| {
            OrchestratorError::NoSuchInstance(format!("no instance has the id or name {key:?}"))
        })
    }

    /// Finds the instance of a project path.
    pub fn by_project(&self, path: &Path) -> Option<&InstanceHandle> {
        self.projects.get(path).and_then(|id| self.handles.get(id))
    }

    /// Checks that an instance with `name` and `project` may be added, and
    /// returns a new unique id for it.
    pub fn admit(
        &self,
        name: &str,
        project: Option<&PathBuf>,
    ) -> Result<String, OrchestratorError> {
        if let Some(id) = self.names.get(name) {
            return Err(OrchestratorError::Taken(format!(
                "an instance named {name:?} already exists ({id})"
            )));
        }
        if let Some(id) = project.and_then(|path| self.projects.get(path)) {
            return Err(OrchestratorError::Taken(format!(
                "project {} already has an instance ({id})",
                project.expect("found").display()
            )));
        }
        if self.handles.len() >= self.max_instances as usize {
            return Err(OrchestratorError::LimitReached(format!(
                "the daemon holds its maximum of {} instances (--max-instances)",
                self.max_instances
            )));
        }
        loop {
            let id = random_id();
            if !self.handles.contains_key(&id) {
                return Ok(id);
            }
        }
    }

    /// Adds an admitted instance.
    pub fn insert(&mut self, handle: InstanceHandle, name: String, project: Option<PathBuf>) {
        self.names.insert(name, handle.id.clone());
        if let Some(project) = project {
            self.projects.insert(project, handle.id.clone());
        }
        self.handles.insert(handle.id.clone(), handle);
    }

    /// Removes an instance and releases its port.
    pub fn remove(&mut self, id: &str, name: &str, project: Option<&PathBuf>, port: Option<u16>) {
        self.handles.remove(id);
        self.names.remove(name);
        if let Some(project) = project {
            self.projects.remove(project);
        }
        if let Some(port) = port {
            self.ports.release(port);
        }
    }

    /// Every handle.
    pub fn handles(&self) -> impl Iterator<Item = &InstanceHandle> {
        self.handles.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_own_shape() {
        let id = random_id();
        assert!(looks_like_id(&id), "{id}");
        assert_ne!(random_id(), random_id());
        assert!(!looks_like_id("web"));
        assert!(!looks_like_id("i-0123456789ABCDEF"));
    }
}
