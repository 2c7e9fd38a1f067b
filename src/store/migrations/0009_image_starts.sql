-- How many times a worker has started on the image without handing it back cleanly:
-- every counted attempt, and every start whose worker died outside the decode (which
-- costs no attempt, docs/adr/0010). Bounds the latter: an image whose workers keep
-- dying elsewhere fails after four times its attempts instead of retrying forever.
ALTER TABLE images ADD COLUMN starts integer NOT NULL DEFAULT 0;

GRANT UPDATE (starts) ON images TO nimbus_worker;
