//! The object writer and the verifying reader against the emulator (`scripts/stack up`): what a
//! backup relies on when it stores a part and a restore when it reads one back.

use coffer_storage::error::StorageError;
use coffer_storage::{
    BucketTarget, Encryption, ExpectedObject, MultipartWriter, S3Client, UploadOptions,
    UploadedObject, VerifiedReader,
};
use coffer_testkit::TestEnv;
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

fn target(env: &TestEnv) -> BucketTarget {
    BucketTarget {
        bucket: env.bucket.clone(),
        encryption: Encryption::SseKms {
            key_id: env.kms_key.arn.clone(),
            bucket_key: false,
        },
    }
}

/// Bytes that do not repeat in any short period, so a misplaced part would show.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn upload(
    client: &S3Client,
    target: &BucketTarget,
    key: &str,
    data: &[u8],
    options: UploadOptions,
) -> Result<UploadedObject, StorageError> {
    let mut writer = MultipartWriter::create(client, target, key, options).await?;
    // Odd-sized writes, so part boundaries fall inside writes.
    for chunk in data.chunks(777_777) {
        writer.write(chunk).await?;
    }
    writer.finish().await
}

async fn read_back(env: &TestEnv, key: &str) -> Vec<u8> {
    let out = env
        .s3_client
        .get_object()
        .bucket(&env.bucket)
        .key(key)
        .send()
        .await
        .expect("get object");
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

async fn open_uploads(env: &TestEnv, key: &str) -> usize {
    let out = env
        .s3_client
        .list_multipart_uploads()
        .bucket(&env.bucket)
        .prefix(key)
        .send()
        .await
        .expect("list uploads");
    out.uploads().len()
}

async fn assert_stored(env: &TestEnv, uploaded: &UploadedObject, data: &[u8]) {
    assert_eq!(read_back(env, &uploaded.key).await, data, "bytes read back");
    assert_eq!(uploaded.size, data.len() as u64);
    assert_eq!(uploaded.sha256_hex, hex::encode(Sha256::digest(data)));
    let head = env
        .s3_client
        .head_object()
        .bucket(&env.bucket)
        .key(&uploaded.key)
        .send()
        .await
        .expect("head");
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert_eq!(head.ssekms_key_id(), Some(env.kms_key.arn.as_str()));
    assert_eq!(
        open_uploads(env, &uploaded.key).await,
        0,
        "no upload left open"
    );
}

#[tokio::test]
async fn small_objects_take_one_put_and_large_ones_go_in_parts() {
    let env = TestEnv::new().await.expect("test env");
    let target = target(&env);
    let options = UploadOptions {
        part_size: 5 * MIB,
        ..UploadOptions::default()
    };

    let small = pattern(100_000);
    let one = upload(&env.s3_client, &target, "w/small", &small, options.clone())
        .await
        .expect("small upload");
    assert_eq!(one.parts, 1);
    assert_stored(&env, &one, &small).await;

    let empty = upload(&env.s3_client, &target, "w/empty", &[], options.clone())
        .await
        .expect("empty upload");
    assert_eq!(empty.parts, 1);
    assert_stored(&env, &empty, &[]).await;

    let large = pattern(12 * MIB + 3);
    let many = upload(&env.s3_client, &target, "w/large", &large, options.clone())
        .await
        .expect("large upload");
    assert_eq!(many.parts, 3, "5 MiB + 5 MiB + the rest");
    assert_stored(&env, &many, &large).await;

    env.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn an_object_already_at_the_key_is_never_replaced_unless_asked() {
    let env = TestEnv::new().await.expect("test env");
    let target = target(&env);
    let options = UploadOptions {
        part_size: 5 * MIB,
        ..UploadOptions::default()
    };
    let first_small = pattern(1000);
    let first_large = pattern(11 * MIB);
    upload(
        &env.s3_client,
        &target,
        "c/small",
        &first_small,
        options.clone(),
    )
    .await
    .expect("first small");
    upload(
        &env.s3_client,
        &target,
        "c/large",
        &first_large,
        options.clone(),
    )
    .await
    .expect("first large");

    for (key, first) in [("c/small", &first_small), ("c/large", &first_large)] {
        let other = pattern(first.len() + 1);
        let err = upload(&env.s3_client, &target, key, &other, options.clone())
            .await
            .expect_err("a second create of the same key must fail");
        assert!(
            matches!(err, StorageError::ObjectExists { ref key, .. } if key.starts_with("c/")),
            "{err:?}"
        );
        assert_eq!(&read_back(&env, key).await, first, "{key} kept its bytes");
        assert_eq!(
            open_uploads(&env, key).await,
            0,
            "the refused upload was aborted"
        );
    }

    let replacement = pattern(2000);
    let replaced = upload(
        &env.s3_client,
        &target,
        "c/small",
        &replacement,
        UploadOptions {
            overwrite: true,
            ..options
        },
    )
    .await
    .expect("overwrite when asked");
    assert_stored(&env, &replaced, &replacement).await;
    env.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn the_reader_verifies_size_and_checksum() {
    let env = TestEnv::new().await.expect("test env");
    let target = target(&env);
    let data = pattern(6 * MIB + 10);
    let uploaded = upload(
        &env.s3_client,
        &target,
        "r/obj",
        &data,
        UploadOptions::default(),
    )
    .await
    .expect("upload");
    let expected = ExpectedObject {
        size: uploaded.size,
        sha256_hex: uploaded.sha256_hex.clone(),
    };

    let mut reader = VerifiedReader::open(&env.s3_client, &env.bucket, "r/obj", expected.clone())
        .await
        .expect("open");
    let mut read = Vec::new();
    while let Some(chunk) = reader.next_chunk().await.expect("verified chunk") {
        read.extend_from_slice(&chunk);
    }
    assert_eq!(read, data);

    // The same object replaced outside Coffer: same size, one byte different.
    let mut tampered = data.clone();
    tampered[MIB] ^= 1;
    env.s3_client
        .put_object()
        .bucket(&env.bucket)
        .key("r/obj")
        .body(tampered.into())
        .send()
        .await
        .expect("tamper");
    let err = VerifiedReader::open(&env.s3_client, &env.bucket, "r/obj", expected.clone())
        .await
        .expect("open")
        .read_all()
        .await
        .expect_err("a changed byte must be caught");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("coffer verify"), "{err}");

    // A truncated object.
    env.s3_client
        .put_object()
        .bucket(&env.bucket)
        .key("r/obj")
        .body(data[..data.len() - 1].to_vec().into())
        .send()
        .await
        .expect("truncate");
    let err = VerifiedReader::open(&env.s3_client, &env.bucket, "r/obj", expected)
        .await
        .expect("open")
        .read_all()
        .await
        .expect_err("a short object must be caught");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err:?}");
    env.cleanup().await.expect("cleanup");
}
