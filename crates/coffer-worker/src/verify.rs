//! `coffer verify`: the storage and the catalog agree, for every org of a tenant.
//!
//! In every storage the tenant uses, for each org: every object row of every settled backup
//! (not `running` nor `expiring`: their objects are in flux) and every file body row has its
//! object with the recorded size; a sampled share of them (all with a share of 1) is read back
//! in full and its SHA-256 checked ([`VerifiedReader`]; a file body's SHA-256 is its content
//! address); nothing under the org's prefix is unknown to the catalog (restore reports aside);
//! no multipart upload has been open longer than the stale age; and each backup's
//! `manifest.json`, where the catalog records one, lists the same objects and file references
//! as the catalog. Checking the whole tenant also reports objects under the tenant's prefix
//! that belong to no org the catalog knows.
//!
//! Every disagreement is a [`Problem`] with a stable [`ProblemKind`]; failing to reach the
//! catalog or to list a storage is an error instead (nothing could be concluded).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use coffer_catalog::{BackupRecord, BackupState, Catalog, ObjectKind, StorageRecord};
use coffer_core::layout::{OrgPrefix, tenant_prefix};
use coffer_core::{BackupId, OrgId, TenantId};
use coffer_storage::list::{list_objects, list_open_uploads};
use coffer_storage::{ExpectedObject, S3Client, StorageError, VerifiedReader};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use time::OffsetDateTime;

use crate::error::WorkerError;
use crate::storage::StorageClients;

/// Objects read back at once.
const READS_IN_FLIGHT: usize = 8;

/// How thoroughly to verify.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerifySettings {
    /// Share (0 to 1) of the objects read back in full and their SHA-256 checked; 1 reads
    /// every object, 0 checks presence and sizes only (manifests are always read).
    pub sample: f64,
    /// A multipart upload open longer than this is reported.
    pub stale_upload_age: Duration,
    /// Chooses the sampled objects: the same seed chooses the same objects again.
    pub seed: u64,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            sample: 1.0,
            stale_upload_age: Duration::from_secs(86_400),
            seed: 0,
        }
    }
}

/// What kind of disagreement (stable names, for scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The catalog has a row, the storage has no object.
    Missing,
    /// The object's size differs from the catalog's.
    SizeMismatch,
    /// Read back, the object's SHA-256 differs from the catalog's.
    ChecksumMismatch,
    /// An object no catalog row accounts for.
    UnknownObject,
    /// A multipart upload open longer than the stale age.
    OpenUpload,
    /// A manifest lists objects or files otherwise than the catalog.
    ManifestMismatch,
    /// The object could not be read back (or its manifest not parsed).
    Unreadable,
}

impl ProblemKind {
    /// The stable name (as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::SizeMismatch => "size_mismatch",
            ProblemKind::ChecksumMismatch => "checksum_mismatch",
            ProblemKind::UnknownObject => "unknown_object",
            ProblemKind::OpenUpload => "open_upload",
            ProblemKind::ManifestMismatch => "manifest_mismatch",
            ProblemKind::Unreadable => "unreadable",
        }
    }
}

/// One disagreement between a storage and the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The object key (for an open upload, the key it would create).
    pub key: String,
    /// The backup whose row or manifest it concerns, if any (none for file bodies, unknown
    /// objects and uploads).
    pub backup_id: Option<BackupId>,
    /// What was expected and what was found.
    pub detail: String,
}

impl Problem {
    fn new(kind: ProblemKind, key: &str, backup_id: Option<BackupId>, detail: String) -> Self {
        Problem {
            kind,
            key: key.to_owned(),
            backup_id,
            detail,
        }
    }
}

/// What was verified of one org, in every storage.
#[derive(Debug, Clone, Serialize)]
pub struct OrgReport {
    /// The org.
    pub org_id: OrgId,
    /// Backups whose objects were checked (not running nor expiring).
    pub backups_checked: u64,
    /// Catalog objects (parts, manifests, file bodies) looked for.
    pub objects_checked: u64,
    /// Objects read back in full (the sample and the manifests).
    pub objects_read: u64,
    /// Bytes read back.
    pub bytes_read: u64,
    /// What disagrees; empty when all is well.
    pub problems: Vec<Problem>,
}

