//! Upload throughput and memory of the object writer, beside rclone on the same server.
//!
//! Two inputs of `BENCH_UPLOAD_MIB` MiB each (default 2048): incompressible bytes and CSV text
//! (what a backup uploads after gzip, and before it, respectively). Each is written to a file
//! first, then uploaded to the emulator (`scripts/stack up`) with SSE-KMS, once through
//! [`MultipartWriter`] reading the file in 1 MiB chunks (8 MiB parts; 2 and 4 parts in flight),
//! and once by `rclone copyto` with the same part size, concurrency and encryption. It prints
//! MB/s for each and the peak resident memory of this process during each of its own runs
//! (`VmHWM`, reset before each run), against the bound part size x parts in flight + 64 MiB.
//!
//! Run with `cargo bench -p coffer-storage --bench upload` (needs `rclone`: `scripts/bench-tools`
//! installs it from Debian's packages). Run by `cargo test --all-targets` it only checks the path
//! on 16 MiB, without rclone.

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use coffer_storage::provision::{self, KmsKey};
use coffer_storage::{BucketTarget, Encryption, MultipartWriter, S3Client, UploadOptions};
use coffer_testkit::Stack;

type BoxError = Box<dyn Error + Send + Sync>;

const MIB: usize = 1024 * 1024;
const PART_SIZE: usize = 8 * MIB;

/// One upload's measurements.
struct Run {
    bytes: u64,
    elapsed: Duration,
    peak_rss_kib: Option<u64>,
}

/// What the benchmark talks to.
struct Bench {
    stack: Stack,
    client: S3Client,
    bucket: String,
    key: KmsKey,
}

