-- v3: account leases with a fencing epoch, and the nodes alive (postgres/leases.rs).
-- Times here are TIMESTAMPTZ compared with the server's now(), not unix seconds from the
-- nodes: a lease must mean the same on nodes whose clocks disagree.

-- The nodes on this store, each alive until its last heartbeat's time-to-live ran out:
-- what a node's even share of the accounts is counted from.
CREATE TABLE node (
    name        TEXT PRIMARY KEY,
    alive_until TIMESTAMPTZ NOT NULL
);

-- Who works on an account, until when, under which epoch. A row is never deleted while
-- its account lives (a release only expires it), so an epoch is never handed out twice.
CREATE TABLE account_lease (
    account_id BIGINT PRIMARY KEY REFERENCES account(id) ON DELETE CASCADE,
    node       TEXT NOT NULL,
    epoch      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX account_lease_by_node ON account_lease (node, expires_at);
