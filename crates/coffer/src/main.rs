//! The `coffer` command: the worker, the CLI that feeds it, and `coffer demo`.
//!
//! This is the binary edge: configuration comes from flags, environment variables and the
//! configuration file ([`config`], [`args::Services`]), errors become `anyhow` reports with
//! context, and logs go to stderr (stdout is kept for command output, plain or `--json`).
//! Telemetry is set up before the runtime starts and flushed after it stopped, so the spans of
//! the last moments are sent.

mod args;
mod commands;
mod config;
mod connect;
mod logging;
mod progress;
mod telemetry;

use clap::{CommandFactory, FromArgMatches};

/// jemalloc: a worker hands page and part buffers between the async runtime and blocking
/// threads, which fragments glibc's per-thread arenas until the peak grows with the org; with
/// jemalloc it does not.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Back up Salesforce orgs into object storage, and restore them.
#[derive(Debug, clap::Parser)]
#[command(name = "coffer", version, about, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML; see docs/configuration.md). Environment variables override
    /// it, and flags override both.
    #[arg(long, global = true, env = config::CONFIG_ENV, value_name = "PATH")]
    config: Option<std::path::PathBuf>,

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

/// Loads the configuration, parses the command line against it, sets up telemetry, then runs
/// the command on its runtime.
fn main() -> std::process::ExitCode {
    let loaded = match config::load() {
        Ok(loaded) => loaded,
        Err(e) => return fail(&e),
    };
    let matches = config::apply(Cli::command(), &loaded).get_matches();
    // `--config` was read before parsing (config::load); clap only documents and accepts it.
    let Cli {
        config: _,
        log_format,
        traces,
        command,
    } = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let export = traces.export();
    let guard =
        match coffer_telemetry::traces::init(log_format.into(), command.role(), export.as_ref()) {
            Ok(guard) => guard,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
    let context = commands::Context {
        config: &loaded,
        matches: &matches,
    };
    let result = run(command, context);
    guard.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("error: {e:#}");
    std::process::ExitCode::FAILURE
}

/// Runs the command on a multi-threaded runtime, which is shut down before returning.
fn run(command: commands::Command, context: commands::Context<'_>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(commands::run(command, context));
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}
