//! Throughput of Bulk API 2.0 query to parsed rows: the client queries every field of the
//! simulator's 20-column `Benchmark_Record__c` and drains `next_page()`, for 100,000 and
//! 1,000,000 rows (override with `BENCH_ROWS=100000,1000000`). It prints rows/s, MB/s of
//! uncompressed CSV and the peak resident memory of the run (`VmHWM`, reset before each run).
//!
//! The simulator runs in this process and generates rows on demand, so a flat peak across row
//! counts shows that neither side holds the result set in memory.
//!
//! Run with `cargo bench -p coffer-salesforce --bench bulk_query`.

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::{Duration, Instant};

use coffer_core::OrgId;
use coffer_core::secret::SecretString;
use coffer_salesforce::{ClientOptions, OrgConnection, SalesforceClient};
use coffer_sfsim::schema::{BENCHMARK_OBJECT, benchmark};
use coffer_sfsim::{OrgSeed, SimConfig};

type BoxError = Box<dyn Error + Send + Sync>;

/// One run's measurements.
struct Run {
    rows: u64,
    csv_bytes: u64,
    pages: u64,
    elapsed: Duration,
    peak_rss_kib: Option<u64>,
}

fn main() -> Result<(), BoxError> {
    let counts = row_counts()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "{:>10} {:>6} {:>8} {:>12} {:>8} {:>9} {:>13}",
        "rows", "pages", "seconds", "rows/s", "MB", "MB/s", "peak RSS MiB"
    );
    for n in counts {
        reset_peak_rss();
        let run = runtime.block_on(run(n))?;
        let secs = run.elapsed.as_secs_f64();
        let mb = run.csv_bytes as f64 / 1e6;
        let peak = run
            .peak_rss_kib
            .map_or_else(|| "n/a".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
        println!(
            "{:>10} {:>6} {:>8.2} {:>12.0} {:>8.1} {:>9.1} {:>13}",
            run.rows,
            run.pages,
            secs,
            run.rows as f64 / secs,
            mb,
            mb / secs,
            peak
        );
    }
    Ok(())
}

/// `BENCH_ROWS` (comma-separated) or 100,000 and 1,000,000. Run by `cargo test --all-targets`
/// (no `--bench` argument), it only checks that the path works, on 2,000 rows: figures from an
/// unoptimised test build would mislead.
fn row_counts() -> Result<Vec<usize>, BoxError> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(vec![2_000]);
    }
    match std::env::var("BENCH_ROWS") {
        Ok(list) => Ok(list
            .split(',')
            .map(|n| n.trim().replace('_', "").parse())
            .collect::<Result<_, _>>()?),
        Err(_) => Ok(vec![100_000, 1_000_000]),
    }
}

async fn run(n: usize) -> Result<Run, BoxError> {
    let org =
        OrgSeed::new(OrgId::new("00D5g000004XyZaEAK")?, 1, 10, 1).with_rows(BENCHMARK_OBJECT, n);
    let sim = coffer_sfsim::start(SimConfig::local(org)).await?;
    let conn = OrgConnection {
        login_url: sim.base_url(),
        client_id: sim.client_id().to_owned(),
        client_secret: SecretString::from(sim.client_secret().to_owned()),
        api_version: "62.0".to_owned(),
    };
    let options = ClientOptions {
        max_records: 50_000,
        poll_initial: Duration::from_millis(5),
        poll_max: Duration::from_millis(20),
        max_api_share: None,
        max_requests_per_second: None,
        ..ClientOptions::default()
    };
    let client = SalesforceClient::connect_with(conn, options).await?;
    let fields: Vec<&str> = benchmark().bulk_fields().iter().map(|f| f.name).collect();
    let soql = format!("SELECT {} FROM {BENCHMARK_OBJECT}", fields.join(", "));
    let started = Instant::now();
    let mut results = client.bulk_query(&soql).await?;
    let (mut rows, mut csv_bytes, mut pages) = (0u64, 0u64, 0u64);
    while let Some(page) = results.next_page().await? {
        pages += 1;
        rows += page.records.len() as u64;
        csv_bytes += page.records.iter().map(csv_len).sum::<u64>();
    }
    let elapsed = started.elapsed();
    sim.shutdown().await;
    Ok(Run {
        rows,
        csv_bytes,
        pages,
        elapsed,
        peak_rss_kib: peak_rss_kib(),
    })
}

/// The bytes `record` takes as an all-quoted CSV line: each cell quoted with inner quotes
/// doubled, separators and the newline.
fn csv_len(record: &csv::StringRecord) -> u64 {
    let cells: usize = record
        .iter()
        .map(|c| c.len() + 2 + c.bytes().filter(|b| *b == b'"').count())
        .sum();
    (cells + record.len()) as u64
}

/// `VmHWM` of this process in KiB (Linux), the peak resident set size.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets `VmHWM` to the current RSS (Linux 4.0+), so each run reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
