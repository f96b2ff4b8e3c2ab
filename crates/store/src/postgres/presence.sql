-- The users with a live push client (a WebSocket with push on, an EventSource) on each
-- node, written by the node's beat: the node holding a user's accounts flushes their IMAP
-- servers' held-back notifications while the user has a client on any node, not only on
-- itself. A row outlives its node by its time to live at most.
CREATE TABLE node_presence (
    node       TEXT NOT NULL,
    user_id    BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (node, user_id)
);
