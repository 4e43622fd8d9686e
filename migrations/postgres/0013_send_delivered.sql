-- A retry of a send not yet delivered publishes it again (the inbox stores a message once per
-- device), so whether a send reached the bus is no longer written down.
ALTER TABLE chat_sends DROP COLUMN published;
