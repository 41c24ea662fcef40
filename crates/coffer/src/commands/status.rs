//! `coffer status`: what an operator looks at first. The queues (jobs, retry, parked, dead
//! letters: messages and consumers), the workers (consumers on the jobs queue, task lease
//! holders), what runs now (backups with their progress, restores, erasures to finish), and
//! each org's Salesforce API usage as a worker last saw it, with any pause on its limits.
//!
//! The broker and the catalog are asked independently: when one is down the other's part is
//! still shown, the failure is named, and the command exits 1. Nothing is declared or changed:
//! queues are read by passive declare, a missing one is shown as missing.

use coffer_catalog::OrgApiUsage;
use coffer_catalog::status::{LeaseHolder, RunningBackup, RunningRestore};
use coffer_queue::{Broker, QueueStats};
use serde_json::json;

use super::backups::rfc3339;
use super::{print_json, say};
use crate::args::Services;
use crate::connect;

/// `status` options.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    services: Services,
    /// At most this many running backups and restores each (oldest first), and orgs' API
    /// usage (highest share first).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// What the catalog says runs now.
struct Running {
    backups: Vec<RunningBackup>,
    restores: Vec<RunningRestore>,
    lease_holders: Vec<LeaseHolder>,
    erasures_pending: u64,
    api_usage: Vec<OrgApiUsage>,
}

/// Prints the status; fails (after printing what it could) when the broker or the catalog
/// could not be asked.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let queues = queues(&args.services).await;
    let running = running(&args.services, args.limit).await;
    let errors: Vec<String> = [queues.as_ref().err(), running.as_ref().err()]
        .into_iter()
        .flatten()
        .map(|e| format!("{e:#}"))
        .collect();
    let queues = queues.ok();
    let running = running.ok();
    match args.json {
        true => print_json(&as_json(queues.as_deref(), running.as_ref(), &errors))?,
        false => print_plain(queues.as_deref(), running.as_ref(), &errors),
    }
    match errors.first() {
        Some(e) => anyhow::bail!("status incomplete: {e}"),
        None => Ok(()),
    }
}

async fn queues(services: &Services) -> anyhow::Result<Vec<QueueStats>> {
    use anyhow::Context;
    let broker = Broker::connect(&services.queue())
        .await
        .context("cannot connect to RabbitMQ (COFFER_AMQP_URL)")?;
    let stats = broker.queue_stats().await;
    let _ = broker.close().await;
    stats.context("cannot read the queues")
}

async fn running(services: &Services, limit: u32) -> anyhow::Result<Running> {
    let catalog = connect::catalog(services).await?;
    Ok(Running {
        backups: catalog.running_backups(limit).await?,
        restores: catalog.running_restores(limit).await?,
        lease_holders: catalog.lease_holders().await?,
        erasures_pending: catalog.erasures_pending().await?,
        api_usage: catalog.api_usage(limit).await?,
    })
}

fn queue_json(q: &QueueStats) -> serde_json::Value {
    let delay_ms = match q.role {
        coffer_queue::QueueRole::Retry(delay) => Some(delay.as_millis() as u64),
        _ => None,
    };
    json!({
        "name": q.name,
        "role": q.role.as_str(),
        "delay_ms": delay_ms,
        "exists": q.counts.is_some(),
        "messages": q.counts.map(|c| c.messages),
        "consumers": q.counts.map(|c| c.consumers),
    })
}

fn backup_json(b: &RunningBackup) -> serde_json::Value {
    json!({
        "backup_id": b.backup_id.to_string(),
        "job_id": b.job_id.to_string(),
        "tenant": b.tenant_id.as_str(),
        "org_id": b.org_id.as_str(),
        "kind": b.kind,
        "started_at": rfc3339(b.started_at),
        "tasks_total": b.tasks_total,
        "tasks_done": b.tasks_done,
        "tasks_running": b.tasks_running,
        "records": b.records,
    })
}

fn restore_json(r: &RunningRestore) -> serde_json::Value {
    json!({
        "restore_id": r.restore_id,
        "job_id": r.job_id.to_string(),
        "tenant": r.tenant_id.as_str(),
        "org_id": r.org_id.as_str(),
        "target_org_id": r.target_org_id.as_str(),
        "state": r.state,
        "created_at": rfc3339(r.created_at),
        "records_total": r.records_total,
        "records_written": r.records_written,
        "records_failed": r.records_failed,
    })
}

