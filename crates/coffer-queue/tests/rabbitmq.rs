//! Integration tests against the local RabbitMQ (`COFFER_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`). Each test uses its own prefix and deletes its
//! topology at the end.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use coffer_core::{Classify, ErrorClass};
use coffer_queue::{Broker, Outcome, OutgoingJob, QueueError, run_consumer};
use common::{Harness, consumer_tags, script, test_config, wait_dead_letter, wait_depth};

#[tokio::test]
async fn published_jobs_are_consumed_and_acked() {
    let mut h = Harness::start(test_config(), script(|_| async { Outcome::Done })).await;
    for id in ["job-1", "job-2", "job-3"] {
        h.publish(id).await;
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        let d = h.next().await;
        assert_eq!(d.kind.as_deref(), Some("backup_requested"));
        assert_eq!(d.attempt, 0);
        assert!(!d.redelivered);
        assert_eq!(
            Some(d.payload.as_slice()),
            d.message_id.as_deref().map(str::as_bytes)
        );
        ids.push(d.message_id.unwrap_or_default());
    }
    ids.sort();
    assert_eq!(ids, ["job-1", "job-2", "job-3"]);
    h.stop_consumer().await;
    wait_depth(&h.broker, &h.jobs_queue(), 0).await;
    assert!(h.broker.get_dead_letter().await.unwrap().is_none());
    h.finish().await;
}

#[tokio::test]
async fn rejected_job_is_dead_lettered_and_consumer_continues() {
    let mut h = Harness::start(
        test_config(),
        script(|d| async move {
            if d.message_id.as_deref() == Some("bad") {
                Outcome::Reject {
                    reason: "unknown tenant acme".into(),
                    class: ErrorClass::Permanent,
                }
            } else {
                Outcome::Done
            }
        }),
    )
    .await;
    h.publish("bad").await;
    assert_eq!(h.next().await.message_id.as_deref(), Some("bad"));
    let letter = wait_dead_letter(&h.broker).await;
    assert_eq!(letter.message_id.as_deref(), Some("bad"));
    assert_eq!(letter.reason.as_deref(), Some("unknown tenant acme"));
    assert_eq!(letter.class.as_deref(), Some("permanent"));
    assert_eq!(letter.attempts, 1);
    assert_eq!(letter.payload, b"bad");
    assert_eq!(letter.death_count, None);

    h.publish("good").await;
    assert_eq!(h.next().await.message_id.as_deref(), Some("good"));
    h.stop_consumer().await;
    wait_depth(&h.broker, &h.jobs_queue(), 0).await;
    assert!(h.broker.get_dead_letter().await.unwrap().is_none());
    h.finish().await;
}

#[tokio::test]
async fn long_reasons_are_truncated() {
    let mut h = Harness::start(
        test_config(),
        script(|_| async {
            Outcome::Reject {
                reason: "é".repeat(2000),
                class: ErrorClass::Permanent,
            }
        }),
    )
    .await;
    h.publish("long").await;
    h.next().await;
    let letter = wait_dead_letter(&h.broker).await;
    let reason = letter.reason.unwrap();
    assert!(
        reason.len() <= 1024 && reason.len() >= 1000,
        "{}",
        reason.len()
    );
    h.finish().await;
}

#[tokio::test]
async fn retried_job_comes_back_after_the_delay_then_is_dead_lettered() {
    let mut h = Harness::start(
        test_config(),
        script(|_| async {
            Outcome::Retry {
                reason: "salesforce busy".into(),
            }
        }),
    )
    .await;
    h.publish("flaky").await;
    let mut last = Instant::now();
    for expected in 0..3 {
        let d = h.next().await;
        assert_eq!(d.message_id.as_deref(), Some("flaky"));
        assert_eq!(d.attempt, expected);
        assert_eq!(d.kind.as_deref(), Some("backup_requested"));
        if expected > 0 {
            let waited = last.elapsed();
            assert!(
                waited >= Duration::from_millis(180),
                "retried after only {waited:?}"
            );
        }
        last = Instant::now();
    }
    let letter = wait_dead_letter(&h.broker).await;
    assert_eq!(
        letter.reason.as_deref(),
        Some("gave up after 3 attempts: salesforce busy")
    );
    assert_eq!(letter.class.as_deref(), Some("retryable"));
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.message_id.as_deref(), Some("flaky"));
    // Nothing else comes back.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), h.seen.recv())
            .await
            .is_err()
    );
    h.finish().await;
}

