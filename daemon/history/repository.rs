//! The history repository: a bare git repository written in process with
//! gix (no `git` binary, no C library). One branch, `main`, with a linear
//! history: each commit edits its parent's tree. Every call blocks (file
//! I/O): the writer runs on its own thread, readers in `spawn_blocking`.
//!
//! Crash safety is git's own: objects are written to a temporary file and
//! renamed into place, and the branch moves last, by a lock file renamed
//! over it, so a process killed at any point leaves either the old branch
//! or the new one, and at worst unreferenced objects (which `git fsck`
//! reports as dangling, not as errors). A lock file left by a killed
//! writer is removed when the repository is opened: only the daemon that
//! holds the data directory's lock ever writes here.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
};

use gix::{
    ObjectId,
    bstr::ByteSlice,
    objs::{Kind, tree::EntryKind},
    refs::{Target, transaction::PreviousValue},
};

use super::{
    Batch,
    message::{self, Parsed},
};

/// The one branch.
pub const BRANCH: &str = "refs/heads/main";
/// Who commits (the author is the change's actor).
const COMMITTER: &str = "outpostd";
const EMAIL: &str = "outpostd@localhost";

/// What went wrong in the repository, in words.
#[derive(Debug, thiserror::Error)]
#[error("history repository {dir}: {reason}")]
pub struct RepoError {
    pub dir: PathBuf,
    pub reason: String,
}

/// A commit as the index keeps it.
#[derive(Clone, Debug)]
pub struct CommitRecord {
    pub rev: ObjectId,
    /// Seconds since the epoch.
    pub time: i64,
    pub parsed: Parsed,
    /// Each path changed, with its new blob and size (None: deleted).
    pub changes: Vec<(String, Option<(ObjectId, u64)>)>,
}

/// The open repository.
pub struct Repository {
    repo: gix::Repository,
    dir: PathBuf,
    /// The sizes of the blobs the last `commit_all` wrote, so that
    /// indexing its commits need not open each blob again to learn them.
    written: RefCell<HashMap<ObjectId, u64>>,
}

impl Repository {
    /// Opens the bare repository at `dir`, creating it if missing.
    pub fn open(dir: &Path) -> Result<Self, RepoError> {
        let fail = |reason: String| RepoError {
            dir: dir.to_owned(),
            reason,
        };
        let repo = if dir.join("HEAD").exists() {
            remove_stale_locks(dir)
                .map_err(|err| fail(format!("cannot remove a stale lock: {err}")))?;
            gix::open(dir).map_err(|err| fail(format!("cannot open: {err}")))?
        } else {
            let repo = gix::init_bare(dir).map_err(|err| fail(format!("cannot create: {err}")))?;
            // gix points HEAD at `main` already; say so for older gits too.
            fs::write(dir.join("HEAD"), format!("ref: {BRANCH}\n"))
                .map_err(|err| fail(format!("cannot write HEAD: {err}")))?;
            repo
        };
        let mut repo = repo;
        repo.object_cache_size_if_unset(4 << 20);
        Ok(Self {
            repo,
            dir: dir.to_owned(),
            written: RefCell::default(),
        })
    }

