//! Instance records in SQLite: one row per instance (spec as JSON, status
//! columns, the identity of its process), its recent transitions and its
//! port allocation, kept in step by the triggers of migrations 0005–0006.
//! A batch of changes is one multi-row INSERT into the view
//! `instance_changes` per run of upserts.

use std::{sync::LazyLock, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use sqlx::{Row, SqliteConnection, sqlite::SqliteRow};

use super::{Store, StoreError, from_millis, millis, transaction};
use crate::orchestrator::{
    records::{InstanceRecords, Op, RecordsError, StoredInstance, Transition},
    status::{InstanceStatus, ProcessInfo},
};

/// A value as the JSON text stored in a column.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain values serialise")
}

/// A bare name (an enum stored as its serde name, without quotes).
fn name<T: Serialize>(value: &T) -> String {
    json(value).trim_matches('"').to_owned()
}

fn parse<T: DeserializeOwned>(column: &str, text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|err| format!("column {column}: {err}"))
}

fn parse_name<T: DeserializeOwned>(column: &str, text: &str) -> Result<T, String> {
    parse(column, &format!("\"{text}\""))
}

impl InstanceRecords for Store {
    async fn load(&self) -> Result<Vec<StoredInstance>, RecordsError> {
        let unusable = |cause: String| {
            RecordsError(
                StoreError::Unusable {
                    path: self.path.clone(),
                    cause,
                }
                .to_string(),
            )
        };
        let rows = sqlx::query("SELECT * FROM instances ORDER BY created_at")
            .fetch_all(&mut *self.connection().await)
            .await
            .map_err(|err| unusable(err.to_string()))?;
        rows.iter()
            .map(|row| instance(row).map_err(&unusable))
            .collect()
    }

    async fn apply(&self, ops: &[Op], boot_id: &str) -> Result<(), RecordsError> {
        match self.try_apply(ops, boot_id).await {
            Ok(()) => {
                self.health.wrote();
                Ok(())
            }
            Err(err) => {
                let cause = StoreError::Write {
                    path: self.path.clone(),
                    cause: err.to_string(),
                }
                .to_string();
                self.health.failed(&cause);
                Err(RecordsError(cause))
            }
        }
    }
}

impl Store {
    /// Writes `ops` in one transaction (or one statement).
    async fn try_apply(&self, ops: &[Op], boot_id: &str) -> Result<(), sqlx::Error> {
        let statements = statements(ops);
        let mut connection = self.connection().await;
        if let [only] = statements.as_slice() {
            // One statement commits by itself: no BEGIN and COMMIT calls.
            return execute(&mut connection, only, boot_id).await;
        }
        transaction(
            &mut connection,
            |err| err,
            async |tx| {
                for ops in &statements {
                    execute(tx, ops, boot_id).await?;
                }
                Ok(())
            },
        )
        .await
    }
}

/// Most changes written by one statement: 26 parameters each, well under
/// SQLite's limit, and one cached statement per count up to it.
const CHANGES_PER_STATEMENT: usize = 16;

/// The columns of the `instance_changes` view (migration 0006), in order.
const CHANGE_COLUMNS: &str = "id, name, project_path, kind, spec, workspace, state, reason, \
    state_changed_at, pid, pgid, start_ticks, boot_id, started_at, port, restart_count, \
    failures, breaker, retry_delay_ms, next_attempt_at, last_error, last_exit, created_at, \
    event_at, event_reason, event_detail";

/// `INSERT INTO instance_changes` of 1 up to [`CHANGES_PER_STATEMENT`]
/// rows, by count less one.
static CHANGE_STATEMENTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let columns = CHANGE_COLUMNS.split(',').count();
    let row = format!("({})", vec!["?"; columns].join(", "));
    (1..=CHANGES_PER_STATEMENT)
        .map(|rows| {
            format!(
                "INSERT INTO instance_changes ({CHANGE_COLUMNS}) VALUES {}",
                vec![row.as_str(); rows].join(", ")
            )
        })
        .collect()
});

/// Splits a batch into the ops of each statement, in order: each delete
/// alone, runs of upserts up to [`CHANGES_PER_STATEMENT`] together.
fn statements(ops: &[Op]) -> Vec<&[Op]> {
    let mut statements = Vec::new();
    let mut start = 0;
    while start < ops.len() {
        let upserts = ops[start..]
            .iter()
            .take(CHANGES_PER_STATEMENT)
            .take_while(|op| matches!(op, Op::Upsert { .. }))
            .count();
        let end = start + upserts.max(1);
        statements.push(&ops[start..end]);
        start = end;
    }
    statements
}

