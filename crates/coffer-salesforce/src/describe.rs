//! Describe Global and Describe sObject: which objects an org has, and each object's fields and
//! child relationships. The types serialize to a stable JSON shape so that a backup can store
//! them as its schema snapshot. [`SalesforceClient::describe_sobject_if_modified_since`] sends
//! `If-Modified-Since` so an unchanged object costs a `304` and no body.

use coffer_core::SObjectName;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{SalesforceClient, SalesforceError};

/// One entry of Describe Global.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SObjectSummary {
    /// API name.
    pub name: String,
    /// Label.
    #[serde(default)]
    pub label: String,
    /// 3-character id prefix; none for objects without ids.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Can be queried.
    #[serde(default)]
    pub queryable: bool,
    /// Can be retrieved by id.
    #[serde(default)]
    pub retrieveable: bool,
    /// Can be replicated (getUpdated/getDeleted).
    #[serde(default)]
    pub replicateable: bool,
    /// Records can be inserted.
    #[serde(default)]
    pub createable: bool,
    /// A custom object.
    #[serde(default)]
    pub custom: bool,
}

/// Describe sObject: one object's fields and children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SObjectDescribe {
    /// API name.
    pub name: String,
    /// Label.
    #[serde(default)]
    pub label: String,
    /// 3-character id prefix.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Fields in describe order.
    pub fields: Vec<FieldDescribe>,
    /// Objects whose reference fields point here.
    #[serde(default)]
    pub child_relationships: Vec<ChildRelationship>,
}

/// Field types Bulk API 2.0 query cannot select: blobs and compound fields.
const NOT_BULK_QUERYABLE: &[&str] = &["base64", "address", "location"];

impl SObjectDescribe {
    /// Fields a Bulk API 2.0 query can select: everything but base64 and compound (address,
    /// location) fields, in describe order.
    pub fn bulk_queryable_fields(&self) -> Vec<&FieldDescribe> {
        self.fields
            .iter()
            .filter(|f| !NOT_BULK_QUERYABLE.contains(&f.field_type.as_str()))
            .collect()
    }

    /// The field named `name` (case-insensitive, as SOQL is).
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// One field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescribe {
    /// API name.
    pub name: String,
    /// Describe type: `id`, `string`, `reference`, `datetime`, `base64`, `address`, ...
    #[serde(rename = "type")]
    pub field_type: String,
    /// Label.
    #[serde(default)]
    pub label: String,
    /// Maximum length of text types.
    #[serde(default)]
    pub length: u64,
    /// Objects a reference points to (more than one: polymorphic).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub reference_to: Vec<String>,
    /// Relationship name of a reference (`Account`, `Parent`).
    #[serde(default)]
    pub relationship_name: Option<String>,
    /// May be empty.
    #[serde(default)]
    pub nillable: bool,
    /// Settable on insert.
    #[serde(default)]
    pub createable: bool,
    /// Settable on update.
    #[serde(default)]
    pub updateable: bool,
    /// A formula field.
    #[serde(default)]
    pub calculated: bool,
    /// An auto-number field.
    #[serde(default)]
    pub auto_number: bool,
    /// An external id.
    #[serde(default)]
    pub external_id: bool,
    /// Can identify a record in upsert.
    #[serde(default)]
    pub id_lookup: bool,
    /// Values are unique.
    #[serde(default)]
    pub unique: bool,
    /// The compound field this field is a component of (`BillingAddress`).
    #[serde(default)]
    pub compound_field_name: Option<String>,
}

/// A child relationship of the described (parent) object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildRelationship {
    /// The child object.
    #[serde(rename = "childSObject")]
    pub child_sobject: String,
    /// The reference field on the child.
    pub field: String,
    /// Relationship name (`Contacts`), if any.
    #[serde(default)]
    pub relationship_name: Option<String>,
    /// Deleting the parent deletes the children.
    #[serde(default)]
    pub cascade_delete: bool,
    /// The parent cannot be deleted while children point to it.
    #[serde(default)]
    pub restricted_delete: bool,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct DescribeGlobal {
    sobjects: Vec<SObjectSummary>,
}

/// The HTTP date format Salesforce documents for `If-Modified-Since`
/// (`EEE, dd MMM yyyy HH:mm:ss z`, always GMT).
const HTTP_DATE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// `t` as an HTTP date in GMT (`Wed, 25 Nov 2026 05:52:13 GMT`).
pub(crate) fn http_date(t: OffsetDateTime) -> Result<String, SalesforceError> {
    t.to_offset(time::UtcOffset::UTC)
        .format(HTTP_DATE)
        .map_err(|e| SalesforceError::Config(format!("cannot format {t} as an http date: {e}")))
}

