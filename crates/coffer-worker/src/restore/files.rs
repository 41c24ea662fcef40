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
        let targets: Vec<String> = versions
            .iter()
            .filter_map(|v| v.target_id.clone())
            .collect();
        let document_of = self
            .column_by_id("ContentVersion", "ContentDocumentId", "Id", &targets)
            .await?;
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
            if let Some(document) = document_of.get(target).and_then(|d| d.first()) {
                documents.push((old_document.clone(), document.1.clone()));
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
        let map = self.id_map(describe, &rows, &sources).await?;
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
        let new_documents: Vec<String> = documents.iter().map(|(_, new)| new.clone()).collect();
        // (link id, linked record) of the links Salesforce made, by new document.
        let made = self
            .column_by_id(
                "ContentDocumentLink",
                "LinkedEntityId",
                "ContentDocumentId",
                &new_documents,
            )
            .await?;
        // The pending links of each backed-up document, and the id map of what they link to.
        let mut links_of: std::collections::HashMap<&str, Vec<(&str, &super::source::SourceRow)>> =
            Default::default();
        for link in &links {
            if let Some(source) = sources.get(&link.source_id)
                && let Some(document) = source.get("ContentDocumentId")
            {
                links_of
                    .entry(document.as_str())
                    .or_default()
                    .push((link.source_id.as_str(), source));
            }
        }
        let entities: Vec<String> = sources
            .values()
            .filter_map(|s| s.get("LinkedEntityId").filter(|e| !e.is_empty()).cloned())
            .collect();
        let map = catalog.target_ids(restore_id, &entities).await?;
        let mut adopted = Vec::new();
        for (old, new) in documents {
            let existing = made.get(new).map(Vec::as_slice).unwrap_or_default();
            for (link, source) in links_of.get(old.as_str()).into_iter().flatten() {
                let entity = source.get("LinkedEntityId").cloned().unwrap_or_default();
                let Some(entity) = remap(&entity, &map, planned, self.plan.same_org) else {
                    continue;
                };
                if let Some((id, _)) = existing.iter().find(|(_, linked)| *linked == entity) {
                    adopted.push(((*link).to_owned(), id.clone(), *source));
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

    /// `(Id, column)` of the `sobject` records whose `key` is one of `keys`, grouped by key
    /// (REST queries with `IN` lists of 200).
    async fn column_by_id(
        &self,
        sobject: &str,
        column: &str,
        key: &str,
        keys: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<(String, String)>>, WorkerError> {
        let mut out: std::collections::HashMap<String, Vec<(String, String)>> = Default::default();
        for batch in keys.chunks(200) {
            let list: Vec<String> = batch.iter().map(|k| format!("'{k}'")).collect();
            // The key is the third column, or the first when it is the id.
            let (select, key_at) = match key {
                "Id" => (format!("Id, {column}"), 0),
                _ => (format!("Id, {column}, {key}"), 2),
            };
            let soql = format!(
                "SELECT {select} FROM {sobject} WHERE {key} IN ({})",
                list.join(", ")
            );
            let mut results = self.sf.rest_query(&soql, QueryOperation::Query);
            while let Some(page) = results.next_page().await? {
                for row in &page.records {
                    let (Some(id), Some(value), Some(k)) =
                        (row.get(0), row.get(1), row.get(key_at))
                    else {
                        continue;
                    };
                    out.entry(k.to_owned())
                        .or_default()
                        .push((id.to_owned(), value.to_owned()));
                }
            }
        }
        Ok(out)
    }
}