    /// Opens the repository for reading (no lock is touched).
    pub fn open_existing(dir: &Path) -> Result<Self, RepoError> {
        let repo = gix::open(dir).map_err(|err| RepoError {
            dir: dir.to_owned(),
            reason: format!("cannot open: {err}"),
        })?;
        Ok(Self {
            repo,
            dir: dir.to_owned(),
            written: RefCell::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// gix's repository, for pruning.
    pub(super) fn git(&self) -> &gix::Repository {
        &self.repo
    }

    /// The branch's commits, newest first, with their commit times.
    pub fn chain(&self) -> Result<Vec<(ObjectId, i64)>, RepoError> {
        let mut chain = Vec::new();
        let mut next = self.head()?;
        while let Some(id) = next {
            let commit = self
                .repo
                .find_commit(id)
                .map_err(|err| self.fail(&format!("cannot read commit {id}"), err))?;
            let time = commit
                .time()
                .map_err(|err| self.fail(&format!("cannot read commit {id}"), err))?;
            chain.push((id, time.seconds));
            next = commit.parent_ids().next().map(|id| id.detach());
        }
        Ok(chain)
    }

    fn fail(&self, what: &str, err: impl std::fmt::Display) -> RepoError {
        RepoError {
            dir: self.dir.clone(),
            reason: format!("{what}: {err}"),
        }
    }

    /// The branch's commit; None before the first.
    pub fn head(&self) -> Result<Option<ObjectId>, RepoError> {
        let reference = self
            .repo
            .try_find_reference(BRANCH)
            .map_err(|err| self.fail("cannot read the branch", err))?;
        reference
            .map(|mut reference| {
                reference
                    .peel_to_id()
                    .map(|id| id.detach())
                    .map_err(|err| self.fail("cannot read the branch", err))
            })
            .transpose()
    }

    fn tree_of(&self, commit: Option<ObjectId>) -> Result<ObjectId, RepoError> {
        match commit {
            None => Ok(ObjectId::empty_tree(self.repo.object_hash())),
            Some(commit) => self
                .repo
                .find_commit(commit)
                .and_then(|commit| commit.tree_id())
                .map(|id| id.detach())
                .map_err(|err| self.fail(&format!("cannot read commit {commit}"), err)),
        }
    }

    /// Commits each batch, in order, one commit each, then makes them
    /// durable together (one `syncfs`) and moves the branch once: a writer
    /// that fell behind catches up in one step, and a crash leaves the
    /// branch where it was or at the last of them. A batch that changes
    /// nothing makes no commit; one that cannot be committed is logged and
    /// skipped. Returns how many commits were made.
    pub fn commit_all(&self, batches: &[Batch]) -> Result<usize, RepoError> {
        self.written.borrow_mut().clear();
        let head = self.head()?;
        let (mut parent, mut tree) = (head, self.tree_of(head)?);
        let mut made = 0;
        for batch in batches {
            match self.commit_object(batch, parent, tree) {
                Ok(Some((commit, next_tree))) => {
                    (parent, tree) = (Some(commit), next_tree);
                    made += 1;
                }
                Ok(None) => {}
                Err(err) => tracing::error!(
                    %err,
                    source = %batch.origin.source,
                    changes = batch.changes.len(),
                    "history: a change was not kept"
                ),
            }
        }
        let Some(tip) = parent.filter(|_| made > 0) else {
            return Ok(0);
        };
        let objects = fs::File::open(self.dir.join("objects"))
            .map_err(|err| self.fail("cannot open the objects", err))?;
        nix::unistd::syncfs(objects)
            .map_err(|err| self.fail("cannot make the objects durable", err))?;
        let expected = match head {
            Some(head) => PreviousValue::MustExistAndMatch(Target::Object(head)),
            None => PreviousValue::MustNotExist,
        };
        self.repo
            .reference(BRANCH, tip, expected, format!("outpostd: {made} commits"))
            .map_err(|err| self.fail("cannot move the branch", err))?;
        Ok(made)
    }

    /// Writes the commit of `batch` on `parent` (whose tree is
    /// `parent_tree`) without moving the branch: its id and its tree, or
    /// None when it changes nothing.
    fn commit_object(
        &self,
        batch: &Batch,
        parent: Option<ObjectId>,
        parent_tree_id: ObjectId,
    ) -> Result<Option<(ObjectId, ObjectId)>, RepoError> {
        let parent_tree = self
            .repo
            .find_tree(parent_tree_id)
            .map_err(|err| self.fail("cannot read the last tree", err))?;
        let mut editor = parent_tree
            .edit()
            .map_err(|err| self.fail("cannot read the last tree", err))?;
        // What each path holds: as the batch left it, else as the parent.
        let mut holds: HashMap<&str, Option<ObjectId>> = HashMap::new();
        let mut changed: Vec<&str> = Vec::new();
        for change in &batch.changes {
            let path = change.path.as_str();
            let current = match holds.get(path) {
                Some(current) => *current,
                None => parent_tree
                    .lookup_entry_by_path(path)
                    .map_err(|err| self.fail(&format!("cannot look up {path}"), err))?
                    .filter(|entry| !entry.mode().is_tree())
                    .map(|entry| entry.object_id()),
            };
            let next = match &change.content {
                Some(content) => Some(
                    gix::objs::compute_hash(
                        self.repo.object_hash(),
                        Kind::Blob,
                        content.as_bytes(),
                    )
                    .map_err(|err| self.fail("cannot hash", err))?,
                ),
                None => None,
            };
            if current == next {
                continue;
            }
            match (&change.content, next) {
                (Some(content), Some(id)) => {
                    self.repo
                        .write_blob(content.as_bytes())
                        .map_err(|err| self.fail("cannot write a blob", err))?;
                    self.written.borrow_mut().insert(id, content.len() as u64);
                    editor
                        .upsert(path, EntryKind::Blob, id)
                        .map_err(|err| self.fail(&format!("cannot place {path}"), err))?;
                }
                _ => {
                    editor
                        .remove(path)
                        .map_err(|err| self.fail(&format!("cannot remove {path}"), err))?;
                }
            }
            if holds.insert(path, next).is_none() {
                changed.push(path);
            }
        }
        if changed.is_empty() {
            return Ok(None);
        }
        let tree = editor
            .write()
            .map_err(|err| self.fail("cannot write a tree", err))?
            .detach();
        // Changed and changed back within the batch.
        if tree == parent_tree_id {
            return Ok(None);
        }
        let what = match changed.as_slice() {
            [one] => {
                super::Subject::of_path(one).map_or_else(|| (*one).to_owned(), |s| s.to_string())
            }
            many => format!("{} files", many.len()),
        };
        let origin = &batch.origin;
        let text = message::render(
            origin.source,
            &origin.actor,
            origin.note.as_deref(),
            &what,
            &changed,
        );
        let time = gix::date::Time::now_local_or_utc();
        let author = signature(&origin.actor, time);
        let committer = signature(COMMITTER, time);
        let (mut author_time, mut committer_time) = Default::default();
        let commit = self
            .repo
            .new_commit_as(
                committer.to_ref(&mut committer_time),
                author.to_ref(&mut author_time),
                text,
                tree,
                parent,
            )
            .map_err(|err| self.fail("cannot commit", err))?;
        Ok(Some((commit.id, tree)))
    }

    /// Every commit after `known` up to the branch, oldest first. None when
    /// `known` is not on the branch (the history was rewritten): then the
    /// caller reads it all again with `known` None.
    pub fn commits_since(
        &self,
        known: Option<ObjectId>,
    ) -> Result<Option<Vec<CommitRecord>>, RepoError> {
        let mut next = self.head()?;
        let mut newest_first = Vec::new();
        while let Some(id) = next {
            if Some(id) == known {
                break;
            }
            let commit = self
                .repo
                .find_commit(id)
                .map_err(|err| self.fail(&format!("cannot read commit {id}"), err))?;
            let parent = commit.parent_ids().next().map(|id| id.detach());
            let time = commit
                .time()
                .map_err(|err| self.fail(&format!("cannot read commit {id}"), err))?
                .seconds;
            let parsed = message::parse(&commit.message_raw_sloppy().to_str_lossy());
            let mut changes = Vec::new();
            self.diff(
                Some(self.tree_of(parent)?),
                Some(self.tree_of(Some(id))?),
                "",
                &mut changes,
            )?;
            newest_first.push(CommitRecord {
                rev: id,
                time,
                parsed,
                changes,
            });
            next = parent;
        }
        if next.is_none() && known.is_some() {
            return Ok(None);
        }
        newest_first.reverse();
        Ok(Some(newest_first))
    }

    /// The blob paths that differ between two trees, with their new blob.
    fn diff(
        &self,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        prefix: &str,
        out: &mut Vec<(String, Option<(ObjectId, u64)>)>,
    ) -> Result<(), RepoError> {
        if old == new {
            return Ok(());
        }
        let old = self.entries(old)?;
        let new = self.entries(new)?;
        let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for name in names {
            let path = format!("{prefix}{name}");
            let (before, after) = (old.get(name), new.get(name));
            if before == after {
                continue;
            }
            let tree = |side: Option<&(bool, ObjectId)>| {
                side.and_then(|(is_tree, id)| is_tree.then_some(*id))
            };
            let blob = |side: Option<&(bool, ObjectId)>| {
                side.and_then(|(is_tree, id)| (!is_tree).then_some(*id))
            };
            if tree(before).is_some() || tree(after).is_some() {
                self.diff(tree(before), tree(after), &format!("{path}/"), out)?;
            }
            match (blob(before), blob(after)) {
                (_, Some(id)) => out.push((path, Some((id, self.size(id)?)))),
                (Some(_), None) => out.push((path, None)),
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// A tree's entries by name: whether each is a tree, and its id.
    fn entries(
        &self,
        tree: Option<ObjectId>,
    ) -> Result<BTreeMap<String, (bool, ObjectId)>, RepoError> {
        let Some(id) = tree else {
            return Ok(BTreeMap::new());
        };
        let tree = self
            .repo
            .find_tree(id)
            .map_err(|err| self.fail(&format!("cannot read tree {id}"), err))?;
        let decoded = tree
            .decode()
            .map_err(|err| self.fail(&format!("cannot read tree {id}"), err))?;
        Ok(decoded
            .entries
            .iter()
            .map(|entry| {
                (
                    entry.filename.to_str_lossy().into_owned(),
                    (entry.mode.is_tree(), entry.oid.to_owned()),
                )
            })
            .collect())
    }

    fn size(&self, blob: ObjectId) -> Result<u64, RepoError> {
        if let Some(size) = self.written.borrow().get(&blob) {
            return Ok(*size);
        }
        self.repo
            .find_header(blob)
            .map(|header| header.size())
            .map_err(|err| self.fail(&format!("cannot read blob {blob}"), err))
    }

    /// The commit `rev` names: a full or abbreviated id, or anything git's
    /// revision syntax takes (`main~3`).
    pub fn resolve(&self, rev: &str) -> Result<Option<ObjectId>, RepoError> {
        let Ok(id) = self.repo.rev_parse_single(rev) else {
            return Ok(None);
        };
        let object = id
            .object()
            .map_err(|err| self.fail(&format!("cannot read {rev}"), err))?;
        Ok(match object.kind {
            Kind::Commit => Some(object.id),
            _ => None,
        })
    }

    /// A blob's content.
    pub fn read(&self, blob: ObjectId) -> Result<Vec<u8>, RepoError> {
        self.repo
            .find_blob(blob)
            .map(|blob| blob.detach().data)
            .map_err(|err| self.fail(&format!("cannot read blob {blob}"), err))
    }
}

fn signature(name: &str, time: gix::date::Time) -> gix::actor::Signature {
    // Git refuses these in a name.
    let name: String = name
        .chars()
        .map(|c| {
            if matches!(c, '<' | '>' | '\n' | '\r') {
                ' '
            } else {
                c
            }
        })
        .collect();
    gix::actor::Signature {
        name: name.trim().into(),
        email: EMAIL.into(),
        time,
    }
}

/// Removes lock files a killed writer left under `refs/`; without this
/// the branch could never move again.
fn remove_stale_locks(dir: &Path) -> std::io::Result<()> {
    let mut dirs = vec![dir.join("refs")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "lock") {
                tracing::warn!(lock = %path.display(), "removing a stale history lock");
                fs::remove_file(&path)?;
            }
        }
    }
    let packed = dir.join("packed-refs.lock");
    if packed.exists() {
        fs::remove_file(packed)?;
    }
    Ok(())
}
