//! Shared helpers for the integration tests: configuration against the local RabbitMQ, a
//! scriptable handler, a running consumer, polling helpers, and closing a test's own connections.

#![allow(dead_code, missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_core::secret::SecretString;
use coffer_queue::{
    Broker, DeadLetter, JobDelivery, JobHandler, Outcome, OutgoingJob, Publisher, QueueConfig,
    QueueError, run_consumer,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(15);

pub fn amqp_url() -> String {
    std::env::var("COFFER_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A config with a unique prefix and test-sized delays.
pub fn test_config() -> QueueConfig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "coffer_queue=debug".into()),
        )
        .with_test_writer()
        .try_init();
    let mut cfg = QueueConfig::new(SecretString::from(amqp_url()));
    cfg.prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    cfg.prefetch = 4;
    cfg.retry_delays = vec![Duration::from_millis(200)];
    cfg.max_attempts = 3;
    cfg.delivery_limit = 5;
    cfg.drain_timeout = Duration::from_millis(500);
    cfg
}

pub type Script =
    Box<dyn Fn(JobDelivery) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// Reports every delivery on a channel, then runs the script.
pub struct TestHandler {
    seen: mpsc::UnboundedSender<JobDelivery>,
    script: Script,
}

impl JobHandler for TestHandler {
    fn handle(&self, delivery: JobDelivery) -> impl Future<Output = Outcome> + Send {
        let _ = self.seen.send(delivery.clone());
        (self.script)(delivery)
    }
}

pub fn script<F, Fut>(f: F) -> Script
where
    F: Fn(JobDelivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    Box::new(move |d| Box::pin(f(d)))
}

/// A broker, a publisher and a running consumer for one test prefix.
pub struct Harness {
    pub cfg: QueueConfig,
    pub broker: Broker,
    pub publisher: Publisher,
    pub shutdown: CancellationToken,
    pub consumer: Option<JoinHandle<Result<(), QueueError>>>,
    pub seen: mpsc::UnboundedReceiver<JobDelivery>,
}

impl Harness {
    pub async fn start(cfg: QueueConfig, script: Script) -> Harness {
        let broker = Broker::connect(&cfg).await.expect("connect");
        broker.declare_topology().await.expect("declare");
        let publisher = broker.publisher().await.expect("publisher");
        let (tx, rx) = mpsc::unbounded_channel();
        let handler = Arc::new(TestHandler { seen: tx, script });
        let shutdown = CancellationToken::new();
        let consumer = tokio::spawn(run_consumer(cfg.clone(), handler, shutdown.clone()));
        Harness {
            cfg,
            broker,
            publisher,
            shutdown,
            consumer: Some(consumer),
            seen: rx,
        }
    }

    pub async fn publish(&self, id: &str) {
        self.publisher
            .publish_job(OutgoingJob {
                message_id: id,
                kind: "backup_requested",
                tenant: Some("acme"),
                payload: id.as_bytes(),
            })
            .await
            .expect("publish");
    }

    /// Next delivery seen by the handler.
    pub async fn next(&mut self) -> JobDelivery {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("timed out waiting for a delivery")
            .expect("handler channel closed")
    }

    /// Cancels the consumer and waits for it to return.
    pub async fn stop_consumer(&mut self) {
        self.shutdown.cancel();
        if let Some(consumer) = self.consumer.take() {
            tokio::time::timeout(WAIT, consumer)
                .await
                .expect("consumer did not stop")
                .expect("consumer task panicked")
                .expect("consumer returned an error");
        }
    }

    pub async fn finish(mut self) {
        self.stop_consumer().await;
        self.broker
            .delete_topology()
            .await
            .expect("delete topology");
    }

    pub fn jobs_queue(&self) -> String {
        self.broker.topology().jobs_queue().to_owned()
    }
}

/// Polls the dead-letter queue until a message arrives.
pub async fn wait_dead_letter(broker: &Broker) -> DeadLetter {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(letter) = broker.get_dead_letter().await.expect("get dead letter") {
            return letter;
        }
        assert!(Instant::now() < deadline, "no dead letter arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until `queue` holds `depth` ready messages.
pub async fn wait_depth(broker: &Broker, queue: &str, depth: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = broker.queue_depth(queue).await.expect("queue depth");
        if now == depth {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{queue} has {now} messages, expected {depth}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The consumer tags on `queue` (each consumer session has its own, so a tag that changed means
/// the session was lost and reopened).
pub async fn consumer_tags(queue: &str) -> Vec<String> {
    let queue = queue.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("rabbitmqctl")
            .args(["-q", "-s", "list_consumers", "queue_name", "consumer_tag"])
            .output()
            .expect("run rabbitmqctl list_consumers");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(q, _)| *q == queue)
            .map(|(_, tag)| tag.trim().to_owned())
            .collect()
    })
    .await
    .expect("rabbitmqctl task")
}

/// Force-closes the connections whose `connection_name` client property is `name`.
pub async fn close_connections_named(name: &str) -> usize {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || close_connections_blocking(&name))
        .await
        .expect("rabbitmqctl task")
}

fn close_connections_blocking(name: &str) -> usize {
    // The table format prints pids as `<rabbit@host.1.2.0>`, which close_connection accepts (the
    // JSON formatter prints `#PID<...>`, which it does not), and client properties as an Erlang
    // term in which the name appears quoted: `{"connection_name","NAME"}`.
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "-s", "list_connections", "pid", "client_properties"])
        .output()
        .expect("run rabbitmqctl list_connections");
    assert!(
        out.status.success(),
        "rabbitmqctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    let mut closed = 0;
    for line in listing.lines().filter(|l| l.contains(&needle)) {
        let pid = line
            .split('\t')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let out = std::process::Command::new("rabbitmqctl")
            .args([
                "-q",
                "close_connection",
                &pid,
                "closed by coffer-queue test",
            ])
            .output()
            .expect("run rabbitmqctl close_connection");
        assert!(
            out.status.success(),
            "close_connection {pid} failed: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        closed += 1;
    }
    assert!(closed > 0, "no connection named {name} in:\n{listing}");
    closed
}

impl TestHandler {
    /// A handler whose deliveries nobody watches; every job is done.
    pub fn noop() -> TestHandler {
        let (seen, _) = mpsc::unbounded_channel();
        TestHandler {
            seen,
            script: script(|_| async { Outcome::Done }),
        }
    }
}