/// What `coffer verify` found for a tenant.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The share read back.
    pub sample: f64,
    /// The seed that chose the sample (run again with it to read the same objects).
    pub seed: u64,
    /// Per org.
    pub orgs: Vec<OrgReport>,
    /// Objects under the tenant's prefix outside every org the catalog knows (checked only
    /// when the whole tenant is verified).
    pub stray: Vec<Problem>,
}

impl VerifyReport {
    /// Problems found, over every org and the strays.
    pub fn problem_count(&self) -> usize {
        self.stray.len() + self.orgs.iter().map(|o| o.problems.len()).sum::<usize>()
    }

    /// Whether nothing disagrees.
    pub fn is_clean(&self) -> bool {
        self.problem_count() == 0
    }
}

/// Whether `key` is in the sample of `share` chosen by `seed`: its seeded SHA-256, as a
/// fraction of the u64 range, falls below the share. A share of 1 (or more) chooses every key.
pub fn sampled(seed: u64, share: f64, key: &str) -> bool {
    if share >= 1.0 {
        return true;
    }
    if share.is_nan() || share <= 0.0 {
        return false;
    }
    let digest = sha2::Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    #[allow(clippy::cast_precision_loss)] // a fraction: precision beyond 2^-53 does not matter
    let fraction = u64::from_le_bytes(first) as f64 / (u64::MAX as f64 + 1.0);
    fraction < share
}

/// Verifies every org of `tenant` (or only `org`) in every storage the tenant uses.
pub async fn verify_tenant(
    catalog: &Catalog,
    storage: &StorageClients,
    tenant: &TenantId,
    org: Option<&OrgId>,
    settings: &VerifySettings,
) -> Result<VerifyReport, WorkerError> {
    if catalog.tenant(tenant).await?.is_none() {
        return Err(WorkerError::UnknownTenant(tenant.to_string()));
    }
    let orgs: Vec<OrgId> = match org {
        Some(org) => vec![org.clone()],
        None => catalog
            .orgs_of(tenant)
            .await?
            .into_iter()
            .map(|o| o.org_id)
            .collect(),
    };
    let verifier = Verifier {
        catalog,
        storage,
        tenant,
        settings,
        now: catalog.now().await?,
    };
    let storages = storages_of(catalog, tenant).await?;
    let mut report = VerifyReport {
        tenant_id: tenant.clone(),
        sample: settings.sample,
        seed: settings.seed,
        orgs: Vec::new(),
        stray: Vec::new(),
    };
    for org in &orgs {
        report.orgs.push(verifier.org(org, &storages).await?);
    }
    if org.is_none()
        && let Some(first) = orgs.first()
    {
        for place in &storages {
            report
                .stray
                .extend(verifier.strays(place, first, &orgs).await?);
        }
    }
    Ok(report)
}

async fn storages_of(
    catalog: &Catalog,
    tenant: &TenantId,
) -> Result<Vec<StorageRecord>, WorkerError> {
    let mut storages = Vec::new();
    for id in catalog.storages_in_use(tenant).await? {
        storages.push(catalog.storage(id).await?);
    }
    Ok(storages)
}

/// A catalog object expected in a storage.
#[derive(Debug, Clone)]
struct Expected {
    key: String,
    size: u64,
    sha256: String,
    backup_id: Option<BackupId>,
    /// Manifests are read for their own check, not sampled.
    manifest: bool,
}

/// One org in one storage: the client, where, and what the catalog says is there.
struct Place<'a> {
    client: S3Client,
    storage: &'a StorageRecord,
    prefix: OrgPrefix,
    backups: Vec<BackupRecord>,
}

impl Place<'_> {
    fn bucket(&self) -> &str {
        &self.storage.settings.bucket
    }
}

struct Verifier<'a> {
    catalog: &'a Catalog,
    storage: &'a StorageClients,
    tenant: &'a TenantId,
    settings: &'a VerifySettings,
    now: OffsetDateTime,
}

