//! S3 clients per storage, cached.
//!
//! A backup is written to, and later read from, the storage recorded in its catalog row, not
//! whatever the tenant uses today. Clients are cached per (region, endpoint) so every job of a
//! region shares one connection pool.

use std::collections::HashMap;

use coffer_catalog::{Sse, StorageRecord};
use coffer_storage::{BucketTarget, Encryption, S3Client, S3Settings};
use tokio::sync::Mutex;

/// Hands out the S3 client and bucket target for a storage row.
#[derive(Debug)]
pub struct StorageClients {
    base: S3Settings,
    clients: Mutex<HashMap<(String, Option<String>), S3Client>>,
}

impl StorageClients {
    /// Clients built from `base`, with region and endpoint taken from each storage row.
    pub fn new(base: S3Settings) -> Self {
        StorageClients {
            base,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for a storage (created on first use).
    pub async fn client_for(&self, storage: &StorageRecord) -> S3Client {
        let region = storage.settings.region.clone();
        let endpoint = storage
            .settings
            .endpoint
            .clone()
            .or_else(|| self.base.endpoint.clone());
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(&(region.clone(), endpoint.clone())) {
            return client.clone();
        }
        let settings = S3Settings {
            region: region.clone(),
            endpoint: endpoint.clone(),
            ..self.base.clone()
        };
        let client = settings.s3_client().await;
        clients.insert((region, endpoint), client.clone());
        client
    }
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
