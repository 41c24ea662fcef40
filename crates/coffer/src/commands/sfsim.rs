//! `coffer sfsim`: serve a simulated org until Ctrl-C.

use std::net::SocketAddr;

use coffer_core::OrgId;
use coffer_sfsim::{OrgSeed, SimConfig};

use super::say;

/// Simulator options.
#[derive(Debug, clap::Args)]
pub struct SfsimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8484")]
    bind: SocketAddr,
    /// Org id of the simulated org.
    #[arg(long, default_value = "00D5g0000004SimAAA")]
    org_id: OrgId,
    /// Accounts to seed.
    #[arg(long, default_value_t = 200)]
    accounts: usize,
    /// Contacts per Account.
    #[arg(long, default_value_t = 4)]
    contacts_per_account: usize,
    /// Seed of the generated data (same seed, same org).
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Serves until interrupted.
pub async fn run(args: SfsimArgs) -> anyhow::Result<()> {
    let org = OrgSeed::new(
        args.org_id,
        args.seed,
        args.accounts,
        args.contacts_per_account,
    );
    let config = SimConfig {
        bind: args.bind,
        ..SimConfig::local(org)
    };
    let (client_id, client_secret) = (config.client_id.clone(), config.client_secret.clone());
    let sim = coffer_sfsim::start(config).await?;
    say(format!(
        "simulated org {} at {}",
        sim.org_id(),
        sim.base_url()
    ));
    say(format!(
        "client id {client_id}, client secret {client_secret} (simulator credentials, not a real secret)"
    ));
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