impl Verifier<'_> {
    async fn org(&self, org: &OrgId, storages: &[StorageRecord]) -> Result<OrgReport, WorkerError> {
        let mut out = OrgReport {
            org_id: org.clone(),
            backups_checked: 0,
            objects_checked: 0,
            objects_read: 0,
            bytes_read: 0,
            problems: Vec::new(),
        };
        let backups = self.catalog.backups_of(self.tenant, org).await?;
        for storage in storages {
            let place = Place {
                client: self.storage.client_for(storage, org, "verify").await?,
                storage,
                prefix: OrgPrefix::new(&storage.settings.base_path, self.tenant, org),
                backups: backups
                    .iter()
                    .filter(|b| b.storage_id == storage.storage_id)
                    .cloned()
                    .collect(),
            };
            self.org_in(&place, org, &mut out).await?;
        }
        Ok(out)
    }

    /// Checks one org in one storage, adding to `out`.
    async fn org_in(
        &self,
        place: &Place<'_>,
        org: &OrgId,
        out: &mut OrgReport,
    ) -> Result<(), WorkerError> {
        let root = format!("{}/", place.prefix.as_str());
        let listed: BTreeMap<String, u64> = list_objects(&place.client, place.bucket(), &root)
            .await?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        let settled: Vec<&BackupRecord> = place.backups.iter().filter(|b| !in_flux(b)).collect();
        out.backups_checked += settled.len() as u64;
        let mut expected = Vec::new();
        for backup in &settled {
            expected.extend(self.backup_objects(backup.backup_id).await?);
        }
        expected.extend(self.file_bodies(place.storage.storage_id, org).await?);
        out.objects_checked += expected.len() as u64;
        let present = compare(&expected, &listed, &mut out.problems);
        out.problems.extend(unknown(place, &expected, &listed));
        out.problems.extend(self.open_uploads(place, &root).await?);
        let sample: Vec<&Expected> = present
            .into_iter()
            .filter(|e| !e.manifest && sampled(self.settings.seed, self.settings.sample, &e.key))
            .collect();
        read_back(place, &sample, out).await;
        for backup in settled {
            let manifest = expected
                .iter()
                .find(|e| e.manifest && e.backup_id == Some(backup.backup_id));
            if let Some(manifest) = manifest
                && listed.get(&manifest.key) == Some(&manifest.size)
            {
                let rows = rows_of(&expected, backup.backup_id);
                self.manifest(place, (backup.backup_id, rows), manifest, out)
                    .await?;
            }
        }
        Ok(())
    }

    async fn backup_objects(&self, backup_id: BackupId) -> Result<Vec<Expected>, WorkerError> {
        Ok(self
            .catalog
            .backup_objects(backup_id)
            .await?
            .into_iter()
            .map(|o| Expected {
                manifest: o.kind == ObjectKind::Manifest,
                key: o.key,
                size: o.size,
                sha256: o.sha256,
                backup_id: Some(backup_id),
            })
            .collect())
    }

    async fn file_bodies(
        &self,
        storage_id: u64,
        org: &OrgId,
    ) -> Result<Vec<Expected>, WorkerError> {
        let mut bodies = Vec::new();
        for sha in self.catalog.file_shas(self.tenant, org, storage_id).await? {
            if let Some(body) = self
                .catalog
                .file_object(self.tenant, org, storage_id, &sha)
                .await?
            {
                bodies.push(Expected {
                    key: body.key,
                    size: body.size,
                    sha256: body.sha256,
                    backup_id: None,
                    manifest: false,
                });
            }
        }
        Ok(bodies)
    }

    /// Uploads under `root` open longer than the stale age.
    async fn open_uploads(
        &self,
        place: &Place<'_>,
        root: &str,
    ) -> Result<Vec<Problem>, WorkerError> {
        let age =
            time::Duration::try_from(self.settings.stale_upload_age).unwrap_or(time::Duration::MAX);
        let open = list_open_uploads(&place.client, place.bucket(), root).await?;
        Ok(open
            .into_iter()
            .filter_map(|upload| {
                let started = upload.initiated?;
                (self.now - started >= age).then(|| {
                    Problem::new(
                        ProblemKind::OpenUpload,
                        &upload.key,
                        None,
                        format!("upload {} open since {started}", upload.upload_id),
                    )
                })
            })
            .collect())
    }

    /// Reads a backup's manifest and compares it with the backup's catalog rows.
    async fn manifest(
        &self,
        place: &Place<'_>,
        (backup_id, catalog_objects): (BackupId, BTreeMap<String, (u64, String)>),
        manifest: &Expected,
        out: &mut OrgReport,
    ) -> Result<(), WorkerError> {
        let (read, bytes) = read_one(place, manifest, true).await;
        out.objects_read += 1;
        out.bytes_read += bytes;
        let body = match read {
            Ok(body) => body,
            Err(problem) => {
                out.problems.push(problem);
                return Ok(());
            }
        };
        let parsed: ManifestDoc = match serde_json::from_slice(&body) {
            Ok(doc) => doc,
            Err(e) => {
                let detail = format!("not a manifest: {e}");
                out.problems.push(Problem::new(
                    ProblemKind::Unreadable,
                    &manifest.key,
                    Some(backup_id),
                    detail,
                ));
                return Ok(());
            }
        };
        let catalog_files = self
            .catalog
            .backup_files(backup_id)
            .await?
            .into_iter()
            .map(|f| ((f.source, f.record_id), f.sha256))
            .collect();
        let disagree = manifest_disagreements(&parsed, &catalog_objects, &catalog_files);
        out.problems.extend(disagree.into_iter().map(|detail| {
            Problem::new(
                ProblemKind::ManifestMismatch,
                &manifest.key,
                Some(backup_id),
                detail,
            )
        }));
        Ok(())
    }

    /// Objects under the tenant's prefix in `storage` outside every org in `orgs`, listed with
    /// `via`'s client (the session is narrowed to the tenant's prefix, not the org's).
    async fn strays(
        &self,
        storage: &StorageRecord,
        via: &OrgId,
        orgs: &[OrgId],
    ) -> Result<Vec<Problem>, WorkerError> {
        let client = self.storage.client_for(storage, via, "verify").await?;
        let bucket = &storage.settings.bucket;
        let root = format!(
            "{}/",
            tenant_prefix(&storage.settings.base_path, self.tenant)
        );
        let (dirs, objects) = list_level(&client, bucket, &root).await?;
        let known: BTreeSet<String> = orgs.iter().map(|o| format!("{root}{o}/")).collect();
        let mut keys = objects;
        for dir in dirs.iter().filter(|d| !known.contains(*d)) {
            keys.extend(
                list_objects(&client, bucket, dir)
                    .await?
                    .into_iter()
                    .map(|o| o.key),
            );
        }
        Ok(keys
            .iter()
            .map(|key| {
                let detail =
                    "under the tenant's prefix, outside every org the catalog knows".to_owned();
                Problem::new(ProblemKind::UnknownObject, key, None, detail)
            })
            .collect())
    }
}

