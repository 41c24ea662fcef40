//! Fault injection for the fault suite: services a test may restart, and a proxy that breaks
//! S3 requests.
//!
//! - [`PrivateRabbit`] and [`PrivateMariadb`]: a RabbitMQ node and a MariaDB server of the
//!   suite's own (own ports, data under a temporary directory), from the same Debian packages as
//!   the shared stack, so restarting them mid-run disturbs no other test.
//! - [`S3FaultProxy`]: an HTTP proxy between workers and the S3 emulator that forwards requests
//!   unchanged (the SigV4 signature covers the `Host` the client signed, which is kept) or
//!   answers some with a fault: `503 SlowDown`, `500 InternalError`, a connection reset, a
//!   delay, or a request body cut midway (a part upload broken off).

mod proxy;
mod services;

pub use proxy::{FaultRates, S3Fault, S3FaultProxy};
pub use services::{PrivateMariadb, PrivateRabbit, free_port};