fn api_usage_json(u: &OrgApiUsage) -> serde_json::Value {
    json!({
        "tenant": u.tenant_id.as_str(),
        "org_id": u.org_id.as_str(),
        "used": u.used,
        "daily_max": u.daily_max,
        "share": u.share(),
        "seen_at": rfc3339(u.seen_at),
        "paused_until": u.paused_until.map(rfc3339),
    })
}

fn as_json(
    queues: Option<&[QueueStats]>,
    running: Option<&Running>,
    errors: &[String],
) -> serde_json::Value {
    let consumers = queues.and_then(|q| q.first()?.counts.map(|c| c.consumers));
    json!({
        "queues": queues.map(|q| q.iter().map(queue_json).collect::<Vec<_>>()),
        "workers": {
            "consumers": consumers,
            "lease_holders": running.map(|r| r.lease_holders.iter().map(|h| json!({
                "worker": h.worker,
                "tasks": h.tasks,
                "lease_until": rfc3339(h.lease_until),
            })).collect::<Vec<_>>()),
        },
        "backups": running.map(|r| r.backups.iter().map(backup_json).collect::<Vec<_>>()),
        "restores": running.map(|r| r.restores.iter().map(restore_json).collect::<Vec<_>>()),
        "erasures_pending": running.map(|r| r.erasures_pending),
        "api_usage": running.map(|r| r.api_usage.iter().map(api_usage_json).collect::<Vec<_>>()),
        "errors": errors,
    })
}

fn print_plain(queues: Option<&[QueueStats]>, running: Option<&Running>, errors: &[String]) {
    if let Some(queues) = queues {
        print_queues(queues);
    }
    if let Some(running) = running {
        print_running(running);
    }
    for e in errors {
        say(format!("error: {e}"));
    }
}

fn print_queues(queues: &[QueueStats]) {
    say(format!(
        "{:<40}  {:<11}  {:>8}  {:>9}",
        "queue", "role", "messages", "consumers"
    ));
    for q in queues {
        let (messages, consumers) = match q.counts {
            Some(c) => (c.messages.to_string(), c.consumers.to_string()),
            None => ("missing".to_owned(), "-".to_owned()),
        };
        say(format!(
            "{:<40}  {:<11}  {messages:>8}  {consumers:>9}",
            q.name,
            q.role.as_str()
        ));
    }
    let consumers = queues.first().and_then(|q| q.counts).map(|c| c.consumers);
    say(format!(
        "workers consuming jobs: {}",
        consumers.map_or("unknown".to_owned(), |c| c.to_string())
    ));
}

fn print_running(running: &Running) {
    for h in &running.lease_holders {
        say(format!(
            "  {} holds {} task lease(s), until {}",
            h.worker,
            h.tasks,
            rfc3339(h.lease_until)
        ));
    }
    say(format!("backups running: {}", running.backups.len()));
    for b in &running.backups {
        say(format!(
            "  {} {} {}/{} since {}: tasks {}/{} done ({} running), {} records",
            b.backup_id,
            b.kind,
            b.tenant_id,
            b.org_id,
            rfc3339(b.started_at),
            b.tasks_done,
            b.tasks_total,
            b.tasks_running,
            b.records
        ));
    }
    say(format!("restores running: {}", running.restores.len()));
    for r in &running.restores {
        say(format!(
            "  {} {}/{} -> {} {} since {}: {}/{} records written, {} failed",
            r.restore_id,
            r.tenant_id,
            r.org_id,
            r.target_org_id,
            r.state,
            rfc3339(r.created_at),
            r.records_written,
            r.records_total,
            r.records_failed
        ));
    }
    say(format!("erasures to finish: {}", running.erasures_pending));
    print_api_usage(&running.api_usage);
}

fn print_api_usage(usage: &[OrgApiUsage]) {
    say(format!(
        "salesforce api usage (last seen, rolling 24 h): {} org(s)",
        usage.len()
    ));
    for u in usage {
        let paused = u
            .paused_until
            .map(|t| format!(", paused until {}", rfc3339(t)))
            .unwrap_or_default();
        say(format!(
            "  {}/{}: {}/{} calls ({:.1}%) at {}{paused}",
            u.tenant_id,
            u.org_id,
            u.used,
            u.daily_max,
            u.share() * 100.0,
            rfc3339(u.seen_at)
        ));
    }
}
