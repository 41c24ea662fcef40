//! The `coffer` command: the worker, the CLI that feeds it, and `coffer demo`.
//!
//! This is the binary edge: configuration comes from flags and environment variables
//! ([`args::Services`]), errors become `anyhow` reports with context, and logs go to stderr
//! (stdout is kept for command output, plain or `--json`).

mod args;
mod commands;
mod connect;
mod logging;

use clap::Parser;

/// jemalloc: a worker hands page and part buffers between the async runtime and blocking
/// threads, which fragments glibc's per-thread arenas until the peak grows with the org; with
/// jemalloc it does not.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Back up Salesforce orgs into object storage, and restore them.
#[derive(Debug, Parser)]
#[command(name = "coffer", version, about, propagate_version = true)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "COFFER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: commands::Command,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match commands::run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