/// Writes `ops` (one delete, or upserts) in one statement. Upserts of the
/// same instance are written in order, so its row ends with the newest.
async fn execute(
    connection: &mut SqliteConnection,
    ops: &[Op],
    boot_id: &str,
) -> Result<(), sqlx::Error> {
    if let [Op::Delete { id }] = ops {
        sqlx::query("DELETE FROM instances WHERE id = ?")
            .bind(id)
            .execute(connection)
            .await?;
        return Ok(());
    }
    let mut query = sqlx::query(CHANGE_STATEMENTS[ops.len() - 1].as_str());
    for op in ops {
        let Op::Upsert { status, transition } = op else {
            unreachable!("a statement of upserts holds only upserts");
        };
        query = bind_change(query, status, transition.as_ref(), boot_id);
    }
    query.execute(connection).await?;
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds one row of the `instance_changes` view: the instance's row and,
/// with a transition, its event.
fn bind_change<'q>(
    query: Query<'q>,
    status: &'q InstanceStatus,
    transition: Option<&'q Transition>,
    boot_id: &'q str,
) -> Query<'q> {
    let process = status.process;
    query
        .bind(&status.id)
        .bind(&status.spec.name)
        .bind(
            status
                .spec
                .project_path
                .as_ref()
                .map(|p| p.display().to_string()),
        )
        .bind(name(&status.kind))
        .bind(json(&*status.spec))
        .bind(&status.workspace)
        .bind(name(&status.state))
        .bind(name(&status.reason))
        .bind(millis(status.state_changed_at))
        .bind(process.map(|p| p.pid as i64))
        .bind(process.map(|p| p.pgid as i64))
        .bind(process.map(|p| p.start_ticks as i64))
        .bind(process.map(|_| boot_id))
        .bind(process.map(|p| millis(p.started_at)))
        .bind(status.port.map(i64::from))
        .bind(status.restart_count as i64)
        .bind(status.backoff.consecutive_failures as i64)
        .bind(name(&status.backoff.breaker))
        .bind(status.backoff.current_delay.as_millis() as i64)
        .bind(status.backoff.next_attempt_at.map(millis))
        .bind(&status.last_error)
        .bind(status.last_exit.as_ref().map(json))
        .bind(millis(status.created_at))
        .bind(transition.map(|t| millis(t.at)))
        .bind(transition.map(|t| name(&t.reason)))
        .bind(transition.map(|t| t.detail.as_str()))
}