/// A backup whose objects are being written or deleted: not checked.
fn in_flux(backup: &BackupRecord) -> bool {
    matches!(backup.state, BackupState::Running | BackupState::Expiring)
}

/// A backup's object rows, its manifest aside: key to size and SHA-256.
fn rows_of(expected: &[Expected], backup_id: BackupId) -> BTreeMap<String, (u64, String)> {
    expected
        .iter()
        .filter(|e| !e.manifest && e.backup_id == Some(backup_id))
        .map(|e| (e.key.clone(), (e.size, e.sha256.clone())))
        .collect()
}

/// Compares the catalog's objects with the listing; returns those present with their size.
fn compare<'e>(
    expected: &'e [Expected],
    listed: &BTreeMap<String, u64>,
    problems: &mut Vec<Problem>,
) -> Vec<&'e Expected> {
    let mut present = Vec::new();
    for e in expected {
        match listed.get(&e.key) {
            None => problems.push(Problem::new(
                ProblemKind::Missing,
                &e.key,
                e.backup_id,
                format!("the catalog records {} bytes; no such object", e.size),
            )),
            Some(&size) if size != e.size => problems.push(Problem::new(
                ProblemKind::SizeMismatch,
                &e.key,
                e.backup_id,
                format!("{size} bytes stored, the catalog says {}", e.size),
            )),
            Some(_) => present.push(e),
        }
    }
    present
}

