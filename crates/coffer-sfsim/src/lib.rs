//! A Salesforce org simulator (OAuth, REST describe, Bulk API 2.0 query and ingest, sObject
//! Collections, SOAP undelete) for tests, the demo and benchmarks.
//!
//! [`start`] binds an HTTP server serving one seeded, deterministic org: the same [`OrgSeed`] always
//! yields the same records. The simulator follows Salesforce's documented protocol, quirks included:
//! client-credentials OAuth with `instance_url`, `401 INVALID_SESSION_ID` for unknown or expired
//! tokens, describe documents with compound and binary fields, Bulk API 2.0 query jobs that must be
//! polled to `JobComplete`, all-quoted CSV result pages each with a header row, `Sforce-Locator`
//! paging ending in the literal `null`, `409` when results are fetched with another API version
//! than the job's, and gzip when asked for. Beside Bulk it serves the JWT bearer flow ([`jwt`]),
//! REST `query`/`queryAll` paged by `nextRecordsUrl` and `/limits/` ([`rest`]), describe
//! `If-Modified-Since` (`304`), and stamps `Sforce-Limit-Info: api-usage=N/MAX` on every data API
//! answer. Tests inject faults through [`SimHandle`] ([`faults`]): an exhausted API limit, `503`s,
//! slow or cut results pages, `QUERY_TIMEOUT` jobs and objects the Bulk API refuses.
//!
//! The org is writable. Writes go to a copy-on-write overlay over the generated rows
//! ([`store`]): inserted records get new ids of the object's key prefix and the org's pod, updated
//! and deleted generated rows are held by row index, and nothing else is materialised. Writes
//! follow Salesforce's rules ([`dml`]): field-level checks with its status codes, deletes that
//! cascade, restrict or clear lookups as the schema says, a Recycle Bin that `queryAll` sees and
//! `undelete` empties (with the cascaded children and the lookups Salesforce relinks), purges,
//! and `LastModifiedDate`/`SystemModstamp` from the simulator's clock. Clients write through Bulk
//! API 2.0 ingest jobs ([`ingest`]), sObject Collections and sObject Rows ([`collections`]) and
//! the SOAP `undelete` call ([`soap`]); tests through [`SimHandle`] (`insert`, `update`,
//! `update_at` for late commits, `delete` as in the UI, `record`, `deleted_ids`, `purge`,
//! `empty_recycle_bin`, the clock). Queries see the overlay: a Bulk job or REST cursor reads the
//! snapshot taken when it was created, inserted rows after the generated ones.
//!
//! Supported SOQL is a subset (see [`soql`]); what it does not support it rejects loudly.

pub mod bulk;
pub mod collections;
pub mod data;
pub mod dml;
pub mod faults;
pub mod ids;
pub mod ingest;
pub mod jwt;
pub mod rest;
pub mod schema;
pub mod server;
pub mod soap;
pub mod soql;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coffer_core::OrgId;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::server::{Sim, lock};

/// What org to generate. Row counts of the other objects follow from `accounts` unless
/// [`OrgSeed::rows`] overrides them: Users `3 + accounts / 20`, Opportunities, Tasks and
/// `Invoice__c` one per Account, Cases one per two Accounts, Attachments and ContentDocuments one
/// per four Accounts (each document with one ContentDocumentLink, every third with two
/// ContentVersions). `Benchmark_Record__c` exists only when `rows` asks for it.
#[derive(Debug, Clone)]
pub struct OrgSeed {
    /// The org's id; its pod characters appear in every record id.
    pub org_id: OrgId,
    /// Seed of the data generator.
    pub seed: u64,
    /// Number of Accounts.
    pub accounts: usize,
    /// Contacts per Account.
    pub contacts_per_account: usize,
    /// Row counts by object API name, overriding the defaults (ContentVersion and
    /// ContentDocumentLink counts always follow ContentDocument's; User has at least one row).
    pub rows: BTreeMap<String, usize>,
    /// Deleted (Recycle Bin) rows by object API name, on top of the live ones: `queryAll`
    /// returns them with `IsDeleted = true`, `query` and [`SimHandle::table`] do not. None by
    /// default; objects without `IsDeleted` (User) ignore it.
    pub deleted: BTreeMap<String, usize>,
    /// Whether the admin added the restore key, the external id field
    /// [`schema::RESTORE_KEY_FIELD`], to the objects a restore inserts into (see
    /// [`schema::RESTORE_KEY_OBJECTS`]). Off by default, as in a new org.
    pub restore_key: bool,
    /// Record types (by `DeveloperName`, of [`schema::RECORD_TYPES`]) this org does not have,
    /// as a sandbox might lack one its production org has. Its records get none.
    pub missing_record_types: BTreeSet<String>,
}

