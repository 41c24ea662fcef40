-- A create sent without a restore key is in doubt until its answer is recorded: if the
-- process dies (or the answer is lost) in between, Salesforce may hold the record although
-- the row is still pending. `sent_at` says when it was sent, so the next attempt looks for it
-- in the org (records created since, with the same values) before sending it again.
ALTER TABLE restore_records
    ADD COLUMN sent_at TIMESTAMP(6) NULL COMMENT 'when an unkeyed create of it was last sent' AFTER error;
