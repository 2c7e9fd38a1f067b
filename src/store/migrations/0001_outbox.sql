-- Transactional outbox: a message is written in the same transaction as the domain row
-- it belongs to; the relay (nimbus-worker) publishes it to RabbitMQ with confirms and
-- marks it sent. Consumers tolerate duplicates (at-least-once), keyed by message_id.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    message_id   uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    exchange     text        NOT NULL,
    routing_key  text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);

-- The relay scans only what is still to send.
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;

-- Wakes the relay at commit time (NOTIFY is delivered only if the transaction commits).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_notify();
