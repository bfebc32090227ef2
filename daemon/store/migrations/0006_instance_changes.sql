-- Changes of instances go through this view: each row inserted into it
-- upserts its instance's row and, when it carries a transition (`event_at`
-- set), appends the event. So a batch of changes is one statement (one
-- call into SQLite, committed on its own), not a transaction of several.
CREATE VIEW instance_changes AS
SELECT
    id, name, project_path, kind, spec, workspace, state, reason,
    state_changed_at, pid, pgid, start_ticks, boot_id, started_at, port,
    restart_count, failures, breaker, retry_delay_ms, next_attempt_at,
    last_error, last_exit, created_at,
    NULL AS event_at, NULL AS event_reason, NULL AS event_detail
FROM instances WHERE 0;

-- An update keeps the row (and so its events, which INSERT OR REPLACE
-- would delete through the foreign key's cascade).
CREATE TRIGGER instance_changes_apply INSTEAD OF INSERT ON instance_changes
BEGIN
    INSERT INTO instances (
        id, name, project_path, kind, spec, workspace, state, reason,
        state_changed_at, pid, pgid, start_ticks, boot_id, started_at, port,
        restart_count, failures, breaker, retry_delay_ms, next_attempt_at,
        last_error, last_exit, created_at
    ) VALUES (
        NEW.id, NEW.name, NEW.project_path, NEW.kind, NEW.spec,
        NEW.workspace, NEW.state, NEW.reason, NEW.state_changed_at, NEW.pid,
        NEW.pgid, NEW.start_ticks, NEW.boot_id, NEW.started_at, NEW.port,
        NEW.restart_count, NEW.failures, NEW.breaker, NEW.retry_delay_ms,
        NEW.next_attempt_at, NEW.last_error, NEW.last_exit, NEW.created_at
    )
    ON CONFLICT (id) DO UPDATE SET
        name = excluded.name, project_path = excluded.project_path,
        kind = excluded.kind, spec = excluded.spec,
        workspace = excluded.workspace, state = excluded.state,
        reason = excluded.reason,
        state_changed_at = excluded.state_changed_at, pid = excluded.pid,
        pgid = excluded.pgid, start_ticks = excluded.start_ticks,
        boot_id = excluded.boot_id, started_at = excluded.started_at,
        port = excluded.port, restart_count = excluded.restart_count,
        failures = excluded.failures, breaker = excluded.breaker,
        retry_delay_ms = excluded.retry_delay_ms,
        next_attempt_at = excluded.next_attempt_at,
        last_error = excluded.last_error, last_exit = excluded.last_exit,
        created_at = excluded.created_at;
    INSERT INTO instance_events (instance_id, at, state, reason, detail)
    SELECT NEW.id, NEW.event_at, NEW.state, NEW.event_reason, NEW.event_detail
    WHERE NEW.event_at IS NOT NULL;
END;