impl OrgSeed {
    /// An org of `accounts` Accounts with `contacts_per_account` Contacts each and default counts
    /// for every other object.
    pub fn new(org_id: OrgId, seed: u64, accounts: usize, contacts_per_account: usize) -> Self {
        OrgSeed {
            org_id,
            seed,
            accounts,
            contacts_per_account,
            rows: BTreeMap::new(),
            deleted: BTreeMap::new(),
            restore_key: false,
            missing_record_types: BTreeSet::new(),
        }
    }

    /// Leaves record type `developer_name` out of the org.
    pub fn without_record_type(mut self, developer_name: impl Into<String>) -> Self {
        self.missing_record_types.insert(developer_name.into());
        self
    }

    /// Adds the restore key field to the objects a restore inserts into.
    pub fn with_restore_key(mut self) -> Self {
        self.restore_key = true;
        self
    }

    /// Asks for `rows` rows of `sobject` (e.g. 10 million Tasks, or the benchmark object
    /// [`schema::BENCHMARK_OBJECT`]). Rows are generated on demand, so size costs no memory.
    pub fn with_rows(mut self, sobject: impl Into<String>, rows: usize) -> Self {
        self.rows.insert(sobject.into(), rows);
        self
    }

    /// Adds `rows` deleted rows of `sobject`, visible only to `queryAll`.
    pub fn with_deleted(mut self, sobject: impl Into<String>, rows: usize) -> Self {
        self.deleted.insert(sobject.into(), rows);
        self
    }
}

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// The org to serve.
    pub org: OrgSeed,
    /// The connected app's client id.
    pub client_id: String,
    /// The connected app's client secret.
    pub client_secret: String,
    /// Rows per Bulk results page when the client sends no `maxRecords`.
    pub default_page_size: usize,
}

impl SimConfig {
    /// A config on `127.0.0.1:0` with test credentials and a default page size of 2,000 rows.
    pub fn local(org: OrgSeed) -> Self {
        SimConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            org,
            client_id: "sfsim-client-id".to_owned(),
            client_secret: "sfsim-client-secret".to_owned(),
            default_page_size: 2_000,
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("sfsim could not bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running simulator. Dropping it leaves the server running until the runtime ends; call
/// [`SimHandle::shutdown`] to stop it.
#[derive(Debug)]
pub struct SimHandle {
    sim: Arc<Sim>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Owned changes from borrowed (field, value) pairs.
fn owned(fields: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    fields
        .iter()
        .map(|(f, v)| ((*f).to_owned(), v.map(str::to_owned)))
        .collect()
}

/// The body of blob `field` of record `id` of `sobject` as the simulator serves it: one a test
/// wrote ([`SimHandle::set_blob`]) or else the generated one.
pub(crate) fn blob_of(sim: &Sim, sobject: &str, id: &str, field: &str) -> Option<Vec<u8>> {
    let def = sim.org.object(sobject)?;
    let field_def = def.field(field).filter(|f| f.is_binary())?;
    let id18 = store::normalize_id(id)?;
    let written = lock(&sim.faults.written_blobs)
        .get(&(def.name.to_owned(), id18, field_def.name.to_owned()))
        .cloned();
    written.or_else(|| sim.org.blob(sobject, id, field))
}

/// Binds the listener, generates the org, spawns the server task and returns.
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| SimError::Bind {
            addr: config.bind,
            source,
        })?;
    let mut addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: config.bind,
        source,
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(Ipv4Addr::LOCALHOST.into());
    }
    let sim = Arc::new(Sim {
        org: data::generate(&config.org),
        org_id: config.org.org_id.clone(),
        client_id: config.client_id,
        client_secret: config.client_secret,
        default_page_size: config.default_page_size.max(1),
        base_url: format!("http://{addr}"),
        tokens: Default::default(),
        jobs: Default::default(),
        job_counter: AtomicU64::new(0),
        token_counter: AtomicU64::new(0),
        fail_next_job: Default::default(),
        faults: Default::default(),
        cursors: Default::default(),
        jwt_users: Default::default(),
        store: Default::default(),
        ingest: Default::default(),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let app = server::router(sim.clone());
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "sfsim server stopped with an error");
        }
    });
    tracing::info!(base_url = %sim.base_url, org_id = %sim.org_id, "sfsim started");
    Ok(SimHandle { sim, stop, task })
}

