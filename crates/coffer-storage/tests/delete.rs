//! Deleting, listing versions and aborting uploads against the emulator (`scripts/stack up`):
//! what the retention janitor relies on to remove an expired backup and everything it left.
//!
//! The emulator authorizes DeleteObjects once, as `s3:DeleteObjects` on the bucket, where AWS
//! checks `s3:DeleteObject` per key; so no IAM or bucket policy makes it refuse single keys of a
//! batch. Object Lock does: a version under legal hold is refused with a per-key `AccessDenied`,
//! on AWS as in the emulator, and that is how per-key failures are produced here.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ObjectLockLegalHold, ObjectLockLegalHoldStatus};
use coffer_storage::S3Client;
use coffer_storage::delete::{ObjectVersion, delete_objects};
use coffer_storage::list::{
    abort_upload, list_keys, list_objects, list_open_uploads, list_versions, versioning_on,
};
use coffer_testkit::TestEnv;
use tokio::task::JoinSet;

async fn put(client: &S3Client, bucket: &str, key: &str, body: &'static [u8]) -> String {
    let out = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_static(body))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    out.version_id().unwrap_or("null").to_owned()
}

/// Writes `keys`, 32 at a time.
async fn put_all(client: &S3Client, bucket: &str, keys: Vec<String>) {
    let mut running = JoinSet::new();
    for key in keys {
        if running.len() >= 32 {
            running.join_next().await.expect("a put").expect("put task");
        }
        let (client, bucket) = (client.clone(), bucket.to_owned());
        running.spawn(async move { put(&client, &bucket, &key, b"x").await });
    }
    while let Some(done) = running.join_next().await {
        done.expect("put task");
    }
}

fn current(key: &str) -> ObjectVersion {
    ObjectVersion {
        key: key.to_owned(),
        version_id: None,
    }
}

fn sorted(mut versions: Vec<ObjectVersion>) -> Vec<ObjectVersion> {
    versions.sort_by(|a, b| (&a.key, &a.version_id).cmp(&(&b.key, &b.version_id)));
    versions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_objects_under_a_prefix_are_deleted_and_the_rest_of_the_bucket_stays()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (client, bucket) = (&env.s3_client, env.bucket.as_str());
    let keys: Vec<String> = (0..2500).map(|i| format!("expired/part-{i:05}")).collect();
    put_all(client, bucket, keys.clone()).await;
    put(client, bucket, "kept/manifest.json", b"{}").await;
    let listed = list_objects(client, bucket, "expired/").await?;
    assert_eq!(listed.len(), 2500);
    assert!(
        listed
            .iter()
            .all(|o| o.size == 1 && o.last_modified.is_some())
    );

    let targets = keys.iter().map(|k| current(k)).collect();
    let outcome = delete_objects(client, bucket, targets, 4).await?;

    assert_eq!(outcome.deleted, 2500);
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert!(list_keys(client, bucket, "expired/").await?.is_empty());
    assert_eq!(
        list_keys(client, bucket, "").await?,
        vec!["kept/manifest.json".to_owned()]
    );
    // Deleting what is already gone counts as deleted.
    let again = delete_objects(client, bucket, vec![current("expired/part-00000")], 4).await?;
    assert_eq!((again.deleted, again.failed.len()), (1, 0));
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_versioned_bucket_every_version_and_marker_is_listed_and_can_be_deleted()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (client, bucket) = (&env.s3_client, env.bucket.as_str());
    assert!(
        !versioning_on(client, bucket).await?,
        "a fresh bucket never had versioning"
    );
    env.enable_versioning(bucket).await?;
    assert!(versioning_on(client, bucket).await?);

    let key = "b/part-1.csv.gz";
    let mut written = Vec::new();
    for body in [b"one".as_slice(), b"two", b"three"] {
        let out = client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await?;
        written.push(out.version_id().expect("a version id").to_owned());
    }
    put(client, bucket, "other/kept", b"k").await;

    let outcome = delete_objects(client, bucket, vec![current(key)], 4).await?;
    assert_eq!((outcome.deleted, outcome.failed.len()), (1, 0));
    assert!(
        list_keys(client, bucket, "b/").await?.is_empty(),
        "the marker hides the key"
    );

    let versions = list_versions(client, bucket, "b/").await?;
    assert_eq!(
        versions.len(),
        4,
        "three versions and a marker: {versions:?}"
    );
    assert!(versions.iter().all(|v| v.key == key));
    let ids: Vec<&str> = versions
        .iter()
        .filter_map(|v| v.version_id.as_deref())
        .collect();
    assert_eq!(ids.len(), 4, "each with its version id");
    for id in &written {
        assert!(ids.contains(&id.as_str()), "version {id} listed");
    }

    let outcome = delete_objects(client, bucket, versions, 4).await?;
    assert_eq!((outcome.deleted, outcome.failed.len()), (4, 0));
    assert!(list_versions(client, bucket, "b/").await?.is_empty());
    assert_eq!(list_versions(client, bucket, "other/").await?.len(), 1);
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_listed_across_pages() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (client, bucket) = (&env.s3_client, env.bucket.as_str());
    env.enable_versioning(bucket).await?;
    // 350 keys of two versions and a marker each: 1,050 entries, two pages of at most 1,000.
    // The first page ends inside key 333, so the second starts from its version-id marker.
    let keys: Vec<String> = (0..350).map(|i| format!("v/{i:04}")).collect();
    put_all(client, bucket, keys.clone()).await;
    put_all(client, bucket, keys.clone()).await;
    let targets = keys.iter().map(|k| current(k)).collect();
    assert_eq!(
        delete_objects(client, bucket, targets, 4).await?.deleted,
        350
    );

    let versions = sorted(list_versions(client, bucket, "v/").await?);
    assert_eq!(versions.len(), 1050);
    let mut distinct = versions.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 1050, "no entry listed twice");

    let outcome = delete_objects(client, bucket, versions, 4).await?;
    assert_eq!((outcome.deleted, outcome.failed.len()), (1050, 0));
    assert!(list_versions(client, bucket, "v/").await?.is_empty());
    env.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_upload_is_listed_with_its_start_and_aborted() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (client, bucket) = (&env.s3_client, env.bucket.as_str());
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key("u/interrupted.csv.gz")
        .send()
        .await?;
    let upload_id = created.upload_id().expect("an upload id");

    let open = list_open_uploads(client, bucket, "u/").await?;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].key, "u/interrupted.csv.gz");
    assert_eq!(open[0].upload_id, upload_id);
    let initiated = open[0].initiated.expect("initiated is set");
    let age = time::OffsetDateTime::now_utc() - initiated;
    assert!(
        age.unsigned_abs() < Duration::from_secs(300),
        "initiated {initiated} is not within minutes of now"
    );

    abort_upload(client, bucket, &open[0]).await?;
    assert!(list_open_uploads(client, bucket, "u/").await?.is_empty());
    abort_upload(client, bucket, &open[0]).await?;
    env.cleanup().await
}

