//! Security properties of Coffer, shown against the real services (RabbitMQ, MariaDB, and the
//! AWS emulator with `--verify-sigv4 --iam strict`, so identity, trust and session policies are
//! enforced):
//!
//! - `least_privilege`: the customer's permission policy and Coffer's session policy are enough
//!   for a backup through a worker, a restore read, `coffer verify` and a retention sweep, and
//!   each of their actions is needed by a named operation, which fails without it with an error
//!   naming the permission;
//! - `isolation`: a tenant's keys, credentials and catalog rows never reach another tenant's.
//!
//! Secrets in logs, metrics, traces and dead letters are checked on the `coffer` binary itself,
//! in `crates/coffer/tests/secrets.rs`.

mod common;
mod isolation;
mod least_privilege;
