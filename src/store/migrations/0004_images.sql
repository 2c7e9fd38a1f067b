-- Uploaded images and their variants. The original lives in S3 under
-- originals/<id>; variants under variants/<id>/<name>. A row is the truth about what
-- exists: it is written in the same transaction as the job that makes the variants.
CREATE TABLE images (
    id            uuid PRIMARY KEY,
    owner_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status        text NOT NULL CHECK (status IN ('uploading', 'queued', 'processing', 'ready', 'failed')),
    content_type  text NOT NULL,
    bytes         bigint NOT NULL CHECK (bytes >= 0),
    width         integer,
    height        integer,
    sha256        text,
    error         text,
    attempts      integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX images_owner ON images (owner_id, created_at DESC, id DESC);
-- The sweeper looks for images stuck before `ready`.
CREATE INDEX images_pending ON images (updated_at) WHERE status IN ('uploading', 'queued', 'processing');

CREATE TABLE image_variants (
    image_id     uuid NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    name         text NOT NULL,
    width        integer NOT NULL,
    height       integer NOT NULL,
    content_type text NOT NULL,
    bytes        bigint NOT NULL,
    PRIMARY KEY (image_id, name)
);
