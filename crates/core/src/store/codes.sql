-- Issued codes (schema version 5, SPEC section 12): made with the tables of a new store and
-- by the upgrade from version 4. Neither a code nor a subject is stored in clear: a code is
-- its HMAC-SHA256 under a key named by its id, a subject its HMAC; the keys are never here.

-- One row per subject and type: its failures, its lock and its recent issues.
CREATE TABLE IF NOT EXISTS verify_subjects (
    id             TEXT   PRIMARY KEY,  -- random; names the subject in verify_codes
    instance_id    TEXT   NOT NULL,
    generator_type TEXT   NOT NULL,
    subject_mac    TEXT   NOT NULL,     -- hex HMAC of (instance, type, subject) under key_id
    key_id         TEXT   NOT NULL,
    failures       BIGINT NOT NULL,     -- consecutive failed verifications since an approval
    locked_until   BIGINT NOT NULL,     -- microseconds since the Unix epoch; 0: not locked
    issued         TEXT   NOT NULL,     -- the issues within the window, comma-separated times
    keep_until     BIGINT NOT NULL,     -- without failures, the row may be purged after this
    UNIQUE (instance_id, generator_type, subject_mac)
);

-- One row per pending code (and per expired one until the purge).
CREATE TABLE IF NOT EXISTS verify_codes (
    id          TEXT   PRIMARY KEY,     -- vc_...
    subject_id  TEXT   NOT NULL,        -- verify_subjects.id
    key_id      TEXT   NOT NULL,        -- the key of mac
    mac         TEXT   NOT NULL,        -- hex HMAC of (instance, type, subject, id, code)
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    attempts    BIGINT NOT NULL         -- failed checks of this code
);

CREATE INDEX IF NOT EXISTS verify_codes_by_subject ON verify_codes (subject_id, created_at);
CREATE INDEX IF NOT EXISTS verify_codes_by_expiry ON verify_codes (expires_at);
CREATE INDEX IF NOT EXISTS verify_subjects_by_keep ON verify_subjects (keep_until);