/// Listed keys no catalog row accounts for, restore reports and backups in flux aside.
fn unknown(
    place: &Place<'_>,
    expected: &[Expected],
    listed: &BTreeMap<String, u64>,
) -> Vec<Problem> {
    let known: BTreeSet<&str> = expected.iter().map(|e| e.key.as_str()).collect();
    let mut skipped: Vec<String> = place
        .backups
        .iter()
        .filter(|b| in_flux(b))
        .map(|b| place.prefix.backup_prefix(&b.backup_id))
        .collect();
    skipped.push(format!("{}/restores/", place.prefix.as_str()));
    listed
        .iter()
        .filter(|(key, _)| {
            !known.contains(key.as_str()) && !skipped.iter().any(|p| key.starts_with(p))
        })
        .map(|(key, size)| {
            let detail = format!("{size} bytes; no catalog row");
            Problem::new(
                ProblemKind::UnknownObject,
                key,
                backup_of_key(place, key),
                detail,
            )
        })
        .collect()
}

/// The backup a key is under, if it is under one of the place's backups.
fn backup_of_key(place: &Place<'_>, key: &str) -> Option<BackupId> {
    place
        .backups
        .iter()
        .find(|b| key.starts_with(&place.prefix.backup_prefix(&b.backup_id)))
        .map(|b| b.backup_id)
}