#[tokio::test]
async fn deferred_job_waits_in_the_parked_queue_without_using_up_attempts() {
    let mut cfg = test_config();
    cfg.park_delay = Duration::from_millis(300);
    // More deferrals than max_attempts (3): a deferral is not a failure.
    let mut h = Harness::start(
        cfg,
        script(|_| async {
            Outcome::Defer {
                reason: "org paused".into(),
            }
        }),
    )
    .await;
    h.publish("paused").await;
    let mut last = Instant::now();
    for round in 0..5 {
        let d = h.next().await;
        assert_eq!(d.message_id.as_deref(), Some("paused"));
        assert_eq!(
            d.attempt, 0,
            "round {round}: a deferral counted as an attempt"
        );
        if round > 0 {
            let waited = last.elapsed();
            assert!(
                waited >= Duration::from_millis(280),
                "deferred for only {waited:?}"
            );
        }
        last = Instant::now();
    }
    assert!(h.broker.get_dead_letter().await.unwrap().is_none());
    let parked = h.broker.topology().parked_queue().name.clone();
    h.stop_consumer().await;
    // The job is parked or back in the jobs queue: never lost.
    let depth = h.broker.queue_depth(&parked).await.unwrap()
        + h.broker.queue_depth(&h.jobs_queue()).await.unwrap();
    assert_eq!(depth, 1);
    h.finish().await;
}

#[tokio::test]
async fn a_delivery_held_past_max_hold_is_handed_over_to_a_parked_copy() {
    let mut cfg = test_config();
    cfg.max_hold = Duration::from_millis(300);
    cfg.park_delay = Duration::from_millis(1500);
    cfg.drain_timeout = Duration::from_millis(100);
    // The handler outlives max_hold; then this worker stops before it ends.
    let mut h = Harness::start(
        cfg,
        script(|_| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Outcome::Done
        }),
    )
    .await;
    h.publish("long").await;
    assert_eq!(h.next().await.message_id.as_deref(), Some("long"));
    let parked = h.broker.topology().parked_queue().name.clone();
    wait_depth(&h.broker, &parked, 1).await;
    h.stop_consumer().await;
    // The original was acked at the hand-over (a held delivery would be back in the jobs queue
    // now that its consumer is gone) ...
    assert_eq!(h.broker.queue_depth(&h.jobs_queue()).await.unwrap(), 0);
    // ... and the parked copy brings the job back, its attempt count unchanged.
    wait_depth(&h.broker, &h.jobs_queue(), 1).await;
    assert_eq!(h.broker.queue_depth(&parked).await.unwrap(), 0);
    assert!(h.broker.get_dead_letter().await.unwrap().is_none());
    h.finish().await;
}

