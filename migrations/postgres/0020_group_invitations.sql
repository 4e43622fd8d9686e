-- Who may add an account to a group: 'anyone', 'contacts' (accounts it has written to) or
-- 'nobody'. Others are invited instead: the invitation waits until the account joins or
-- declines, an admin withdraws it, or the group goes.
ALTER TABLE accounts ADD COLUMN group_adds TEXT NOT NULL DEFAULT 'anyone';
CREATE TABLE group_invitations (
    group_id   TEXT NOT NULL REFERENCES chat_groups (group_id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    invited_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, account_id)
);
-- The accounts an account has sent a direct message to: its contacts for 'contacts'.
CREATE TABLE contacts (
    account_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    PRIMARY KEY (account_id, contact_id)
);
