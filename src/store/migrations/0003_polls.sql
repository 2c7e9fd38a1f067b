-- Polls and ballots. Exactly one ballot per (poll, user) is the primary key of
-- `ballots`; the chosen options are child rows whose foreign key ties each option to
-- the ballot's own poll, so no ballot can name another poll's option.
CREATE TABLE polls (
    id                 uuid PRIMARY KEY,
    owner_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title              text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description        text CHECK (length(description) <= 2000),
    max_choices        integer NOT NULL CHECK (max_choices BETWEEN 1 AND 20),
    results_visibility text NOT NULL CHECK (results_visibility IN ('always', 'after_vote', 'after_close')),
    opens_at           timestamptz,
    closes_at          timestamptz,
    closed_at          timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (closes_at IS NULL OR opens_at IS NULL OR closes_at > opens_at)
);
CREATE INDEX polls_created ON polls (created_at DESC, id DESC);
CREATE INDEX polls_owner ON polls (owner_id, created_at DESC, id DESC);

CREATE TABLE poll_options (
    poll_id  uuid NOT NULL REFERENCES polls (id) ON DELETE CASCADE,
    id       uuid NOT NULL,
    position integer NOT NULL,
    text     text NOT NULL CHECK (length(text) BETWEEN 1 AND 200),
    PRIMARY KEY (poll_id, id),
    UNIQUE (poll_id, position)
);

CREATE TABLE ballots (
    poll_id    uuid NOT NULL REFERENCES polls (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    option_ids uuid[] NOT NULL,  -- the selection, sorted, to answer retries
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (poll_id, user_id)
);

CREATE TABLE ballot_choices (
    poll_id   uuid NOT NULL,
    user_id   uuid NOT NULL,
    option_id uuid NOT NULL,
    PRIMARY KEY (poll_id, user_id, option_id),
    FOREIGN KEY (poll_id, user_id) REFERENCES ballots (poll_id, user_id) ON DELETE CASCADE,
    FOREIGN KEY (poll_id, option_id) REFERENCES poll_options (poll_id, id) ON DELETE CASCADE
);
CREATE INDEX ballot_choices_option ON ballot_choices (poll_id, option_id);
