-- A retried poll creation (its answer lost, or a 503 after the commit) carrying the
-- same Idempotency-Key returns the first poll instead of creating a second one. The
-- fingerprint of the request tells a retry from a different request reusing the key.
ALTER TABLE polls ADD COLUMN idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255);
ALTER TABLE polls ADD COLUMN request_fingerprint bytea;
CREATE UNIQUE INDEX polls_idempotency ON polls (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
