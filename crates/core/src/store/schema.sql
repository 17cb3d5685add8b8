-- secretgen's store, schema version 4 (version 1 had no event hashes, version 2 no token
-- expiry, version 3 no token lineage and no indexes for the audit search; their writers
-- upgrade them). SQLite and PostgreSQL run this file unchanged:
-- TEXT and BIGINT columns only, times as microseconds since the Unix epoch (UTC), JSON as
-- text. Statements are separated by semicolons at the end of a line.

-- Facts about the store itself: the schema version, the default instance's id.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The append-only log of configuration changes. Rows are never updated or deleted.
CREATE TABLE IF NOT EXISTS events (
    instance_id    TEXT   NOT NULL,
    sequence       BIGINT NOT NULL,  -- 1, 2, 3, ... per instance, without gaps
    event_type     TEXT   NOT NULL,  -- instance.secret.generator.added / .changed
    generator_type TEXT   NOT NULL,  -- SECRET_GENERATOR_TYPE_...
    payload        TEXT   NOT NULL,  -- the configuration, as the API's JSON
    created_at     BIGINT NOT NULL,  -- microseconds since the Unix epoch
    creator        TEXT   NOT NULL,  -- the name of the token that made the change
    creator_id     TEXT   NOT NULL DEFAULT '',  -- its id; '' for the server and the command line
    hash           TEXT   NOT NULL,  -- hex SHA-256 over the previous event's hash and this row
    PRIMARY KEY (instance_id, sequence)
);

-- Access tokens: only the SHA-256 of each token is kept.
CREATE TABLE IF NOT EXISTS tokens (
    id          TEXT   PRIMARY KEY,
    name        TEXT   NOT NULL,
    hash        TEXT   NOT NULL UNIQUE,  -- lower-case hex SHA-256 of the token
    permissions TEXT   NOT NULL,         -- comma-separated, e.g. iam.read,iam.write
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,                  -- microseconds since the Unix epoch; NULL: never
    created_by  TEXT                     -- the id of the token that created it; NULL: none
);

-- The audit search's filters on time and on generator type read what they return, not the
-- log (the primary key serves the sequence). Over columns every version has, so that this
-- file runs on a store of an older version before its writer upgrades it; the indexes on the
-- creator's columns are CREATOR_INDEXES (src/store/mod.rs), made after the upgrade.
CREATE INDEX IF NOT EXISTS events_by_time ON events (instance_id, created_at);
CREATE INDEX IF NOT EXISTS events_by_type ON events (instance_id, generator_type, sequence);