#[tokio::test]
async fn a_handed_over_delivery_is_settled_by_copies_only() {
    let mut cfg = test_config();
    cfg.max_hold = Duration::from_millis(200);
    cfg.park_delay = Duration::from_secs(60);
    let mut h = Harness::start(
        cfg,
        script(|d| async move {
            if d.message_id.as_deref() == Some("slow") {
                tokio::time::sleep(Duration::from_millis(700)).await;
                Outcome::Reject {
                    reason: "bad".into(),
                    class: coffer_core::ErrorClass::Permanent,
                }
            } else {
                Outcome::Done
            }
        }),
    )
    .await;
    let session = consumer_tags(&h.jobs_queue()).await;
    assert_eq!(session.len(), 1);
    h.publish("slow").await;
    assert_eq!(h.next().await.message_id.as_deref(), Some("slow"));
    let letter = wait_dead_letter(&h.broker).await;
    assert_eq!(letter.message_id.as_deref(), Some("slow"));
    // Settling the handed-over delivery did not ack it twice (which the broker answers by
    // closing the channel): the same consumer session takes the next job.
    h.publish("next").await;
    assert_eq!(h.next().await.message_id.as_deref(), Some("next"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(consumer_tags(&h.jobs_queue()).await, session);
    h.finish().await;
}

#[tokio::test]
async fn retry_then_success_is_acked() {
    let mut h = Harness::start(
        test_config(),
        script(|d| async move {
            if d.attempt == 0 {
                Outcome::Retry {
                    reason: "once".into(),
                }
            } else {
                Outcome::Done
            }
        }),
    )
    .await;
    h.publish("j").await;
    assert_eq!(h.next().await.attempt, 0);
    assert_eq!(h.next().await.attempt, 1);
    h.stop_consumer().await;
    wait_depth(&h.broker, &h.jobs_queue(), 0).await;
    let retry_queue = h.broker.topology().retry_queues()[0].name.clone();
    wait_depth(&h.broker, &retry_queue, 0).await;
    assert!(h.broker.get_dead_letter().await.unwrap().is_none());
    h.finish().await;
}

#[tokio::test]
async fn handler_panic_is_retried_and_consumer_keeps_going() {
    let mut h = Harness::start(
        test_config(),
        script(|d| async move {
            if d.message_id.as_deref() == Some("boom") && d.attempt == 0 {
                panic!("simulated handler bug");
            }
            Outcome::Done
        }),
    )
    .await;
    h.publish("boom").await;
    let first = h.next().await;
    assert_eq!(
        (first.message_id.as_deref(), first.attempt),
        (Some("boom"), 0)
    );
    let again = h.next().await;
    assert_eq!(
        (again.message_id.as_deref(), again.attempt),
        (Some("boom"), 1)
    );
    h.publish("after").await;
    assert_eq!(h.next().await.message_id.as_deref(), Some("after"));
    h.stop_consumer().await;
    wait_depth(&h.broker, &h.jobs_queue(), 0).await;
    assert!(h.broker.get_dead_letter().await.unwrap().is_none());
    h.finish().await;
}

#[tokio::test]
async fn publishing_to_a_missing_exchange_fails_and_publisher_recovers() {
    let cfg = test_config();
    let broker = Broker::connect(&cfg).await.unwrap();
    let publisher = broker.publisher().await.unwrap();
    let job = OutgoingJob {
        message_id: "j",
        kind: "k",
        tenant: None,
        payload: b"x",
    };
    let err = publisher.publish_job(job).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(
        err.to_string().contains("NOT_FOUND") || err.to_string().contains("not found"),
        "{err}"
    );
    // The broker closed the channel; the next publish opens a new one.
    broker.declare_topology().await.unwrap();
    publisher.publish_job(job).await.unwrap();
    assert_eq!(
        broker
            .queue_depth(broker.topology().jobs_queue())
            .await
            .unwrap(),
        1
    );
    broker.delete_topology().await.unwrap();
}

#[tokio::test]
async fn unroutable_job_is_an_error() {
    let cfg = test_config();
    let broker = Broker::connect(&cfg).await.unwrap();
    broker.declare_topology().await.unwrap();
    // Remove the only queue bound to the jobs exchange, leaving the exchange in place.
    let conn =
        lapin::Connection::connect(&common::amqp_url(), lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(broker.topology().jobs_queue().into(), Default::default())
        .await
        .unwrap();
    let publisher = broker.publisher().await.unwrap();
    let job = OutgoingJob {
        message_id: "j",
        kind: "k",
        tenant: None,
        payload: b"x",
    };
    let err = publisher.publish_job(job).await.unwrap_err();
    assert!(
        matches!(
            err,
            QueueError::Unroutable {
                reply_code: 312,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    // Events are not mandatory: nobody listening is fine.
    publisher
        .publish_event("backup.completed", b"e")
        .await
        .unwrap();
    broker.delete_topology().await.unwrap();
}

#[tokio::test]
async fn declare_is_idempotent_and_a_mismatch_is_permanent() {
    let cfg = test_config();
    let broker = Broker::connect(&cfg).await.unwrap();
    broker.declare_topology().await.unwrap();
    broker.declare_topology().await.unwrap();
    let mut other = cfg.clone();
    other.delivery_limit += 1;
    let mismatched = Broker::connect(&other).await.unwrap();
    let err = mismatched.declare_topology().await.unwrap_err();
    assert!(
        matches!(err, QueueError::TopologyMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    // The consumer gives up on a permanent error instead of looping.
    let handler = std::sync::Arc::new(common::TestHandler::noop());
    let run = run_consumer(other, handler, tokio_util::sync::CancellationToken::new());
    let err = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, QueueError::TopologyMismatch { .. }),
        "{err:?}"
    );
    broker.delete_topology().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_leaves_unfinished_job_unacked() {
    let mut h = Harness::start(
        test_config(),
        script(|_| async {
            std::future::pending::<()>().await;
            Outcome::Done
        }),
    )
    .await;
    h.publish("long-job").await;
    h.next().await;
    let started = Instant::now();
    h.stop_consumer().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_depth(&h.broker, &h.jobs_queue(), 1).await;
    assert!(h.broker.get_dead_letter().await.unwrap().is_none());
    h.broker.delete_topology().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_waits_for_in_flight_job() {
    let mut cfg = test_config();
    cfg.drain_timeout = Duration::from_secs(5);
    let mut h = Harness::start(
        cfg,
        script(|_| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Outcome::Done
        }),
    )
    .await;
    h.publish("short-job").await;
    h.next().await;
    h.stop_consumer().await;
    wait_depth(&h.broker, &h.jobs_queue(), 0).await;
    // Acked, not requeued: it stays at 0.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.broker.queue_depth(&h.jobs_queue()).await.unwrap(), 0);
    h.finish().await;
}

#[tokio::test]
async fn consumer_reconnects_after_connection_is_closed() {
    let mut h = Harness::start(
        test_config(),
        script(|d| async move {
            if d.message_id.as_deref() == Some("in-flight") && !d.redelivered {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Outcome::Done
        }),
    )
    .await;
    h.publish("in-flight").await;
    let first = h.next().await;
    assert!(!first.redelivered);
    let name = format!("{}.consumer", h.cfg.prefix);
    assert_eq!(common::close_connections_named(&name).await, 1);
    let again = h.next().await;
    assert_eq!(again.message_id.as_deref(), Some("in-flight"));
    assert!(
        again.redelivered,
        "the broker requeued the unacked delivery"
    );
    assert_eq!(again.attempt, 0);
    h.publish("after").await;
    assert_eq!(h.next().await.message_id.as_deref(), Some("after"));
    h.stop_consumer().await;
    wait_depth(&h.broker, &h.jobs_queue(), 0).await;
    h.finish().await;
}

#[tokio::test]
async fn broker_dead_letters_a_job_over_the_delivery_limit() {
    let mut cfg = test_config();
    cfg.delivery_limit = 1;
    // Simulates a job that crashes the worker: it never finishes, the connection dies each time.
    let mut h = Harness::start(
        cfg,
        script(|_| async {
            std::future::pending::<()>().await;
            Outcome::Done
        }),
    )
    .await;
    h.publish("poison").await;
    let name = format!("{}.consumer", h.cfg.prefix);
    for _ in 0..2 {
        assert_eq!(h.next().await.message_id.as_deref(), Some("poison"));
        assert_eq!(common::close_connections_named(&name).await, 1);
    }
    let letter = wait_dead_letter(&h.broker).await;
    assert_eq!(letter.message_id.as_deref(), Some("poison"));
    assert!(letter.death_count.is_some(), "{letter:?}");
    assert!(
        letter
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("delivery_limit"),
        "{letter:?}"
    );
    assert_eq!(letter.class, None);
    eprintln!("broker dead letter: {letter:?}");
    h.finish().await;
}

#[tokio::test]
async fn malformed_messages_reach_the_handler() {
    let mut h = Harness::start(
        test_config(),
        script(|d| async move {
            if d.message_id.is_none() {
                Outcome::Reject {
                    reason: "malformed job: no message id".into(),
                    class: ErrorClass::Permanent,
                }
            } else {
                Outcome::Done
            }
        }),
    )
    .await;
    h.publisher
        .publish_raw_job(b"\xff\x00garbage")
        .await
        .unwrap();
    let d = h.next().await;
    assert_eq!((d.message_id, d.kind, d.attempt), (None, None, 0));
    let letter = wait_dead_letter(&h.broker).await;
    assert_eq!(letter.payload, b"\xff\x00garbage");
    assert_eq!(letter.class.as_deref(), Some("permanent"));
    h.finish().await;
}

#[tokio::test]
async fn wrong_credentials_are_not_shown_in_errors() {
    let mut cfg = test_config();
    cfg.amqp_url = coffer_core::secret::SecretString::from(
        "amqp://guest:wr0ng-s3cret@127.0.0.1:5672/%2f".to_owned(),
    );
    let err = Broker::connect(&cfg).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("wr0ng-s3cret"), "{shown}");
    eprintln!("wrong credentials: {err} (class {})", err.class());
}

#[tokio::test]
async fn queue_stats_count_the_messages_and_consumers_of_every_queue() {
    use coffer_queue::{QueueCounts, QueueRole};
    let cfg = test_config();
    let broker = Broker::connect(&cfg).await.unwrap();
    let before = broker.queue_stats().await.unwrap();
    assert!(
        before.iter().all(|q| q.counts.is_none()),
        "nothing declared yet, and a passive declare creates nothing: {before:?}"
    );
    broker.declare_topology().await.unwrap();
    let publisher = broker.publisher().await.unwrap();
    for id in ["job-1", "job-2"] {
        publisher
            .publish_job(OutgoingJob {
                message_id: id,
                kind: "backup_requested",
                tenant: Some("acme"),
                payload: id.as_bytes(),
            })
            .await
            .unwrap();
    }
    let stats = broker.queue_stats().await.unwrap();
    let roles: Vec<QueueRole> = stats.iter().map(|q| q.role).collect();
    assert_eq!(
        roles,
        [
            QueueRole::Jobs,
            QueueRole::Retry(Duration::from_millis(200)),
            QueueRole::Parked,
            QueueRole::DeadLetter
        ]
    );
    assert_eq!(stats[0].name, broker.topology().jobs_queue());
    let counts: Vec<Option<QueueCounts>> = stats.iter().map(|q| q.counts).collect();
    let none = Some(QueueCounts {
        messages: 0,
        consumers: 0,
    });
    assert_eq!(
        counts,
        [
            Some(QueueCounts {
                messages: 2,
                consumers: 0
            }),
            none,
            none,
            none
        ]
    );

    // A consumer takes both jobs and stays attached.
    let mut h = Harness::start(cfg, script(|_| async { Outcome::Done })).await;
    h.next().await;
    h.next().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let jobs = broker.queue_stats().await.unwrap()[0].counts;
        if jobs
            == Some(QueueCounts {
                messages: 0,
                consumers: 1,
            })
        {
            break;
        }
        assert!(Instant::now() < deadline, "jobs queue: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.close().await.unwrap();
    h.finish().await;
}
