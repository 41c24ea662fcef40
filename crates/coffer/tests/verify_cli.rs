//! `coffer verify` as operators run it, over a back-dated history whose objects are really in
//! the bucket: clean, it exits 0; then a deleted object, one overwritten with other bytes of
//! the same size, an object the catalog does not know (under the org, and under the tenant
//! outside every org), a multipart upload left open and a manifest that disagrees with the
//! catalog are each reported by kind and key, and it exits 1.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use coffer_catalog::{NewObject, ObjectKind, Sse};
use coffer_core::layout::OrgPrefix;
use coffer_core::{BackupId, OrgId, TenantId};
use coffer_storage::{BucketTarget, Encryption, MultipartWriter, UploadOptions};
use coffer_testkit::{TestEnv, history};
use serde_json::{Value, json};

use common::{coffer, run_json};

const ORG: &str = "00D000000000001AAA";

/// `coffer verify --tenant acme --json` with `extra` options: exit success and the report.
fn verify(env: &TestEnv, extra: &[&str]) -> anyhow::Result<(bool, Value)> {
    let mut cmd: Command = coffer(env);
    cmd.args(["verify", "--tenant", "acme", "--json"])
        .args(extra);
    let out = cmd.output()?;
    let report = serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::anyhow!(
            "{e}: stdout {:?}, stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.success(), report))
}

/// Every (kind, key) the report lists, the org's and the strays.
fn problems(report: &Value) -> BTreeSet<(String, String)> {
    let org = report["orgs"][0]["problems"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let stray = report["stray"].as_array().cloned().unwrap_or_default();
    org.iter()
        .chain(&stray)
        .map(|p| {
            let field = |f: &str| p[f].as_str().unwrap_or_default().to_owned();
            (field("kind"), field("key"))
        })
        .collect()
}

/// Writes `manifest.json` of `backup` listing `objects` and `files` as the worker would, and
/// records its row; returns its key.
async fn write_manifest(
    env: &TestEnv,
    prefix: &OrgPrefix,
    backup: BackupId,
    objects: Vec<Value>,
    files: Vec<Value>,
) -> anyhow::Result<String> {
    let body = serde_json::to_vec_pretty(&json!({
        "format": "coffer.backup-manifest",
        "version": 1,
        "backup_id": backup.to_string(),
        "objects": objects,
        "files": files,
    }))?;
    let target = BucketTarget {
        bucket: env.bucket.clone(),
        encryption: Encryption::SseS3,
    };
    let options = UploadOptions {
        content_type: "application/json".to_owned(),
        overwrite: true,
        ..UploadOptions::default()
    };
    let mut writer = MultipartWriter::create(
        &env.s3_client,
        &target,
        prefix.manifest_key(&backup),
        options,
    )
    .await?;
    writer.write(&body).await?;
    let written = writer.finish().await?;
    let row = NewObject {
        key: written.key.clone(),
        kind: ObjectKind::Manifest,
        sobject: None,
        part: None,
        size: written.size,
        sha256: written.sha256_hex,
        rows: 0,
    };
    env.catalog.record_object(backup, &row).await?;
    Ok(written.key)
}

/// The manifest entries of a backup's catalog rows.
async fn manifest_entries(
    env: &TestEnv,
    backup: BackupId,
) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let objects = env
        .catalog
        .backup_objects(backup)
        .await?
        .into_iter()
        .filter(|o| o.kind != ObjectKind::Manifest)
        .map(|o| json!({ "key": o.key, "sobject": o.sobject, "part": o.part, "rows": o.rows, "size": o.size, "sha256": o.sha256, "format": "csv+gzip" }))
        .collect();
    let files = env
        .catalog
        .backup_files(backup)
        .await?
        .into_iter()
        .map(|f| json!({ "source": f.source, "record_id": f.record_id, "sha256": f.sha256, "size": f.size }))
        .collect();
    Ok((objects, files))
}

async fn put(env: &TestEnv, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
    env.s3_client
        .put_object()
        .bucket(&env.bucket)
        .key(key)
        .body(bytes.to_vec().into())
        .send()
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_is_clean_on_a_sound_history_and_names_every_kind_of_damage() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    env.create_tenant_with("acme", "coffer", Sse::S3).await?;
    let (tenant, org) = (TenantId::new("acme")?, OrgId::new(ORG)?);
    common::offline_org(&env, &tenant, &org).await?;
    let (_, prefix) = history::place(&env, &tenant, &org).await?;
    let body = history::body(&env, &tenant, &org, 1).await?;
    let old = history::backup(&env, &tenant, &org, 3, 3, std::slice::from_ref(&body), 10).await?;
    let new = history::backup(&env, &tenant, &org, 3, 3, std::slice::from_ref(&body), 2).await?;
    let (objects, files) = manifest_entries(&env, new).await?;
    let manifest = write_manifest(&env, &prefix, new, objects.clone(), files.clone()).await?;

    // Clean: every object (3 + 3 parts, a manifest, a body) found and read back.
    let (ok, report) = verify(&env, &["--sample", "1"])?;
    assert!(ok, "{report}");
    let org_report = &report["orgs"][0];
    assert_eq!(org_report["org_id"], ORG, "{report}");
    assert_eq!(org_report["problems"], json!([]), "{report}");
    assert_eq!(report["stray"], json!([]), "{report}");
    assert_eq!(org_report["backups_checked"], 2, "{report}");
    assert_eq!(org_report["objects_checked"], 8, "{report}");
    assert_eq!(org_report["objects_read"], 8, "{report}");

    // Damage of every kind.
    let part = |b: BackupId, n: u32| {
        format!(
            "{}records/Account/part-{n:05}.csv.gz",
            prefix.backup_prefix(&b)
        )
    };
    let gone = part(old, 1);
    env.s3_client
        .delete_object()
        .bucket(&env.bucket)
        .key(&gone)
        .send()
        .await?;
    let corrupted = part(old, 2);
    put(&env, &corrupted, b"id,NAME\n").await?; // same 8 bytes long, other bytes
    let unknown = part(new, 99);
    put(&env, &unknown, b"id,name\n").await?;
    let stray = "coffer/acme/00D000000000002AAA/backups/x/manifest.json";
    put(&env, stray, b"{}").await?;
    let upload_key = format!(
        "{}records/Contact/part-00001.csv.gz",
        prefix.backup_prefix(&new)
    );
    let upload = env
        .s3_client
        .create_multipart_upload()
        .bucket(&env.bucket)
        .key(&upload_key)
        .send()
        .await?;
    let mut edited = objects.clone();
    edited[2]["size"] = json!(9);
    let edited_key = edited[2]["key"].as_str().unwrap_or_default().to_owned();
    write_manifest(&env, &prefix, new, edited, files).await?;

    // Sizes only: the same-size overwrite is not seen; a young upload is not stale.
    let (ok, report) = verify(&env, &["--sample", "0"])?;
    assert!(!ok);
    let found = problems(&report);
    let expected_without_reads: BTreeSet<(String, String)> = [
        ("missing", gone.as_str()),
        ("unknown_object", unknown.as_str()),
        ("unknown_object", stray),
        ("manifest_mismatch", manifest.as_str()),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(found, expected_without_reads, "{report}");
    let detail = report["orgs"][0]["problems"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["kind"] == "manifest_mismatch"))
        .and_then(|p| p["detail"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(detail.starts_with(&edited_key), "{detail}");

    // Everything read back, and uploads of any age reported.
    let (ok, report) = verify(&env, &["--sample", "1", "--stale-upload-age", "0"])?;
    assert!(!ok);
    let found = problems(&report);
    let mut expected = expected_without_reads.clone();
    expected.insert(("checksum_mismatch".to_owned(), corrupted.clone()));
    expected.insert(("open_upload".to_owned(), upload_key.clone()));
    assert_eq!(found, expected, "{report}");
    let mismatch = &report["orgs"][0]["problems"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|p| p["kind"] == "checksum_mismatch")
                .cloned()
        })
        .unwrap_or_default();
    assert_eq!(mismatch["backup_id"], old.to_string(), "{report}");

    // One org only: the stray outside it is not looked for; the human form names the kinds.
    let mut one = coffer(&env);
    one.args(["verify", "--tenant", "acme", "--org", ORG, "--sample", "0"]);
    let out = one.output()?;
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&format!("org {ORG}: 2 backups")), "{text}");
    assert!(text.contains(&format!("missing {gone}")), "{text}");
    assert!(!text.contains(stray), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("problems found"));

    // Repaired, it is clean again.
    env.s3_client
        .abort_multipart_upload()
        .bucket(&env.bucket)
        .key(&upload_key)
        .upload_id(upload.upload_id().unwrap_or_default())
        .send()
        .await?;
    for key in [unknown.as_str(), stray] {
        env.s3_client
            .delete_object()
            .bucket(&env.bucket)
            .key(key)
            .send()
            .await?;
    }
    put(&env, &gone, b"id,name\n").await?;
    put(&env, &corrupted, b"id,name\n").await?;
    write_manifest(
        &env,
        &prefix,
        new,
        objects,
        manifest_entries(&env, new).await?.1,
    )
    .await?;
    let mut clean = coffer(&env);
    clean.args([
        "verify",
        "--tenant",
        "acme",
        "--json",
        "--stale-upload-age",
        "0",
    ]);
    let report = run_json(clean)?;
    assert_eq!(report["orgs"][0]["problems"], json!([]), "{report}");
    env.cleanup().await
}
