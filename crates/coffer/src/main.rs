//! The `coffer` command: the worker, the CLI that feeds it, and `coffer demo`.
//!
//! This is the binary edge: configuration comes from flags and environment variables
//! ([`args::Services`]), errors become `anyhow` reports with context, and logs go to stderr
//! (stdout is kept for command output, plain or `--json`). Telemetry is set up before the
//! runtime starts and flushed after it stopped, so the spans of the last moments are sent.

mod args;
mod commands;
mod connect;
mod logging;
mod telemetry;

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

    #[command(flatten)]
    traces: telemetry::TraceArgs,

    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let export = cli.traces.export();
    let guard = match coffer_telemetry::traces::init(
        cli.log_format.into(),
        cli.command.role(),
        export.as_ref(),
    ) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = run(cli.command);
    guard.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the command on a multi-threaded runtime, which is shut down before returning.
fn run(command: commands::Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(commands::run(command));
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}
