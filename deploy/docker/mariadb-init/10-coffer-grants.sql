-- Runs once, when the mysql service's data volume is first initialised, after
-- the image has created user coffer and database coffer (MARIADB_USER etc.).
-- The tests create a database each, so coffer gets all privileges, as
-- scripts/stack gives it.
GRANT ALL PRIVILEGES ON *.* TO 'coffer'@'%';
FLUSH PRIVILEGES;
