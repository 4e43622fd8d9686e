-- Groups: members with a role; the version grows with every change of membership or role
-- (and its row update serialises concurrent changes of one group).
CREATE TABLE chat_groups (
    group_id   TEXT PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    version    BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id   TEXT NOT NULL REFERENCES chat_groups (group_id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    role       TEXT NOT NULL,
    added_at   BIGINT NOT NULL,
    PRIMARY KEY (group_id, account_id)
);
CREATE INDEX group_members_account ON group_members (account_id);

-- An inbox entry sent to a group names it ('' for a message to the account).
ALTER TABLE inbox ADD COLUMN group_id TEXT NOT NULL DEFAULT '';