async fn set_legal_hold(client: &S3Client, bucket: &str, target: &ObjectVersion, on: bool) {
    let status = if on {
        ObjectLockLegalHoldStatus::On
    } else {
        ObjectLockLegalHoldStatus::Off
    };
    client
        .put_object_legal_hold()
        .bucket(bucket)
        .key(&target.key)
        .set_version_id(target.version_id.clone())
        .legal_hold(ObjectLockLegalHold::builder().status(status).build())
        .send()
        .await
        .expect("put legal hold");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_the_store_refuses_come_back_with_their_code_and_the_others_are_deleted()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let client = &env.s3_client;
    let bucket = format!("{}-lock", env.bucket);
    client
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await?;
    let keys: Vec<String> = (0..10).map(|i| format!("p/{i}")).collect();
    put_all(client, &bucket, keys).await;
    let versions = sorted(list_versions(client, &bucket, "p/").await?);
    assert_eq!(versions.len(), 10);
    let held = vec![versions[3].clone(), versions[7].clone()];
    for target in &held {
        set_legal_hold(client, &bucket, target, true).await;
    }

    let outcome = delete_objects(client, &bucket, versions, 4).await?;

    assert_eq!(outcome.deleted, 8);
    let mut refused: Vec<ObjectVersion> = outcome
        .failed
        .iter()
        .map(|f| ObjectVersion {
            key: f.key.clone(),
            version_id: f.version_id.clone(),
        })
        .collect();
    refused.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(refused, held);
    for failure in &outcome.failed {
        assert_eq!(failure.code, "AccessDenied", "{failure:?}");
        assert!(!failure.is_retryable());
    }
    assert_eq!(sorted(list_versions(client, &bucket, "p/").await?), held);

    // Released, the held versions go.
    for target in &held {
        set_legal_hold(client, &bucket, target, false).await;
    }
    let outcome = delete_objects(client, &bucket, held, 1).await?;
    assert_eq!((outcome.deleted, outcome.failed.len()), (2, 0));
    assert!(list_versions(client, &bucket, "p/").await?.is_empty());
    env.cleanup().await
}
