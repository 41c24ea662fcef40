//! Test support: find the local stack, isolate each test, seed fixtures.
//!
//! Tests run against the real services `scripts/stack up` starts (RabbitMQ, MariaDB, and the
//! AWS emulator). [`Stack::from_env`] reads the endpoints from the same variables that
//! `scripts/stack env` prints, with the same defaults. [`TestEnv::new`] gives a test its own
//! database (migrated), queue prefix, bucket and KMS key, so tests run in parallel without
//! seeing each other; [`TestEnv::cleanup`] removes the database and queues.
//! [`consistency::problems`] checks that a bucket and the catalog agree; [`history`] makes
//! back-dated backup histories for retention tests and benchmarks; [`otlp::Receiver`] takes the
//! spans a process exports.

pub mod consistency;
pub mod env;
pub mod faults;
pub mod history;
pub mod iam;
pub mod logs;
pub mod org;
pub mod otlp;
pub mod stack;

pub use env::TestEnv;
pub use stack::Stack;

use coffer_core::OrgId;
use coffer_sfsim::{OrgSeed, SimConfig, SimHandle};

/// The org id every simulated test org uses unless a test needs several.
pub const TEST_ORG_ID: &str = "00D5g0000004SimAAA";

/// Starts an org simulator on a free port with `accounts` Accounts of `contacts` Contacts each,
/// serving `page_size` rows per Bulk results page.
pub async fn start_sim(
    accounts: usize,
    contacts: usize,
    page_size: usize,
) -> anyhow::Result<SimHandle> {
    let org = OrgSeed::new(OrgId::new(TEST_ORG_ID)?, 42, accounts, contacts);
    start_sim_of(org, page_size).await
}

/// Starts a simulator of `org` on a free port, serving `page_size` rows per Bulk results page.
pub async fn start_sim_of(org: OrgSeed, page_size: usize) -> anyhow::Result<SimHandle> {
    let config = SimConfig {
        default_page_size: page_size,
        ..SimConfig::local(org)
    };
    Ok(coffer_sfsim::start(config).await?)
}
