//! The `coffer` command: the worker, the CLI that feeds it, and `coffer demo`.
//!
//! This is the binary edge: configuration comes from flags, environment variables and the
//! configuration file ([`config`], [`args::Services`]), errors become `anyhow` reports with
//! context, and logs go to stderr (stdout is kept for command output, plain or `--json`).

mod args;
mod commands;
mod config;
mod connect;
mod logging;
mod progress;

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

    #[command(subcommand)]
    command: commands::Command,
}

/// Loads the configuration, parses the command line against it, then starts the runtime.
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
        command,
    } = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    logging::init(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e.into()),
    };
    let context = commands::Context {
        config: &loaded,
        matches: &matches,
    };
    match runtime.block_on(commands::run(command, context)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("error: {e:#}");
    std::process::ExitCode::FAILURE
}