fn main() -> Result<(), BoxError> {
    let full = std::env::args().any(|a| a == "--bench");
    let mib = if full { size_mib()? } else { 16 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bench = runtime.block_on(Bench::new())?;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("upload-bench");
    std::fs::create_dir_all(&dir)?;
    println!(
        "{:<15} {:<28} {:>9} {:>8} {:>8} {:>13} {:>10}",
        "input", "uploader", "MiB", "seconds", "MB/s", "peak RSS MiB", "bound MiB"
    );
    for input in ["incompressible", "csv"] {
        let file = dir.join(format!("{input}.bin"));
        generate(&file, input, mib * MIB)?;
        for in_flight in [2, 4] {
            reset_peak_rss();
            let run = runtime.block_on(bench.coffer(&file, in_flight))?;
            let bound = (PART_SIZE * in_flight) / MIB + 64;
            print_row(
                input,
                &format!("coffer ({in_flight} in flight)"),
                &run,
                Some(bound),
            );
        }
        if full {
            for in_flight in [2, 4] {
                let run = runtime.block_on(bench.rclone(&file, in_flight))?;
                print_row(
                    input,
                    &format!("rclone ({in_flight} in flight)"),
                    &run,
                    None,
                );
            }
        }
        std::fs::remove_file(&file)?;
    }
    Ok(())
}

fn size_mib() -> Result<usize, BoxError> {
    match std::env::var("BENCH_UPLOAD_MIB") {
        Ok(v) => Ok(v.trim().parse()?),
        Err(_) => Ok(2048),
    }
}

fn print_row(input: &str, uploader: &str, run: &Run, bound_mib: Option<usize>) {
    let secs = run.elapsed.as_secs_f64();
    let peak = run
        .peak_rss_kib
        .map_or_else(|| "n/a".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
    let bound = bound_mib.map_or_else(|| "".to_owned(), |b| b.to_string());
    println!(
        "{:<15} {:<28} {:>9} {:>8.2} {:>8.1} {:>13} {:>10}",
        input,
        uploader,
        run.bytes / MIB as u64,
        secs,
        run.bytes as f64 / 1e6 / secs,
        peak,
        bound
    );
}

impl Bench {
    async fn new() -> Result<Bench, BoxError> {
        let stack = Stack::from_env();
        let s3 = stack.admin_s3();
        let client = s3.s3_client().await;
        let bucket = format!("coffer-bench-{}", std::process::id());
        provision::ensure_bucket(&client, &bucket, &stack.region).await?;
        let key = provision::create_kms_key(&s3.kms_client().await, "coffer upload bench").await?;
        Ok(Bench {
            stack,
            client,
            bucket,
            key,
        })
    }

    /// Uploads `file` through the writer, reading it in 1 MiB chunks.
    async fn coffer(&self, file: &Path, in_flight: usize) -> Result<Run, BoxError> {
        let target = BucketTarget {
            bucket: self.bucket.clone(),
            encryption: Encryption::SseKms {
                key_id: self.key.arn.clone(),
                bucket_key: false,
            },
        };
        let options = UploadOptions {
            part_size: PART_SIZE,
            max_in_flight: in_flight,
            ..UploadOptions::default()
        };
        let key = format!("coffer/{in_flight}");
        let started = Instant::now();
        let mut writer = MultipartWriter::create(&self.client, &target, &key, options).await?;
        let mut input = std::fs::File::open(file)?;
        let mut chunk = vec![0u8; MIB];
        loop {
            let n = input.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            writer.write(&chunk[..n]).await?;
        }
        let uploaded = writer.finish().await?;
        let elapsed = started.elapsed();
        let peak_rss_kib = peak_rss_kib();
        self.remove(&key).await?;
        Ok(Run {
            bytes: uploaded.size,
            elapsed,
            peak_rss_kib,
        })
    }

    /// Uploads `file` with `rclone copyto`, same part size, concurrency and encryption.
    async fn rclone(&self, file: &Path, in_flight: usize) -> Result<Run, BoxError> {
        let key = format!("rclone/{in_flight}");
        let keys = self.stack.admin_s3().keys.ok_or("admin keys")?;
        let started = Instant::now();
        let status = Command::new("rclone")
            .arg("copyto")
            .arg(file)
            .arg(format!("bench:{}/{key}", self.bucket))
            .args(["--s3-chunk-size", &format!("{}M", PART_SIZE / MIB)])
            .args(["--s3-upload-concurrency", &in_flight.to_string()])
            .args(["--s3-upload-cutoff", "0"])
            .args(["--s3-server-side-encryption", "aws:kms"])
            .args(["--s3-sse-kms-key-id", &self.key.arn])
            // rclone refuses AWS_CA_BUNDLE with a plain-HTTP endpoint.
            .env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG_BENCH_TYPE", "s3")
            .env("RCLONE_CONFIG_BENCH_PROVIDER", "Other")
            .env("RCLONE_CONFIG_BENCH_ENDPOINT", &self.stack.s3_endpoint)
            .env("RCLONE_CONFIG_BENCH_REGION", &self.stack.region)
            .env("RCLONE_CONFIG_BENCH_ACCESS_KEY_ID", &keys.access_key_id)
            .env(
                "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY",
                secrecy::ExposeSecret::expose_secret(&keys.secret_access_key),
            )
            .status()
            .map_err(|e| format!("rclone: {e} (install it with scripts/bench-tools)"))?;
        let elapsed = started.elapsed();
        if !status.success() {
            return Err(format!("rclone exited with {status}").into());
        }
        let bytes = std::fs::metadata(file)?.len();
        self.remove(&key).await?;
        Ok(Run {
            bytes,
            elapsed,
            peak_rss_kib: None,
        })
    }

    async fn remove(&self, key: &str) -> Result<(), BoxError> {
        coffer_storage::delete::delete_keys(&self.client, &self.bucket, &[key.to_owned()]).await?;
        Ok(())
    }
}

/// Writes `len` bytes of `kind` ("incompressible" or "csv") to `path`, 1 MiB at a time.
fn generate(path: &Path, kind: &str, len: usize) -> Result<(), BoxError> {
    let mut out = std::io::BufWriter::with_capacity(MIB, std::fs::File::create(path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut row = 0u64;
    let mut written = 0;
    let mut chunk = Vec::with_capacity(MIB + 1024);
    while written < len {
        chunk.clear();
        if kind == "csv" {
            while chunk.len() < MIB {
                row += 1;
                csv_row(&mut chunk, row, &mut state);
            }
        } else {
            random_bytes(&mut chunk, MIB, &mut state);
        }
        let take = chunk.len().min(len - written);
        out.write_all(&chunk[..take])?;
        written += take;
    }
    out.flush()?;
    Ok(())
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn random_bytes(out: &mut Vec<u8>, len: usize, state: &mut u64) {
    while out.len() < len {
        out.extend_from_slice(&next(state).to_le_bytes());
    }
}

/// One 20-column all-quoted CSV row, like a Bulk API result row.
fn csv_row(out: &mut Vec<u8>, row: u64, state: &mut u64) {
    let _ = write!(out, "\"a0B5g{row:013}AAA\"");
    for column in 1..20 {
        let value = next(state);
        let _ = match column % 4 {
            0 => write!(
                out,
                ",\"Customer {} of region {}\"",
                value % 100_000,
                value % 17
            ),
            1 => write!(out, ",\"{}.{:02}\"", value % 1_000_000, value % 100),
            2 => write!(
                out,
                ",\"2024-{:02}-{:02}T10:00:00.000+0000\"",
                value % 12 + 1,
                value % 28 + 1
            ),
            _ => write!(out, ",\"{}\"", value.is_multiple_of(2)),
        };
    }
    out.push(b'\n');
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
