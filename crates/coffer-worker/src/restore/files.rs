//! Salesforce Files in a restore. A file comes back as a new document: inserting its
//! ContentVersion (with the body and `FirstPublishLocationId` remapped) makes Salesforce create
//! the ContentDocument and the link to that first location. Afterwards each restored version's
//! new document is looked up and recorded as the restored document (so the file's other sharing
//! links, written next, point at it), and a backed-up link Salesforce already re-created (the
//! first location's) is recorded as written instead of being inserted twice.

use std::collections::HashSet;

use coffer_catalog::{RecordState, RestoreAction};
use coffer_salesforce::{QueryOperation, SObjectRecord};

use super::source::read_rows;
use super::write::{Writer, remap};
use crate::error::WorkerError;

impl Writer<'_> {
    /// After the ContentVersion inserts: records each new version's document as the restored
    /// document, and the links Salesforce made for the first locations as written.
    pub(crate) async fn adopt_documents(
        &self,
        planned: &HashSet<String>,
    ) -> Result<(), WorkerError> {
        let catalog = &self.ctx.catalog;
        let restore_id = &self.restore.restore_id;
        let versions: Vec<_> = catalog
            .restore_rows(
                restore_id,
                Some("ContentVersion"),
                Some(RecordState::Written),
            )
            .await?
            .into_iter()
            .filter(|r| r.action == RestoreAction::Insert)
            .collect();
        if versions.is_empty() {
            return Ok(());
        }
        let sources = read_rows(self.ctx, &versions).await?;
        let mut documents: Vec<(String, String)> = Vec::new();
        for version in &versions {
            let (Some(target), Some(source)) =
                (&version.target_id, sources.get(&version.source_id))
            else {
                continue;
            };
            let Some(old_document) = source.get("ContentDocumentId").filter(|d| !d.is_empty())
            else {
                continue;
            };
            if let Some(document) = self.document_of(target).await? {
                documents.push((old_document.clone(), document));
            }
        }
        catalog.mark_written(restore_id, &documents).await?;
        self.describe_documents(&documents).await?;
        self.adopt_first_links(&documents, planned).await
    }

    /// Gives each new document the backed-up document's own fields (`Title`, `Description`...),
    /// which the version insert does not carry.
    async fn describe_documents(&self, documents: &[(String, String)]) -> Result<(), WorkerError> {
        let Some(describe) = self.describes.get("ContentDocument") else {
            return Ok(());
        };
        let new_of: std::collections::HashMap<&str, &str> = documents
            .iter()
            .map(|(old, new)| (old.as_str(), new.as_str()))
            .collect();
        let rows: Vec<_> = self
            .ctx
            .catalog
            .restore_rows(&self.restore.restore_id, Some("ContentDocument"), None)
            .await?
            .into_iter()
            .filter(|r| new_of.contains_key(r.source_id.as_str()))
            .collect();
        let sources = read_rows(self.ctx, &rows).await?;
        let parents: Vec<String> = sources
            .values()
            .flat_map(|s| {
                describe
                    .fields
                    .iter()
                    .filter(|f| !f.reference_to.is_empty())
                    .filter_map(|f| s.get(&f.name).filter(|v| !v.is_empty()).cloned())
            })
            .collect();
        let map = self
            .ctx
            .catalog
            .target_ids(&self.restore.restore_id, &parents)
            .await?;
        let (mut ids, mut records) = (Vec::new(), Vec::new());
        for row in &rows {
            let (Some(source), Some(new)) = (
                sources.get(&row.source_id),
                new_of.get(row.source_id.as_str()),
            ) else {
                continue;
            };
            let mut record = SObjectRecord::new("ContentDocument").with_id(*new);
            let settable = describe
                .fields
                .iter()
                .filter(|f| f.updateable && f.name != "Id");
            for field in settable {
                if let Some(value) = source.get(&field.name).filter(|v| !v.is_empty()) {
                    // A lookup (the owner) keeps its id unless the restore gave it a new one.
                    let users = &self.plan.users.map;
                    let value = users.get(value).or(map.get(value)).unwrap_or(value);
                    record = record.field(field.name.clone(), value.clone());
                }
            }
            ids.push(row.source_id.clone());
            records.push(record);
        }
        if records.is_empty() {
            return Ok(());
        }
        let outcomes = self.sf.update_records(&records, false).await?;
        let failed: Vec<(String, String)> = ids
            .into_iter()
            .zip(&outcomes)
            .filter(|(_, o)| !o.is_success())
            .map(|(id, o)| (id, format!("document fields: {:?}", o.errors())))
            .collect();
        self.ctx
            .catalog
            .mark_failed(&self.restore.restore_id, &failed)
            .await?;
        Ok(())
    }

    /// The ContentDocumentId of version `id`.
    async fn document_of(&self, id: &str) -> Result<Option<String>, WorkerError> {
        let soql = format!("SELECT Id, ContentDocumentId FROM ContentVersion WHERE Id = '{id}'");
        let rows = self.query(&soql).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().nth(1))
            .filter(|d| !d.is_empty()))
    }

    /// Marks written each pending backed-up link that Salesforce re-created with the document
    /// (same document, same linked record after remapping).
    async fn adopt_first_links(
        &self,
        documents: &[(String, String)],
        planned: &HashSet<String>,
    ) -> Result<(), WorkerError> {
        let catalog = &self.ctx.catalog;
        let restore_id = &self.restore.restore_id;
        let links: Vec<_> = catalog
            .restore_rows(
                restore_id,
                Some("ContentDocumentLink"),
                Some(RecordState::Pending),
            )
            .await?;
        if links.is_empty() {
            return Ok(());
        }
        let sources = read_rows(self.ctx, &links).await?;
        let mut adopted = Vec::new();
        for (old, new) in documents {
            let existing = self
                .query(&format!(
                    "SELECT Id, LinkedEntityId FROM ContentDocumentLink WHERE ContentDocumentId = '{new}'"
                ))
                .await?;
            for link in &links {
                let Some(source) = sources.get(&link.source_id) else {
                    continue;
                };
                if source.get("ContentDocumentId").map(String::as_str) != Some(old.as_str()) {
                    continue;
                }
                let entity = source.get("LinkedEntityId").cloned().unwrap_or_default();
                let ids: Vec<String> = vec![entity.clone()];
                let map = catalog.target_ids(restore_id, &ids).await?;
                let Some(entity) = remap(&entity, &map, planned) else {
                    continue;
                };
                if let Some(found) = existing.iter().find(|row| row.get(1) == Some(&entity)) {
                    adopted.push((link.source_id.clone(), found[0].clone(), source));
                }
            }
        }
        self.share_as_backed_up(&adopted).await
    }

    /// Gives the links Salesforce made the sharing the backed-up links had (`ShareType`,
    /// `Visibility`), and records them as written.
    async fn share_as_backed_up(
        &self,
        adopted: &[(String, String, &super::source::SourceRow)],
    ) -> Result<(), WorkerError> {
        if adopted.is_empty() {
            return Ok(());
        }
        let records: Vec<SObjectRecord> = adopted
            .iter()
            .map(|(_, target, source)| {
                let mut record = SObjectRecord::new("ContentDocumentLink").with_id(target.clone());
                for field in ["ShareType", "Visibility"] {
                    if let Some(value) = source.get(field).filter(|v| !v.is_empty()) {
                        record = record.field(field, value.clone());
                    }
                }
                record
            })
            .collect();
        let outcomes = self.sf.update_records(&records, false).await?;
        let (mut written, mut failed) = (Vec::new(), Vec::new());
        for ((source, target, _), outcome) in adopted.iter().zip(&outcomes) {
            match outcome.is_success() {
                true => written.push((source.clone(), target.clone())),
                false => failed.push((
                    source.clone(),
                    format!("sharing of the re-created link: {:?}", outcome.errors()),
                )),
            }
        }
        let catalog = &self.ctx.catalog;
        catalog
            .mark_written(&self.restore.restore_id, &written)
            .await?;
        catalog
            .mark_failed(&self.restore.restore_id, &failed)
            .await?;
        Ok(())
    }

    /// The rows of a small REST query, as cells in SELECT order.
    async fn query(&self, soql: &str) -> Result<Vec<Vec<String>>, WorkerError> {
        let mut results = self.sf.rest_query(soql, QueryOperation::Query);
        let mut rows = Vec::new();
        while let Some(page) = results.next_page().await? {
            rows.extend(
                page.records
                    .iter()
                    .map(|r| r.iter().map(str::to_owned).collect::<Vec<_>>()),
            );
        }
        Ok(rows)
    }
}