/// Reads `sample` back in full, a few at a time, adding what it finds to `out`.
async fn read_back(place: &Place<'_>, sample: &[&Expected], out: &mut OrgReport) {
    let reads = futures::stream::iter(sample.iter().map(|e| read_one(place, e, false)))
        .buffer_unordered(READS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    for (result, bytes) in reads {
        out.objects_read += 1;
        out.bytes_read += bytes;
        if let Err(problem) = result {
            out.problems.push(problem);
        }
    }
}

/// Reads one object in full, checking size and SHA-256; returns its bytes if `keep` (a
/// manifest; a sampled part is only hashed, one chunk in memory at a time), or the problem,
/// and how many bytes were read.
async fn read_one(place: &Place<'_>, e: &Expected, keep: bool) -> (Result<Vec<u8>, Problem>, u64) {
    let expected = ExpectedObject {
        size: e.size,
        sha256_hex: e.sha256.clone(),
    };
    let mut reader =
        match VerifiedReader::open(&place.client, place.bucket(), &e.key, expected).await {
            Ok(reader) => reader,
            Err(err) => return (Err(read_problem(e, &err)), 0),
        };
    let mut body = Vec::new();
    loop {
        match reader.next_chunk().await {
            Ok(Some(chunk)) if keep => body.extend_from_slice(&chunk),
            Ok(Some(_)) => {}
            Ok(None) => return (Ok(body), reader.bytes_read()),
            Err(err) => return (Err(read_problem(e, &err)), reader.bytes_read()),
        }
    }
}

fn read_problem(e: &Expected, err: &StorageError) -> Problem {
    let kind = match err {
        StorageError::Corrupt { .. } => ProblemKind::ChecksumMismatch,
        _ => ProblemKind::Unreadable,
    };
    Problem::new(kind, &e.key, e.backup_id, err.to_string())
}

/// The common prefixes (one level down) and the objects directly under `prefix`.
async fn list_level(
    client: &S3Client,
    bucket: &str,
    prefix: &str,
) -> Result<(Vec<String>, Vec<String>), WorkerError> {
    let (mut dirs, mut objects) = (Vec::new(), Vec::new());
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .delimiter("/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| StorageError::from_sdk("ListObjectsV2", bucket, e))?;
        dirs.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
        objects.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    Ok((dirs, objects))
}

/// The parts of `manifest.json` compared with the catalog.
#[derive(Debug, Deserialize)]
struct ManifestDoc {
    objects: Vec<ManifestEntry>,
    #[serde(default)]
    files: Vec<ManifestFileEntry>,
}

#[derive(Debug, Deserialize)]
struct ManifestEntry {
    key: String,
    size: u64,
    sha256: String,
}

#[derive(Debug, Deserialize)]
struct ManifestFileEntry {
    source: String,
    record_id: String,
    sha256: String,
}

/// How the manifest and the catalog's rows differ, one line each.
fn manifest_disagreements(
    doc: &ManifestDoc,
    objects: &BTreeMap<String, (u64, String)>,
    files: &BTreeMap<(String, String), String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let listed: BTreeMap<&str, (u64, &str)> = doc
        .objects
        .iter()
        .map(|o| (o.key.as_str(), (o.size, o.sha256.as_str())))
        .collect();
    for (key, (size, sha)) in objects {
        match listed.get(key.as_str()) {
            None => out.push(format!("{key} is in the catalog, not in the manifest")),
            Some((m_size, m_sha)) if m_size != size || m_sha != sha => out.push(format!(
                "{key}: the manifest says {m_size} bytes, sha256 {m_sha}; the catalog {size} bytes, sha256 {sha}"
            )),
            Some(_) => {}
        }
    }
    for key in listed.keys().filter(|k| !objects.contains_key(**k)) {
        out.push(format!("{key} is in the manifest, not in the catalog"));
    }
    out.extend(file_disagreements(&doc.files, files));
    out
}

fn file_disagreements(
    entries: &[ManifestFileEntry],
    files: &BTreeMap<(String, String), String>,
) -> Vec<String> {
    let listed: BTreeMap<(&str, &str), &str> = entries
        .iter()
        .map(|f| ((f.source.as_str(), f.record_id.as_str()), f.sha256.as_str()))
        .collect();
    let mut out = Vec::new();
    for ((source, record), sha) in files {
        match listed.get(&(source.as_str(), record.as_str())) {
            None => out.push(format!(
                "file {source} {record} is in the catalog, not in the manifest"
            )),
            Some(m_sha) if m_sha != sha => out.push(format!(
                "file {source} {record}: the manifest's body is {m_sha}, the catalog's {sha}"
            )),
            Some(_) => {}
        }
    }
    for (source, record) in listed.keys() {
        if !files.contains_key(&((*source).to_owned(), (*record).to_owned())) {
            out.push(format!(
                "file {source} {record} is in the manifest, not in the catalog"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        (0..2000)
            .map(|n| format!("t/o/backups/b/records/Account/part-{n:05}.csv.gz"))
            .collect()
    }

    #[test]
    fn a_share_of_one_reads_everything_and_zero_nothing() {
        assert!(keys().iter().all(|k| sampled(7, 1.0, k)));
        assert!(!keys().iter().any(|k| sampled(7, 0.0, k)));
        assert!(!keys().iter().any(|k| sampled(7, f64::NAN, k)));
    }

    #[test]
    fn a_share_chooses_about_that_share_the_same_way_for_the_same_seed() {
        let chosen =
            |seed| -> Vec<bool> { keys().iter().map(|k| sampled(seed, 0.25, k)).collect() };
        let first = chosen(1);
        let count = first.iter().filter(|c| **c).count();
        assert!((400..600).contains(&count), "{count} of 2000 at 25%");
        assert_eq!(first, chosen(1));
        assert_ne!(first, chosen(2), "another seed chooses other objects");
    }

    #[test]
    fn a_manifest_agrees_only_with_the_same_objects_and_files() {
        let doc: ManifestDoc = serde_json::from_value(serde_json::json!({
            "objects": [
                {"key": "a", "size": 1, "sha256": "x", "rows": 3},
                {"key": "b", "size": 2, "sha256": "y"},
                {"key": "extra", "size": 2, "sha256": "y"}
            ],
            "files": [{"source": "Attachment", "record_id": "00P1", "sha256": "s"}]
        }))
        .expect("manifest");
        let objects: BTreeMap<String, (u64, String)> = [
            ("a".to_owned(), (1, "x".to_owned())),
            ("b".to_owned(), (2, "z".to_owned())),
            ("gone".to_owned(), (1, "x".to_owned())),
        ]
        .into();
        let files = [(("Attachment".to_owned(), "00P1".to_owned()), "s".to_owned())].into();
        let found = manifest_disagreements(&doc, &objects, &files);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("b:"), "{found:?}");
        assert!(found[1].starts_with("gone is in the catalog"), "{found:?}");
        assert!(
            found[2].starts_with("extra is in the manifest"),
            "{found:?}"
        );
        let other_files = [(("Attachment".to_owned(), "00P1".to_owned()), "t".to_owned())].into();
        let found = manifest_disagreements(&doc, &objects, &other_files);
        assert!(
            found.iter().any(|l| l.starts_with("file Attachment 00P1")),
            "{found:?}"
        );
    }
}
