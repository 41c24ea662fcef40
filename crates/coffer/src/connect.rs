//! Connecting to the catalog and the broker, with context on failure.

use anyhow::Context;
use coffer_catalog::Catalog;
use coffer_queue::{Broker, QueueConfig};

use crate::args::Services;

/// Connects to the catalog and applies migrations (safe with many replicas: the migrator
/// takes a database lock).
pub async fn catalog(services: &Services) -> anyhow::Result<Catalog> {
    let catalog = Catalog::connect(&services.database_url())
        .await
        .context("cannot connect to the catalog database (COFFER_DATABASE_URL); is MariaDB/MySQL up? try `scripts/stack up`")?;
    catalog
        .migrate()
        .await
        .context("cannot apply catalog migrations")?;
    Ok(catalog)
}

/// Connects to the broker and declares the topology.
pub async fn broker(queue: &QueueConfig) -> anyhow::Result<Broker> {
    let broker = Broker::connect(queue).await.context(
        "cannot connect to RabbitMQ (COFFER_AMQP_URL); is it up? try `scripts/stack up`",
    )?;
    broker
        .declare_topology()
        .await
        .context("cannot declare the queue topology")?;
    Ok(broker)
}
