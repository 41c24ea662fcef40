//! The subcommands, one module each.

mod backups;
mod config;
mod demo;
mod dlq;
mod enqueue;
mod erase;
mod janitor;
mod restore;
mod retention;
mod schedule;
mod scheduler;
mod sfsim;
mod status;
mod storage;
mod tenant;
mod verify;
mod worker;

use std::time::Duration;

use crate::args::Services;

/// What to do.
// Parsed once per process: the size of the largest variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Consume jobs from the queue and run them (runs until SIGTERM or Ctrl-C).
    Worker(worker::WorkerArgs),
    /// Publish a job.
    #[command(subcommand)]
    Enqueue(enqueue::EnqueueCommand),
    /// Create tenants and connect their orgs.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// A tenant's own bucket: set, test, enable, disable, reset, and the IAM policies to grant.
    #[command(subcommand)]
    Storage(storage::StorageCommand),
    /// List and inspect backups.
    #[command(subcommand)]
    Backups(backups::BackupsCommand),
    /// Restore records of a backup into an org (plan, execute, status).
    #[command(subcommand)]
    Restore(restore::RestoreCommand),
    /// Retention policies and legal holds.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// Retention sweeps: `plan`, `run` (one sweep, for cron), `marks`; `janitor --every 1h`
    /// sweeps in a loop.
    Janitor(janitor::JanitorArgs),
    /// The dead-letter queue: `list` the jobs given up and why, `replay` chosen ones once
    /// their cause is fixed.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Erase records (a person's) from every kept backup of an org (GDPR); their tombstones
    /// keep any later restore from bringing them back.
    Erase(erase::EraseArgs),
    /// Check that a tenant's storages and the catalog agree: every object present with its
    /// size (a sample read back, SHA-256 checked), nothing unknown, no stale upload, manifests
    /// in step. Exits 1 when anything disagrees.
    Verify(verify::VerifyArgs),
    /// Per-tenant backup schedules: cron expressions in a time zone.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Publish due scheduled backups (runs until SIGTERM; safe with several replicas).
    Scheduler(scheduler::SchedulerArgs),
    /// What runs now: queues (messages, consumers), workers, running backups and restores,
    /// erasures to finish. Exits 1 when the broker or the catalog cannot be asked.
    Status(status::StatusArgs),
    /// Apply catalog migrations and exit.
    Migrate {
        #[command(flatten)]
        services: Services,
    },
    /// The configuration: `check` prints every key's effective value and where it came from.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Serve a simulated Salesforce org (for trying Coffer without one).
    Sfsim(sfsim::SfsimArgs),
    /// Bring the local stack up, back up a simulated org through the queue, and show the result.
    Demo(demo::DemoArgs),
}

impl Command {
    /// The part of the fleet this command plays, for its spans' `coffer.role`.
    pub fn role(&self) -> coffer_telemetry::Role {
        match self {
            Command::Worker(_) => coffer_telemetry::Role::Worker,
            Command::Scheduler(_) => coffer_telemetry::Role::Scheduler,
            Command::Janitor(_) => coffer_telemetry::Role::Janitor,
            _ => coffer_telemetry::Role::Cli,
        }
    }
}

/// What a command may need beyond its own arguments.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The loaded configuration (file, environment, defaults).
    pub config: &'a crate::config::Loaded,
    /// The parsed command line, for where each flag's value came from.
    pub matches: &'a clap::ArgMatches,
}

/// Runs one command.
pub async fn run(command: Command, context: Context<'_>) -> anyhow::Result<()> {
    match command {
        Command::Worker(args) => worker::run(args).await,
        Command::Enqueue(cmd) => enqueue::run(cmd).await,
        Command::Tenant(cmd) => tenant::run(cmd).await,
        Command::Storage(cmd) => storage::run(cmd).await,
        Command::Backups(cmd) => backups::run(cmd).await,
        Command::Restore(cmd) => restore::run(cmd).await,
        Command::Retention(cmd) => retention::run(cmd).await,
        Command::Janitor(cmd) => janitor::run(cmd).await,
        Command::Dlq(cmd) => dlq::run(cmd).await,
        Command::Erase(args) => Box::pin(erase::run(args)).await,
        Command::Verify(args) => Box::pin(verify::run(args)).await,
        Command::Schedule(cmd) => schedule::run(cmd).await,
        Command::Scheduler(args) => scheduler::run(args).await,
        Command::Migrate { services } => {
            crate::connect::catalog(&services).await?;
            tracing::info!("catalog migrations applied");
            Ok(())
        }
        Command::Status(args) => status::run(args).await,
        Command::Config(cmd) => config::run(cmd, context),
        Command::Sfsim(args) => sfsim::run(args).await,
        Command::Demo(args) => demo::run(args).await,
    }
}

/// Prints a value as one line of JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// The result of a command that changes something: `value` as JSON with `--json`, else `line`.
pub fn done(
    json: bool,
    value: serde_json::Value,
    line: impl std::fmt::Display,
) -> anyhow::Result<()> {
    match json {
        true => print_json(&value),
        false => {
            say(line);
            Ok(())
        }
    }
}

/// Prints a line on stdout (command output, as opposed to logs on stderr).
pub fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C (the long-running commands drain on it).
pub async fn stop_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for sigterm");
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("sigterm received, stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received, stopping"),
    }
    shutdown.cancel();
}

/// A share of a whole: above 0, at most 1.
pub(crate) fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(share) if share > 0.0 && share <= 1.0 => Ok(share),
        _ => Err(format!("{s:?} is not a share between 0 (exclusive) and 1")),
    }
}

/// `500ms`, `10s`, `2m`, `1h`, `7d` (or a bare number of seconds), longer than zero.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if d.is_zero() {
        return Err("a duration must be longer than zero".to_owned());
    }
    Ok(d)
}

/// As [`parse_duration`], zero allowed (`0` or `0s`: a grace period that is over at once).
pub(crate) fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 500ms, 10s, 1m, 1h, 7d)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        "d" => Ok(Duration::from_secs(n * 86_400)),
        _ => Err(format!("invalid duration unit in {s:?} (ms, s, m, h or d)")),
    }
}

/// A duration as [`parse_duration`] reads it back, in the largest whole unit of h, m and s
/// (`2h`, `90s`), or `ms` below a second.
pub(crate) fn format_duration(d: Duration) -> String {
    match d.as_secs() {
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s if s > 0 => format!("{s}s"),
        _ => format!("{}ms", d.as_millis()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn a_formatted_duration_parses_back_to_itself() {
        for text in ["2h", "90m", "2s", "61s", "500ms"] {
            let d = super::parse_duration(text).unwrap();
            assert_eq!(super::format_duration(d), text);
        }
    }

    /// Commands that serve until stopped, or whose output is not a result to read.
    const NO_JSON: &[&str] = &["worker", "scheduler", "migrate", "sfsim"];

    /// Every command a script may read the output of takes `--json` (printed by `print_json`).
    #[test]
    fn every_command_with_a_result_takes_json() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let subs: Vec<&clap::Command> = cmd
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .collect();
            let takes_json = cmd.get_arguments().any(|a| a.get_long() == Some("json"));
            if (subs.is_empty() || cmd.is_args_conflicts_with_subcommands_set())
                && !takes_json
                && !NO_JSON.contains(&path.trim())
            {
                missing.push(path.trim().to_owned());
            }
            for sub in subs {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        for sub in crate::Cli::command().get_subcommands() {
            walk(sub, sub.get_name(), &mut missing);
        }
        assert!(missing.is_empty(), "no --json: {missing:?}");
    }
}
