//! `coffer dlq`: the dead-letter queue as an operator works it. `list` shows each letter's job,
//! tenant and reason without taking it; `replay` sends the letters chosen by tenant, job id,
//! kind or error class back to the jobs queue with a fresh attempt budget, once whatever made
//! them fail has been fixed. A letter leaves the dead-letter queue only after the broker has
//! confirmed its replay.

use anyhow::bail;
use coffer_queue::DeadLetter;
use serde_json::json;

use super::backups::rfc3339;
use super::{print_json, say};
use crate::args::Services;
use crate::connect;

/// `dlq` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Show the letters (oldest first), leaving them in the queue.
    List(ListArgs),
    /// Send chosen letters back to the jobs queue, each as the job it was, with its attempts
    /// reset. Choose with --tenant, --job-id, --kind and --class (all must match), or --all.
    Replay(ReplayArgs),
}

/// `dlq list` options.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    services: Services,
    #[command(flatten)]
    select: Select,
    /// At most this many letters are read.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `dlq replay` options.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    services: Services,
    #[command(flatten)]
    select: Select,
    /// Replay every letter (instead of choosing some).
    #[arg(long, conflicts_with_all = ["tenant", "job_id", "kind", "class"])]
    all: bool,
    /// At most this many letters are replayed.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Which letters: every given criterion must match.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Select {
    /// Letters of this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// The letter of this job (repeatable).
    #[arg(long = "job-id")]
    job_id: Vec<String>,
    /// Letters of this job kind (`backup_requested`, `backup_task`, `restore_requested`, ...).
    #[arg(long)]
    kind: Option<String>,
    /// Letters whose error was of this class.
    #[arg(long, value_parser = ["retryable", "permanent"])]
    class: Option<String>,
}

impl Select {
    fn is_empty(&self) -> bool {
        self.tenant.is_none()
            && self.job_id.is_empty()
            && self.kind.is_none()
            && self.class.is_none()
    }

    fn matches(&self, letter: &DeadLetter) -> bool {
        let is = |want: &Option<String>, got: &Option<String>| {
            want.as_ref().is_none_or(|w| got.as_ref() == Some(w))
        };
        is(&self.tenant, &letter.tenant)
            && is(&self.kind, &letter.kind)
            && is(&self.class, &letter.class)
            && (self.job_id.is_empty()
                || letter
                    .message_id
                    .as_ref()
                    .is_some_and(|id| self.job_id.contains(id)))
    }
}

/// Runs a `dlq` subcommand.
pub async fn run(cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List(args) => list(args).await,
        DlqCommand::Replay(args) => replay(args).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let broker = connect::broker(&args.services.queue()).await?;
    let letters = broker.browse_dead_letters(args.limit).await;
    let _ = broker.close().await;
    let letters: Vec<DeadLetter> = letters?
        .into_iter()
        .filter(|l| args.select.matches(l))
        .collect();
    if args.json {
        let letters: Vec<_> = letters.iter().map(letter_json).collect();
        return print_json(&json!({ "letters": letters }));
    }
    if letters.is_empty() {
        say("no dead letters");
    }
    for letter in &letters {
        say(letter_line(letter));
    }
    Ok(())
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    if !args.all && args.select.is_empty() {
        bail!(
            "choose the letters to replay with --tenant, --job-id, --kind or --class, or pass --all \
             (`coffer dlq list` shows them)"
        );
    }
    let broker = connect::broker(&args.services.queue()).await?;
    let select = args.select.clone();
    let report = broker
        .replay_dead_letters(args.limit, move |l| select.matches(l))
        .await;
    let _ = broker.close().await;
    let report = report?;
    if args.json {
        return print_json(&json!({
            "replayed": report.replayed.iter().map(letter_json).collect::<Vec<_>>(),
            "not_replayable": report.not_replayable.iter().map(letter_json).collect::<Vec<_>>(),
            "kept": report.kept,
        }));
    }
    for letter in &report.replayed {
        say(format!("replayed {}", letter_line(letter)));
    }
    for letter in &report.not_replayable {
        say(format!(
            "not replayed (not a job: no id or kind) {}",
            letter_line(letter)
        ));
    }
    say(format!(
        "{} replayed, {} not replayable, {} left in the dead-letter queue",
        report.replayed.len(),
        report.not_replayable.len(),
        report.kept
    ));
    Ok(())
}

fn letter_json(l: &DeadLetter) -> serde_json::Value {
    json!({
        "job_id": l.message_id,
        "kind": l.kind,
        "tenant": l.tenant,
        "class": l.class,
        "reason": l.reason,
        "attempts": l.attempts,
        "replays": l.replays,
        "published_at": l.published_at.and_then(published_at),
        "bytes": l.payload.len(),
    })
}

fn letter_line(l: &DeadLetter) -> String {
    let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".to_owned());
    format!(
        "{} {} tenant={} class={} attempts={} replays={}: {}",
        or_dash(&l.message_id),
        or_dash(&l.kind),
        or_dash(&l.tenant),
        or_dash(&l.class),
        l.attempts,
        l.replays,
        l.reason.as_deref().unwrap_or("(no reason recorded)")
    )
}

fn published_at(secs: u64) -> Option<String> {
    let secs = i64::try_from(secs).ok()?;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .map(rfc3339)
}
