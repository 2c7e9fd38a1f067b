-- Accounts and sessions. A session is one sign-in (one device); its refresh tokens are
-- stored only as SHA-256 hashes and rotate on every use.
CREATE TABLE users (
    id         uuid PRIMARY KEY,
    email      text NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,  -- absolute lifetime
    revoked_at   timestamptz,
    revoke_reason text
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    hash       bytea PRIMARY KEY,  -- sha256 of the opaque token
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz       -- set when it was exchanged for a successor
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Outbox rows that carry a secret (sign-in codes) have their payload cleared once the
-- relay has published them.
ALTER TABLE outbox ADD COLUMN sensitive boolean NOT NULL DEFAULT false;