impl SimHandle {
    /// The login URL and the instance URL, e.g. `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.sim.base_url.clone()
    }

    /// The simulated org's id.
    pub fn org_id(&self) -> &OrgId {
        &self.sim.org_id
    }

    /// The connected app's consumer key the simulator accepts.
    pub fn client_id(&self) -> &str {
        &self.sim.client_id
    }

    /// The consumer secret the simulator accepts (a simulator credential, not a real secret).
    pub fn client_secret(&self) -> &str {
        &self.sim.client_secret
    }

    /// The queryable objects it serves, in describe-global order.
    pub fn sobjects(&self) -> Vec<String> {
        self.sim
            .org
            .objects
            .iter()
            .map(|o| o.name.to_owned())
            .collect()
    }

    /// What a full Bulk query of every queryable (non-binary, non-compound) field of `sobject`
    /// returns now (writes included): the header (field API names in describe order) and every
    /// live row as CSV cell strings (null as the empty string).
    pub fn table(&self, sobject: &str) -> Option<(Vec<String>, Vec<Vec<String>>)> {
        bulk::full_table_at(&self.sim.org, &self.sim.store.snapshot(), sobject)
    }

    /// The live record `id` of `sobject`: every Bulk-queryable field by API name, null as the
    /// empty string; `None` if there is no such live record (deleted, purged or never existed).
    pub fn record(&self, sobject: &str, id: &str) -> Option<BTreeMap<String, String>> {
        let org = &self.sim.org;
        let overlay = self.sim.store.snapshot();
        let id = store::normalize_id(id)?;
        let (def, slot) = overlay.locate(org, &id)?;
        let record = overlay.record(org, def, slot)?;
        let wanted = org.object(sobject)?;
        if def.name != wanted.name || record.state != store::State::Live {
            return None;
        }
        let cells = def.fields.iter().zip(record.row);
        let fields = cells
            .filter(|(f, _)| f.bulk_queryable())
            .map(|(f, v)| (f.name.to_owned(), v.unwrap_or_default()));
        Some(fields.collect())
    }

    /// Ids of the `sobject` records in the Recycle Bin (deleted, not yet purged), sorted.
    pub fn deleted_ids(&self, sobject: &str) -> Vec<String> {
        let org = &self.sim.org;
        let Some(def) = org.object(sobject) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = self
            .sim
            .store
            .snapshot()
            .recycle_bin(org, def)
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        ids.sort();
        ids
    }

    /// Empties the Recycle Bin of every object, as its purge does: undelete then fails and the
    /// rows are gone from `queryAll` too. Returns how many records were purged.
    pub fn empty_recycle_bin(&self) -> usize {
        self.sim.write(|w| w.purge(|_, _| true))
    }

    /// Purges the Recycle Bin records among `ids` (15- or 18-character); returns how many.
    pub fn purge(&self, ids: &[&str]) -> usize {
        let ids: std::collections::HashSet<String> = ids
            .iter()
            .filter_map(|id| store::normalize_id(id))
            .collect();
        self.sim.write(|w| w.purge(|_, id| ids.contains(id)))
    }

    /// Inserts a `sobject` record with `fields` (API name, value; `None` is null), checked as the
    /// API checks it; returns the new id.
    pub fn insert(
        &self,
        sobject: &str,
        fields: &[(&str, Option<&str>)],
    ) -> Result<String, dml::RecordError> {
        let def = self.object_def(sobject)?;
        let changes = owned(fields);
        self.sim.write(|w| w.insert(def, &changes))
    }

    /// Updates record `id` of `sobject` with `fields`, stamped with the simulator's clock.
    pub fn update(
        &self,
        sobject: &str,
        id: &str,
        fields: &[(&str, Option<&str>)],
    ) -> Result<(), dml::RecordError> {
        let def = self.object_def(sobject)?;
        let changes = owned(fields);
        self.sim
            .write(|w| w.update(Some(def), id, &changes, None))
            .map(drop)
    }

    /// Updates record `id` of `sobject` with `fields` stamped with `system_modstamp` (also its
    /// `LastModifiedDate`), a time in the past: a long transaction committing late, whose rows
    /// carry a SystemModstamp older than changes already visible.
    pub fn update_at(
        &self,
        sobject: &str,
        id: &str,
        fields: &[(&str, Option<&str>)],
        system_modstamp: time::OffsetDateTime,
    ) -> Result<(), dml::RecordError> {
        let def = self.object_def(sobject)?;
        let changes = owned(fields);
        let at = data::format_datetime(system_modstamp.unix_timestamp());
        self.sim
            .write(|w| w.update(Some(def), id, &changes, Some(&at)))
            .map(drop)
    }

    /// Deletes records `ids` of `sobject` as a user deleting them in the UI: to the Recycle Bin,
    /// with their cascade-deleted children, clearing other lookups to them. All or none: on the
    /// first failure nothing is deleted and its error is returned. Blocking (it scans child
    /// objects).
    pub fn delete(&self, sobject: &str, ids: &[&str]) -> Result<(), dml::RecordError> {
        let def = self.object_def(sobject)?;
        self.sim.write(|w| {
            let saved = w.overlay().clone();
            for id in ids {
                if let Err(e) = w.delete(Some(def), id, false) {
                    w.restore(saved);
                    return Err(e);
                }
            }
            Ok(())
        })
    }

    /// Caps the body of a Bulk ingest upload at `bytes` (Salesforce's cap, the default, is
    /// 150 MB), so tests can exercise the refusal without sending 150 MB.
    pub fn set_ingest_upload_limit(&self, bytes: usize) {
        self.sim.ingest.upload_limit.store(bytes, Ordering::Relaxed);
    }

    /// Undeletes `ids` from the Recycle Bin as the SOAP `undelete` call does (a deleted record
    /// comes back with the children its delete cascaded to); one result per id, in order.
    pub fn undelete(&self, ids: &[&str]) -> Vec<Result<String, dml::RecordError>> {
        let ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        self.sim.write(|w| w.undelete_all(&ids))
    }

    /// The simulator's clock (real time unless set or advanced); writes are stamped with it.
    pub fn now(&self) -> time::OffsetDateTime {
        self.sim.store.clock.now()
    }

    /// Freezes the simulator's clock at `at`.
    pub fn set_clock(&self, at: time::OffsetDateTime) {
        self.sim.store.clock.set(at);
    }

    /// Moves the simulator's clock forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        self.sim.store.clock.advance(by);
    }

    fn object_def(&self, sobject: &str) -> Result<&schema::ObjectDef, dml::RecordError> {
        self.sim.org.object(sobject).ok_or_else(|| {
            dml::RecordError::new(
                "INVALID_TYPE",
                format!("sObject type '{sobject}' is not supported."),
            )
        })
    }

    /// The body of a blob field (`Attachment.Body`) of record `id`, if it exists: the one
    /// written by [`SimHandle::set_blob`], or else the generated one.
    pub fn blob(&self, sobject: &str, id: &str, field: &str) -> Option<Vec<u8>> {
        blob_of(&self.sim, sobject, id, field)
    }

    /// Replaces the body of blob `field` (`ContentVersion.VersionData`, `Attachment.Body`) of
    /// live record `id` of `sobject` with `bytes`, as an upload would, and sets what Salesforce
    /// derives from it: `ContentSize` and `Checksum` (MD5 hex) of a ContentVersion (and
    /// `ContentLocation` `S` if it had none), `BodyLength` of an Attachment. The record is
    /// stamped with the simulator's clock.
    pub fn set_blob(
        &self,
        sobject: &str,
        id: &str,
        field: &str,
        bytes: &[u8],
    ) -> Result<(), dml::RecordError> {
        self.sim.set_blob(sobject, id, field, bytes)
    }

    /// Inserts a ContentVersion with `fields` (`Title` at least) whose `VersionData` is `bytes`,
    /// as an upload of a new file does: `IsLatest` true, `VersionNumber` 1, `ContentLocation`
    /// `S`, `ContentSize` and `Checksum` from the bytes. Returns the new id.
    pub fn insert_content_version(
        &self,
        fields: &[(&str, Option<&str>)],
        bytes: &[u8],
    ) -> Result<String, dml::RecordError> {
        let def = self.object_def("ContentVersion")?;
        let changes = owned(fields);
        let org = &self.sim.org;
        let id = self.sim.write(|w| {
            let id = w.insert(def, &changes)?;
            let mut overlay = w.overlay().clone();
            if let Some((found, slot)) = overlay.locate(org, &id)
                && let Some(mut record) = overlay.record(org, found, slot)
            {
                for (name, value) in [("IsLatest", "true"), ("VersionNumber", "1")] {
                    if let Some(i) = def.index_of(name) {
                        record.row[i] = Some(value.to_owned());
                    }
                }
                overlay.put(def.name, slot, record);
                w.restore(overlay);
            }
            Ok::<_, dml::RecordError>(id)
        })?;
        self.set_blob("ContentVersion", &id, "VersionData", bytes)?;
        Ok(id)
    }

    /// Blob GETs answered with a body so far (each one is also an API call).
    pub fn blob_downloads(&self) -> u64 {
        self.sim.faults.blob_downloads.load(Ordering::Relaxed)
    }

    /// Serves the next `n` blob bodies with their first byte changed, so they no longer match
    /// their `ContentVersion.Checksum` (or what was stored before).
    pub fn corrupt_next_blobs(&self, n: u32) {
        self.sim.faults.corrupt_blobs.store(n, Ordering::Relaxed);
    }

    /// Serves the next `n` blob bodies half-way, then drops the connection (a cut transfer the
    /// client must resume).
    pub fn cut_next_blobs(&self, n: u32) {
        self.sim.faults.cut_blobs.store(n, Ordering::Relaxed);
    }

    /// Whether blob GETs honour `Range` (the default) or answer every request with the whole
    /// body, as a server that ignores ranges does.
    pub fn honour_blob_ranges(&self, honour: bool) {
        self.sim.faults.blob_ranges.store(honour, Ordering::Relaxed);
    }

    /// Invalidates every access token issued so far, as a session timeout or revocation would:
    /// the next API call with an old token gets `401 INVALID_SESSION_ID`.
    pub fn expire_tokens(&self) {
        lock(&self.sim.tokens).clear();
    }

    /// Every access token currently valid (for tests that check tokens never leak).
    pub fn active_tokens(&self) -> Vec<String> {
        lock(&self.sim.tokens).iter().cloned().collect()
    }

    /// Makes the next created query job end in `Failed` with `message` as its `errorMessage`.
    pub fn fail_next_job(&self, message: impl Into<String>) {
        *lock(&self.sim.fail_next_job) = Some(message.into());
    }

    /// (object, operation, state) of every Bulk API 2.0 ingest job created so far.
    pub fn ingest_jobs(&self) -> Vec<(String, String, String)> {
        self.sim.ingest.summary()
    }

    /// Number of query jobs created so far.
    pub fn jobs_created(&self) -> u64 {
        self.sim
            .job_counter
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes the next created query job end in `Failed` with Salesforce's `QUERY_TIMEOUT`
    /// message, as a query on a large object does after Bulk API 2.0's internal retries.
    pub fn query_timeout_next_job(&self) {
        self.fail_next_job(faults::QUERY_TIMEOUT);
    }

    /// While `Some(rows)`, every Bulk query job whose result set has more than `rows` rows ends
    /// `Failed` with `QUERY_TIMEOUT` (as Salesforce does for a query too large to finish after
    /// its internal retries); `None` turns the knob off.
    pub fn query_timeout_above(&self, rows: Option<usize>) {
        *server::lock(&self.sim.faults.query_timeout_above) = rows;
    }

    /// While `on`, every data API call answers `403 REQUEST_LIMIT_EXCEEDED` (`TotalRequests
    /// Limit exceeded.`), as when the org's daily allocation is used up.
    pub fn exhaust_api_limit(&self, on: bool) {
        self.sim.faults.limit_exhausted.store(on, Ordering::Relaxed);
    }

    /// Makes the next `n` data API calls answer `503`, alternately with an HTML page and with
    /// Salesforce's `SERVER_UNAVAILABLE` JSON.
    pub fn fail_next_requests(&self, n: u32) {
        self.sim.faults.unavailable.store(n, Ordering::Relaxed);
    }

    /// Lets `n` sObject Collections writes through, then answers the next one `503` without
    /// applying it (once): a write path interrupted midway.
    pub fn fail_collection_write_after(&self, n: u32) {
        self.sim
            .faults
            .collection_writes_before_failure
            .store(n, Ordering::Relaxed);
    }

    /// Lets `n` sObject Collections writes through, then applies the next one and answers it
    /// `503`, as if the connection broke after Salesforce committed (once): the client never
    /// learns the ids it created.
    pub fn lose_collection_answer_after(&self, n: u32) {
        self.sim
            .faults
            .collection_answers_before_loss
            .store(n, Ordering::Relaxed);
    }

    /// Makes each sObject Collections write take `delay`, half before it is applied and half
    /// after, so a restore lasts long enough to be interrupted on either side of a commit.
    pub fn slow_writes(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.sim.faults.write_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Waits `delay` before answering each Bulk results page.
    pub fn slow_pages(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.sim.faults.page_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Makes the next `n` Bulk results pages send their headers and half their body, then drop
    /// the connection.
    pub fn cut_next_pages(&self, n: u32) {
        self.sim.faults.cut_pages.store(n, Ordering::Relaxed);
    }

    /// Queues a hostile answer ([`faults::Garbage`]): the next results page (or job status)
    /// is replaced by it, once. Several queued answers are given in order.
    pub fn serve_garbage(&self, garbage: faults::Garbage) {
        server::lock(&self.sim.faults.garbage).push_back(garbage);
    }

    /// Hostile answers queued by [`SimHandle::serve_garbage`] not served yet.
    pub fn pending_garbage(&self) -> usize {
        server::lock(&self.sim.faults.garbage).len()
    }

    /// Makes Bulk query jobs on `sobject` answer `400 INVALIDENTITY` ("Entity 'X' is not
    /// supported by the Bulk API."), as some `__Share`, `Tag` and `*Status` objects do.
    pub fn unsupported_by_bulk(&self, sobject: &str) {
        server::lock(&self.sim.faults.bulk_unsupported).insert(sobject.to_ascii_lowercase());
    }

    /// Sets the daily API allocation (`DailyApiRequests.Max`, the `MAX` of `api-usage=N/MAX`).
    /// Calls beyond it answer `403 REQUEST_LIMIT_EXCEEDED`.
    pub fn set_api_max(&self, max: u64) {
        self.sim.faults.api_max.store(max, Ordering::Relaxed);
    }

    /// Data API calls counted so far (the `N` of `api-usage=N/MAX`).
    pub fn api_calls(&self) -> u64 {
        self.sim.faults.usage().0
    }

    /// Records a schema change one second after now: describes asked `If-Modified-Since` an
    /// earlier time answer `200` again.
    pub fn touch_schema(&self) {
        let next = faults::whole_seconds(time::OffsetDateTime::now_utc()) + Duration::from_secs(1);
        *server::lock(&self.sim.faults.schema_modified) = next;
    }

    /// When the schema last changed (whole seconds).
    pub fn schema_modified(&self) -> time::OffsetDateTime {
        *server::lock(&self.sim.faults.schema_modified)
    }

    /// Pre-authorizes `username` for the JWT bearer flow, with the RSA public key (PEM) of the
    /// certificate uploaded to the connected app. Assertions must have `iss` = the client id,
    /// `sub` = `username` and `aud` = [`SimHandle::base_url`].
    pub fn approve_jwt_user(&self, username: &str, public_key_pem: &str) {
        server::lock(&self.sim.jwt_users).insert(username.to_owned(), public_key_pem.to_owned());
    }

    /// Stops the server and waits (up to 5 seconds) for it to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

impl Sim {
    /// The body of [`SimHandle::set_blob`], also used by writes that carry a body (sObject
    /// Collections with a base64 field).
    pub(crate) fn set_blob(
        &self,
        sobject: &str,
        id: &str,
        field: &str,
        bytes: &[u8],
    ) -> Result<(), dml::RecordError> {
        use md5::Digest as _;
        let def = self.org.object(sobject).ok_or_else(|| {
            dml::RecordError::new(
                "INVALID_TYPE",
                format!("sObject type '{sobject}' is not supported."),
            )
        })?;
        let field_def = def.field(field).filter(|f| f.is_binary()).ok_or_else(|| {
            dml::RecordError::new(
                "INVALID_FIELD",
                format!("No such blob field {field} on {}", def.name),
            )
        })?;
        let len = bytes.len().to_string();
        let md5: String = md5::Md5::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let derived: Vec<(&str, String)> = match def.name {
            "ContentVersion" => vec![("ContentSize", len), ("Checksum", md5)],
            "Attachment" | "Document" => vec![("BodyLength", len)],
            _ => Vec::new(),
        };
        let org = &self.org;
        let id18 = self.write(|w| {
            let id18 = w.update(Some(def), id, &[], None)?;
            let mut overlay = w.overlay().clone();
            let (found, slot) = overlay
                .locate(org, &id18)
                .ok_or_else(|| dml::RecordError::new("ENTITY_IS_DELETED", "entity is deleted"))?;
            let mut record = overlay
                .record(org, found, slot)
                .ok_or_else(|| dml::RecordError::new("ENTITY_IS_DELETED", "entity is deleted"))?;
            for (name, value) in derived {
                if let Some(i) = def.index_of(name) {
                    record.row[i] = Some(value);
                }
            }
            if let Some(i) = def.index_of("ContentLocation")
                && record.row[i].is_none()
            {
                record.row[i] = Some("S".to_owned());
            }
            overlay.put(def.name, slot, record);
            w.restore(overlay);
            Ok::<_, dml::RecordError>(id18)
        })?;
        lock(&self.faults.written_blobs).insert(
            (def.name.to_owned(), id18, field_def.name.to_owned()),
            bytes.to_vec(),
        );
        Ok(())
    }
}
