-- A very large object is read by several tasks side by side, each over a range of record ids
-- (a slice); every other object is one task, slice 0 over every id. Slice n numbers its parts
-- from n * 10000 + 1, so slices never collide on a part key.

ALTER TABLE backup_tasks
    ADD COLUMN slice_no INT UNSIGNED NOT NULL DEFAULT 0 AFTER sobject,
    ADD COLUMN id_from CHAR(15) CHARACTER SET ascii COLLATE ascii_bin NULL
        COMMENT 'first record id of the slice; NULL: from the lowest' AFTER slice_no,
    ADD COLUMN id_to CHAR(15) CHARACTER SET ascii COLLATE ascii_bin NULL
        COMMENT 'first record id after the slice; NULL: to the highest' AFTER id_from,
    DROP INDEX backup_tasks_object,
    ADD UNIQUE KEY backup_tasks_slice (backup_id, sobject, slice_no);