/// Rebuilds a stored instance from its row.
fn instance(row: &SqliteRow) -> Result<StoredInstance, String> {
    let text = |column: &str| -> String { row.get(column) };
    let optional = |column: &str| -> Option<i64> { row.get(column) };
    let spec = parse("spec", &text("spec"))?;
    let id = text("id");
    let mut status = InstanceStatus::new(
        id,
        spec,
        parse_name("kind", &text("kind"))?,
        parse_name("state", &text("state"))?,
        optional("port").and_then(|port| u16::try_from(port).ok()),
    );
    status.reason = parse_name("reason", &text("reason"))?;
    status.state_changed_at = from_millis(row.get("state_changed_at"));
    status.workspace = row.get("workspace");
    status.process = match (
        optional("pid"),
        optional("pgid"),
        optional("start_ticks"),
        optional("started_at"),
    ) {
        (Some(pid), Some(pgid), Some(start_ticks), Some(started_at)) => Some(ProcessInfo {
            pid: pid as u32,
            pgid: pgid as u32,
            start_ticks: start_ticks as u64,
            started_at: from_millis(started_at),
        }),
        _ => None,
    };
    status.restart_count = row.get::<i64, _>("restart_count") as u32;
    status.backoff.consecutive_failures = row.get::<i64, _>("failures") as u32;
    status.backoff.breaker = parse_name("breaker", &text("breaker"))?;
    status.backoff.current_delay =
        Duration::from_millis(row.get::<i64, _>("retry_delay_ms").max(0) as u64);
    status.backoff.next_attempt_at = optional("next_attempt_at").map(from_millis);
    status.last_error = row.get("last_error");
    status.last_exit = row
        .get::<Option<String>, _>("last_exit")
        .map(|exit| parse("last_exit", &exit))
        .transpose()?;
    status.created_at = from_millis(row.get("created_at"));
    Ok(StoredInstance {
        status,
        boot_id: row.get("boot_id"),
    })
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Instant, SystemTime},
    };

    use outpost::spec::{InstanceSpec, SpecInput};

    use super::*;
    use crate::{
        orchestrator::{
            status::{InstanceKind, InstanceState, Reason},
            writer::RecordWriter,
        },
        store::FILE_NAME,
    };

    fn status(id: &str, state: InstanceState, port: Option<u16>) -> Box<InstanceStatus> {
        let spec = InstanceSpec::validate(SpecInput {
            name: format!("name-{id}"),
            command: "sleep".to_owned(),
            ..SpecInput::default()
        })
        .unwrap();
        Box::new(InstanceStatus::new(
            id.to_owned(),
            spec,
            InstanceKind::Managed,
            state,
            port,
        ))
    }

    fn upsert(id: &str, state: InstanceState, port: Option<u16>) -> Op {
        Op::Upsert {
            status: status(id, state, port),
            transition: Some(Transition {
                at: SystemTime::now(),
                reason: Reason::UserStart,
                detail: String::new(),
            }),
        }
    }

    /// A new store in a temporary directory (kept while the store is used).
    async fn open_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(FILE_NAME)).await.unwrap();
        (dir, store)
    }

    /// The one number `sql` selects.
    async fn count(store: &Store, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut *store.connection().await)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn transitions_accumulate_up_to_the_bound() {
        let (_dir, store) = open_store().await;
        for _ in 0..5 {
            store
                .apply(&[upsert("a", InstanceState::Running, None)], "boot")
                .await
                .unwrap();
        }
        let events = "SELECT count(*) FROM instance_events WHERE instance_id = 'a'";
        assert_eq!(
            count(&store, events).await,
            5,
            "an update keeps the history"
        );
        let batch: Vec<Op> = (0..300)
            .map(|_| upsert("a", InstanceState::Stopped, None))
            .collect();
        store.apply(&batch, "boot").await.unwrap();
        assert_eq!(count(&store, events).await, 200);
        let state = "SELECT count(*) FROM instances WHERE id = 'a' AND state = 'stopped'";
        assert_eq!(count(&store, state).await, 1);
    }

    #[tokio::test]
    async fn a_batch_writes_each_instance_with_its_newest_status() {
        let (_dir, store) = open_store().await;
        let batch = [
            upsert("a", InstanceState::Starting, Some(4100)),
            upsert("b", InstanceState::Starting, None),
            upsert("a", InstanceState::Running, Some(4100)),
            Op::Delete { id: "b".to_owned() },
            upsert("b", InstanceState::Stopped, Some(4101)),
        ];
        store.apply(&batch, "boot").await.unwrap();
        let running = "SELECT count(*) FROM instances WHERE id = 'a' AND state = 'running'";
        assert_eq!(count(&store, running).await, 1);
        let a_events = "SELECT count(*) FROM instance_events WHERE instance_id = 'a'";
        assert_eq!(count(&store, a_events).await, 2);
        let b_events = "SELECT count(*) FROM instance_events WHERE instance_id = 'b'";
        assert_eq!(
            count(&store, b_events).await,
            1,
            "the delete took b's first event"
        );
        let ports = "SELECT count(*) FROM port_allocations";
        assert_eq!(count(&store, ports).await, 2);
    }

    #[tokio::test]
    async fn port_allocations_follow_the_instance_port() {
        let (_dir, store) = open_store().await;
        let held = |port: u16| {
            format!(
                "SELECT count(*) FROM port_allocations WHERE port = {port} AND instance_id = 'a'"
            )
        };
        let all = "SELECT count(*) FROM port_allocations";
        let apply = |port| {
            let store = &store;
            async move {
                store
                    .apply(&[upsert("a", InstanceState::Running, port)], "boot")
                    .await
                    .unwrap();
            }
        };
        apply(Some(4100)).await;
        assert_eq!(count(&store, &held(4100)).await, 1);
        apply(Some(4100)).await;
        assert_eq!(count(&store, all).await, 1);
        apply(Some(4102)).await;
        assert_eq!(count(&store, &held(4102)).await, 1);
        assert_eq!(count(&store, all).await, 1);
        apply(None).await;
        assert_eq!(count(&store, all).await, 0);
        apply(Some(4103)).await;
        store
            .apply(&[Op::Delete { id: "a".to_owned() }], "boot")
            .await
            .unwrap();
        assert_eq!(count(&store, all).await, 0);
    }

    /// A writer over a new store (the directory is kept while it is used).
    async fn start_writer() -> (tempfile::TempDir, Arc<Store>, RecordWriter) {
        let (dir, store) = open_store().await;
        let store = Arc::new(store);
        let writer = RecordWriter::start(store.clone(), "boot".to_owned());
        (dir, store, writer)
    }

    #[tokio::test]
    async fn a_change_nobody_waits_for_is_written_all_the_same() {
        let (_dir, store, writer) = start_writer().await;
        writer.submit(upsert("a", InstanceState::Running, None));
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(&store, "SELECT count(*) FROM instances").await == 0 {
            assert!(
                Instant::now() < deadline,
                "a change never flushed was never written"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn a_flush_returns_once_everything_submitted_is_written() {
        let (_dir, store, writer) = start_writer().await;
        writer.submit(upsert("a", InstanceState::Stopping, None));
        writer.submit(upsert("a", InstanceState::Stopped, None));
        writer.submit(upsert("b", InstanceState::Running, None));
        writer.flush().await.unwrap();
        let stopped = "SELECT count(*) FROM instances WHERE id = 'a' AND state = 'stopped'";
        assert_eq!(count(&store, stopped).await, 1);
        assert_eq!(count(&store, "SELECT count(*) FROM instances").await, 2);
        assert_eq!(
            count(&store, "SELECT count(*) FROM instance_events").await,
            3
        );
    }
}
