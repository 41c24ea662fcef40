//! S3 clients per storage and org, cached.
//!
//! A backup is written to, and later read from, the storage recorded in its catalog row, not
//! whatever the tenant uses today. How Coffer reaches a storage comes from that row too: the
//! vendor's own credentials for the default storage, AssumeRole into the customer's role with
//! the external id derived from the tenant record (never from a message) for a role, or the
//! customer's access keys, opened from their sealed form with the operator's envelope key.
//! Clients are cached per (access, region, endpoint, external id) by
//! [`coffer_storage::access::ClientCache`], which shares one connection pool between all.

use coffer_catalog::{Sse, StorageAccess as CatalogAccess, StorageRecord, secret_context};
use coffer_core::layout::tenant_prefix;
use coffer_core::policy::external_id;
use coffer_core::sealed::EnvelopeKey;
use coffer_core::{OrgId, TenantId};
use coffer_storage::access::{ClientCache, SessionIdentity, StorageAccess, StorageSpec};
use coffer_storage::{BucketTarget, Encryption, S3Client, S3Settings};

use crate::error::WorkerError;

/// Hands out the S3 client and bucket target for a storage row.
#[derive(Debug)]
pub struct StorageClients {
    cache: ClientCache,
    vendor: String,
    envelope_key: Option<EnvelopeKey>,
}

impl StorageClients {
    /// Clients built from `base` (the vendor's credentials, default endpoint); `vendor` starts
    /// every external id; `envelope_key` opens customers' sealed access keys.
    pub fn new(base: S3Settings, vendor: String, envelope_key: Option<EnvelopeKey>) -> Self {
        StorageClients {
            cache: ClientCache::new(base),
            vendor,
            envelope_key,
        }
    }

    /// The client for `storage` as used by a job of `org` (created on first use).
    pub async fn client_for(
        &self,
        storage: &StorageRecord,
        org: &OrgId,
        job: &str,
    ) -> Result<S3Client, WorkerError> {
        let spec = spec_of(storage, self.envelope_key.as_ref())?;
        let who = identity_for(&self.vendor, &storage.tenant_id, org, job);
        Ok(self.cache.client(&spec, &who).await?)
    }
}

/// Who a session acts for: the tenant, the org's external id, and the job (in the session name).
pub fn identity_for(vendor: &str, tenant: &TenantId, org: &OrgId, job: &str) -> SessionIdentity {
    SessionIdentity {
        tenant: tenant.to_string(),
        external_id: external_id(vendor, org),
        job: job.to_owned(),
    }
}

/// What `coffer-storage` needs to reach a storage row; a sealed secret is opened here.
pub fn spec_of(
    storage: &StorageRecord,
    envelope_key: Option<&EnvelopeKey>,
) -> Result<StorageSpec, WorkerError> {
    let settings = &storage.settings;
    let access = match &settings.access {
        CatalogAccess::Vendor => StorageAccess::Vendor,
        CatalogAccess::Role { role_arn } => StorageAccess::Role {
            role_arn: role_arn.clone(),
        },
        CatalogAccess::AccessKeys {
            access_key_id,
            secret_sealed,
        } => StorageAccess::AccessKeys {
            access_key_id: access_key_id.clone(),
            secret_access_key: open_secret(storage, envelope_key, access_key_id, secret_sealed)?,
        },
    };
    Ok(StorageSpec {
        region: settings.region.clone(),
        endpoint: settings.endpoint.clone(),
        bucket: settings.bucket.clone(),
        prefix: tenant_prefix(&settings.base_path, &storage.tenant_id),
        encryption: target_of(storage).encryption,
        access,
    })
}

fn open_secret(
    storage: &StorageRecord,
    envelope_key: Option<&EnvelopeKey>,
    access_key_id: &str,
    sealed: &str,
) -> Result<secrecy::SecretString, WorkerError> {
    let failure = |detail: String| WorkerError::Secret {
        tenant: storage.tenant_id.to_string(),
        storage_id: storage.storage_id,
        detail,
    };
    let key = envelope_key.ok_or_else(|| {
        failure(
            "its access keys are sealed and this process has no envelope key: set COFFER_ENVELOPE_KEY_FILE (or COFFER_ENVELOPE_KEY) to the key used by `coffer storage set`"
                .to_owned(),
        )
    })?;
    key.open(sealed, &secret_context(&storage.tenant_id, access_key_id))
        .map_err(|e| failure(e.to_string()))
}

/// The bucket and encryption new objects of this storage get.
pub fn target_of(storage: &StorageRecord) -> BucketTarget {
    let encryption = match &storage.settings.sse {
        Sse::Kms { key_id, bucket_key } => Encryption::SseKms {
            key_id: key_id.clone(),
            bucket_key: *bucket_key,
        },
        Sse::S3 => Encryption::SseS3,
    };
    BucketTarget {
        bucket: storage.settings.bucket.clone(),
        encryption,
    }
}