impl SalesforceClient {
    /// Describe sObject `name` unless it has not changed since `since`: `None` when Salesforce
    /// answers `304 Not Modified` (second precision; org-wide changes such as labels or
    /// permissions also count as changes).
    pub async fn describe_sobject_if_modified_since(
        &self,
        name: &SObjectName,
        since: OffsetDateTime,
    ) -> Result<Option<SObjectDescribe>, SalesforceError> {
        let url = self.data_url(self.api_version(), &format!("sobjects/{name}/describe/"));
        let operation = format!("describe {name}");
        let since = http_date(since)?;
        let attempt = || async {
            let resp = self
                .send(&operation, |http| {
                    http.get(&url)
                        .header(reqwest::header::ACCEPT, "application/json")
                        .header(reqwest::header::IF_MODIFIED_SINCE, since.as_str())
                })
                .await?;
            if resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(None);
            }
            decode_json(&operation, resp).await.map(Some)
        };
        let describe: Option<SObjectDescribe> = self.with_retries(&operation, attempt).await?;
        tracing::debug!(sobject = %name, changed = describe.is_some(), "described salesforce object if modified");
        Ok(describe)
    }

    /// Describe Global: every object of the org.
    pub async fn describe_global(&self) -> Result<Vec<SObjectSummary>, SalesforceError> {
        let url = self.data_url(self.api_version(), "sobjects/");
        let global: DescribeGlobal = self.get_json("describe global", &url).await?;
        tracing::debug!(objects = global.sobjects.len(), "described salesforce org");
        Ok(global.sobjects)
    }

    /// Describe sObject `name`.
    pub async fn describe_sobject(
        &self,
        name: &SObjectName,
    ) -> Result<SObjectDescribe, SalesforceError> {
        let url = self.data_url(self.api_version(), &format!("sobjects/{name}/describe/"));
        let describe: SObjectDescribe = self.get_json(&format!("describe {name}"), &url).await?;
        tracing::debug!(sobject = %name, fields = describe.fields.len(), "described salesforce object");
        Ok(describe)
    }

    /// GETs `url` and decodes the JSON body.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        url: &str,
    ) -> Result<T, SalesforceError> {
        self.with_retries(operation, || async {
            let resp = self
                .send(operation, |http| {
                    http.get(url)
                        .header(reqwest::header::ACCEPT, "application/json")
                })
                .await?;
            decode_json(operation, resp).await
        })
        .await
    }
}

/// Reads a JSON body, distinguishing a broken transfer (retryable) from a wrong shape (permanent):
/// an HTML page or JSON that ends early is [`SalesforceError::GarbledResponse`] (something
/// other than the API answered, or the transfer was cut); well-formed JSON of another shape is
/// [`SalesforceError::UnexpectedResponse`] (the same request would get the same answer).
pub(crate) async fn decode_json<T: serde::de::DeserializeOwned>(
    operation: &str,
    resp: reqwest::Response,
) -> Result<T, SalesforceError> {
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp
        .bytes()
        .await
        .map_err(|source| SalesforceError::Transport {
            operation: operation.to_owned(),
            source,
        })?;
    parse_json(operation, &content_type, &body)
}

/// [`decode_json`] on a body already read.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    operation: &str,
    content_type: &str,
    body: &[u8],
) -> Result<T, SalesforceError> {
    serde_json::from_slice(body).map_err(|e| {
        let html = content_type.to_ascii_lowercase().contains("html")
            || body.trim_ascii_start().starts_with(b"<");
        if html || e.is_eof() || e.is_syntax() {
            let what = match (html, e.is_eof()) {
                (true, _) => "an html page",
                (false, true) => "json that ends early",
                (false, false) => "a body that is not json",
            };
            SalesforceError::GarbledResponse {
                operation: operation.to_owned(),
                detail: format!(
                    "{what}, content type {content_type:?}: {}",
                    crate::client::snippet(body).escape_debug()
                ),
            }
        } else {
            SalesforceError::UnexpectedResponse {
                operation: operation.to_owned(),
                detail: format!("body is not the documented json: {e}"),
            }
        }
    })
}

#[cfg(test)]
mod garbage_tests {
    use coffer_core::{Classify, ErrorClass};

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Job {
        id: String,
        state: String,
    }

    fn class_of(content_type: &str, body: &[u8]) -> (ErrorClass, String) {
        let err = parse_json::<Job>("poll bulk query job 750x", content_type, body)
            .expect_err("garbage must not parse");
        (err.class(), err.to_string())
    }

    #[test]
    fn html_truncated_json_and_non_json_are_retryable_a_wrong_shape_is_permanent() {
        let html = b"<html><head><title>Maintenance</title></head><body>Down</body></html>";
        let (class, text) = class_of("text/html; charset=utf-8", html);
        assert_eq!(class, ErrorClass::Retryable, "{text}");
        assert!(
            text.contains("an html page") && text.contains("text/html"),
            "{text}"
        );
        // An HTML page sent as JSON is still a page.
        assert_eq!(class_of("application/json", html).0, ErrorClass::Retryable);
        let (class, text) = class_of("application/json", br#"{"id":"750x","sta"#);
        assert_eq!(class, ErrorClass::Retryable, "{text}");
        assert!(text.contains("json that ends early"), "{text}");
        let (class, text) = class_of("text/plain", b"Service Unavailable");
        assert_eq!(class, ErrorClass::Retryable, "{text}");
        let (class, text) = class_of("application/json", br#"{"jobId":"750x"}"#);
        assert_eq!(class, ErrorClass::Permanent, "{text}");
        assert!(text.contains("not the documented json"), "{text}");
        let (_, text) = class_of("text/html", b"<p>\x1b[31m\0</p>");
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }

    #[test]
    fn well_formed_json_parses() {
        let job: Job = parse_json("op", "application/json", br#"{"id":"750x","state":"Open"}"#)
            .expect("parses");
        assert_eq!(job.id, "750x");
    }
}
