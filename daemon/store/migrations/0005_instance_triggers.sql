-- The per-instance event history is bounded inside the database, so that
-- recording a transition is one statement: each insert drops that
-- instance's events beyond the newest 200.
CREATE TRIGGER instance_events_bounded AFTER INSERT ON instance_events
BEGIN
    DELETE FROM instance_events
    WHERE instance_id = NEW.instance_id
      AND seq <= (SELECT seq FROM instance_events
                  WHERE instance_id = NEW.instance_id
                  ORDER BY seq DESC LIMIT 1 OFFSET 200);
END;

-- Port allocations follow instances.port: written when an instance is
-- inserted or its port changes, never on other updates.
CREATE TRIGGER instance_port_inserted AFTER INSERT ON instances
WHEN NEW.port IS NOT NULL
BEGIN
    INSERT INTO port_allocations (port, instance_id) VALUES (NEW.port, NEW.id);
END;

CREATE TRIGGER instance_port_changed AFTER UPDATE OF port ON instances
WHEN OLD.port IS NOT NEW.port
BEGIN
    DELETE FROM port_allocations WHERE instance_id = NEW.id;
    INSERT INTO port_allocations (port, instance_id)
    SELECT NEW.port, NEW.id WHERE NEW.port IS NOT NULL;
END;
