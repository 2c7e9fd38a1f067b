-- Each process gets a role with only the grants its statements use (docs/adr/0011):
-- nimbus_api for the API instances, nimbus_worker for the workers; the role that runs
-- these migrations owns the schema and is no process's. The operator makes the login
-- roles (./stack does; docs/kubernetes.md) — either these names with a password, or
-- roles of its own granted membership in them. Made here, NOLOGIN, where they are
-- missing, so the schema migrates on any cluster (that needs CREATEROLE).
-- A migration that adds a table grants on it here too: a process's role sees no table
-- it was not given.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nimbus_api') THEN
    CREATE ROLE nimbus_api NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nimbus_worker') THEN
    CREATE ROLE nimbus_worker NOLOGIN;
  END IF;
END
$$;

-- Both read the schema's version (NIMBUS_MIGRATIONS=wait: ready once it is current).
GRANT SELECT ON schema_migrations TO nimbus_api, nimbus_worker;

-- The API: accounts, polls and votes, image records; it only ever adds to the outbox
-- (and reads back the id of what it added).
GRANT SELECT, INSERT, UPDATE ON users, sessions, refresh_tokens TO nimbus_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON polls, images TO nimbus_api;
GRANT SELECT, INSERT ON poll_options, ballots, ballot_choices TO nimbus_api;
GRANT SELECT ON image_variants TO nimbus_api;
GRANT INSERT, SELECT (message_id) ON outbox TO nimbus_api;  -- (the id comes back: RETURNING)
GRANT USAGE ON SEQUENCE outbox_id_seq TO nimbus_api;

-- The worker: the outbox relay (claim, mark sent, purge), image jobs and the sweeper
-- (which re-queues a stuck image through the outbox), and the tally reconciler, which
-- only counts. No account table, no vote written.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO nimbus_worker;
GRANT USAGE ON SEQUENCE outbox_id_seq TO nimbus_worker;
GRANT SELECT, UPDATE, DELETE ON images TO nimbus_worker;
GRANT SELECT, INSERT, UPDATE ON image_variants TO nimbus_worker;
GRANT SELECT ON polls, poll_options, ballots, ballot_choices TO nimbus_worker;
