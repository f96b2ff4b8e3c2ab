-- Tidings PostgreSQL schema, version 1. Migrations are append-only (migrate.rs): a later
-- version is a new entry there and never edits this file.
--
-- The meaning is sqlite/schema.sql's, table by table, for the roles this backend has so
-- far (the directory, uploads, the body policy, ManageSieve, quotas) and what every role
-- shares (the account's JMAP state counter, the change log, blobs). The mail tables come
-- with the roles that write them, as later versions.
-- Conventions: every integer BIGINT (Rust's i64, as the SQLite backend reads them); times
-- in unix seconds; columns NOT NULL with a DEFAULT where SQLite has one; ids are identity
-- columns (GENERATED ALWAYS: drawn from a sequence, never max() + 1), so an id is never
-- handed out twice, even after its row and every later row are gone (DESIGN.md
-- invariant 8; SQLite's AUTOINCREMENT). A copy of a SQLite store (`tidings migrate`, to
-- come) is to insert its ids with OVERRIDING SYSTEM VALUE and move each sequence past them.

-- "user" is a reserved word in PostgreSQL.
CREATE TABLE app_user (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL DEFAULT extract(epoch FROM now())::bigint
);

-- API tokens for Bearer authentication, stored as the SHA-256 of the token.
CREATE TABLE api_token (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    name       TEXT NOT NULL DEFAULT '',
    hash       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL DEFAULT extract(epoch FROM now())::bigint
);
CREATE INDEX api_token_user ON api_token (user_id);

CREATE TABLE account (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    host            TEXT NOT NULL,
    port            BIGINT NOT NULL,
    security        TEXT NOT NULL,
    username        TEXT NOT NULL,
    -- Encrypted by the caller (the store never sees the clear text).
    password_enc    BYTEA NOT NULL,
    ca_file         TEXT,
    smtp_host       TEXT,
    smtp_port       BIGINT,
    smtp_security   TEXT,
    smtp_username   TEXT,
    smtp_password_enc BYTEA,
    pop3_delete_after_days BIGINT,
    -- `password` | `oauth2` (then password_enc holds the encrypted refresh token).
    auth            TEXT NOT NULL DEFAULT 'password',
    oauth_provider  TEXT NOT NULL DEFAULT '',
    -- The provider profile the configuration names (`auto`: detected at connect).
    provider        TEXT NOT NULL DEFAULT 'auto',
    -- JMAP state counter: bumped once by every transaction that changes this account.
    -- A transaction bumps it with UPDATE ... RETURNING, whose row lock orders the
    -- account's writers: two nodes never commit the same state.
    state           BIGINT NOT NULL DEFAULT 0,
    -- push: the last state at which new mail was delivered (RFC 8621 1.5).
    delivery_state  BIGINT NOT NULL DEFAULT 0,
    sync_status     TEXT NOT NULL DEFAULT 'new',
    sync_error      TEXT NOT NULL DEFAULT '',
    status_at       BIGINT NOT NULL DEFAULT 0,
    UNIQUE (user_id, name)
);

-- The change log behind JMAP */changes and push. op: 0 created, 1 updated, 2 destroyed.
-- It goes with its account (SQLite deletes it by hand: it has no key there).
CREATE TABLE change (
    -- The order of the rows within one state (SQLite's rowid): a `*/changes` page that
    -- ends inside a state resumes after its last row (ChangePosition).
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    state      BIGINT NOT NULL,
    type       TEXT NOT NULL,
    object_id  BIGINT NOT NULL,
    op         SMALLINT NOT NULL
);
CREATE INDEX change_by_state ON change (account_id, state, seq);

-- Raw messages and uploads, addressed by the hex sha256 of their bytes, stored here so
-- that every node reads them (SQLite keeps the bytes in files beside its database).
-- A row goes when nothing references it any more (`BLOB_UNREFERENCED` in mod.rs).
CREATE TABLE blob (
    id   TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    data BYTEA NOT NULL
);

-- JMAP blob uploads (RFC 8620 6.1), owned by the account they were uploaded to.
CREATE TABLE upload (
    account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    blob_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, blob_id)
);
CREATE INDEX upload_created ON upload (created_at);
CREATE INDEX upload_blob ON upload (blob_id);

-- Sign-in sessions of the web client: the SHA-256 of the cookie token, the user, and
-- when it stops being accepted (unix seconds).
CREATE TABLE web_session (
    hash       TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES app_user(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_session_expiry ON web_session (expires_at);
CREATE INDEX web_session_user ON web_session (user_id);

-- The body policy and the daily download budget (sqlite/policy.rs): bodies of the last
-- N days fetched in the background, bytes downloaded counted per UTC day.
CREATE TABLE account_policy (
    account_id        BIGINT PRIMARY KEY REFERENCES account(id) ON DELETE CASCADE,
    -- Background bodies only of messages received in the last N days; NULL: all.
    bodies_days       BIGINT,
    -- The configured daily limit in MB; NULL: the provider profile's, 0: unlimited.
    daily_download_mb BIGINT,
    -- The limit in force, written by the engine; NULL: unlimited.
    limit_mb          BIGINT,
    -- The UTC day the background body pass last stopped at the budget.
    stopped_day       BIGINT
);
CREATE TABLE download_day (
    account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    -- UTC day number (unix seconds / 86400).
    day        BIGINT NOT NULL,
    bytes      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day)
);

-- ManageSieve (RFC 5804) per account (sqlite/sieve.rs): where to reach it, what the last
-- try found, permanent JMAP ids of Sieve scripts (RFC 9661), and what the scripts were
-- under recent SieveScript states.
CREATE TABLE account_sieve (
    account_id   BIGINT PRIMARY KEY REFERENCES account(id) ON DELETE CASCADE,
    -- false: never try ManageSieve for this account (the configuration said so).
    enabled      BOOLEAN NOT NULL DEFAULT true,
    -- '': the IMAP host (RFC 5804 1.8).
    host         TEXT NOT NULL DEFAULT '',
    -- 0: the registered port 4190.
    port         BIGINT NOT NULL DEFAULT 0,
    -- The server's capabilities (JSON) from the last successful try; '' when the last try
    -- failed or none was made.
    capabilities TEXT NOT NULL DEFAULT '',
    checked_at   BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE sieve_script (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    UNIQUE (account_id, name)
);
CREATE TABLE sieve_snapshot (
    -- The order snapshots were recorded in (SQLite's rowid), for keeping the newest.
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    account_id BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    -- JSON: [[id, digest of its name, activity and content], ...]
    scripts    TEXT NOT NULL,
    seen_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, state)
);

-- The account's quotas as its IMAP server reports them (RFC 9208), served as JMAP Quota
-- objects (RFC 9425); an id names one quota for good, also after its root went away.
CREATE TABLE quota (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    -- The IMAP quota root (RFC 9208 3.3).
    root        TEXT NOT NULL,
    -- 'octets' | 'count' (RFC 9425 2).
    resource    TEXT NOT NULL,
    used        BIGINT NOT NULL DEFAULT 0,
    hard_limit  BIGINT NOT NULL DEFAULT 0,
    UNIQUE (account_id, root, resource)
);
