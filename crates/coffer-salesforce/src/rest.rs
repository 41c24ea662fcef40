//! REST `query` / `queryAll`: the fallback for objects the Bulk API refuses (`INVALIDENTITY`).
//!
//! The first request is `GET /query?q=` (or `/queryAll?q=`); each answer holds `records` and,
//! until `done`, a `nextRecordsUrl` to GET next. Records are JSON objects whose key order is not
//! kept, so the columns come from the SELECT list: each page is converted to the same shape as a
//! Bulk results page (header in SELECT order, `attributes` dropped, null as the empty string,
//! relationship paths such as `Account.Name` followed into the nested record).

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::bulk::{CsvPage, QueryOperation};
use crate::describe::decode_json;
use crate::{SalesforceClient, SalesforceError};

/// Smallest and largest `batchSize` the REST query resource accepts.
const BATCH_RANGE: (usize, usize) = (200, 2_000);

/// A SOQL query read through REST.
#[derive(Debug, Clone)]
pub(crate) struct RestQuery {
    soql: String,
    operation: QueryOperation,
    /// Column paths in SELECT order.
    columns: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryResponse {
    done: bool,
    #[serde(default)]
    next_records_url: Option<String>,
    #[serde(default)]
    records: Vec<Map<String, Value>>,
}

impl RestQuery {
    /// Prepares `soql` for reading through REST.
    pub(crate) fn new(soql: &str, operation: QueryOperation) -> Self {
        RestQuery {
            soql: soql.to_owned(),
            operation,
            columns: select_columns(soql),
        }
    }

    /// GETs the first page (`next` is `None`) or the page at `nextRecordsUrl` `next`.
    pub(crate) async fn page(
        &self,
        client: &SalesforceClient,
        next: Option<&str>,
    ) -> Result<CsvPage, SalesforceError> {
        let operation = "read rest query results";
        let url = match next {
            Some(path) => format!("{}{path}", client.instance_url()),
            None => {
                let resource = match self.operation {
                    QueryOperation::Query => "query",
                    QueryOperation::QueryAll => "queryAll",
                };
                client.data_url(client.api_version(), resource)
            }
        };
        let batch = client
            .options()
            .max_records
            .clamp(BATCH_RANGE.0, BATCH_RANGE.1);
        let options = format!("batchSize={batch}");
        let first = next.is_none();
        let resp = client
            .send(operation, |http| {
                let req = http
                    .get(&url)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header("Sforce-Query-Options", options.as_str());
                if first {
                    req.query(&[("q", self.soql.as_str())])
                } else {
                    req
                }
            })
            .await?;
        let body: QueryResponse = decode_json(operation, resp).await?;
        let next_locator = match (body.done, body.next_records_url) {
            (false, Some(url)) => Some(url),
            (false, None) => {
                return Err(SalesforceError::UnexpectedResponse {
                    operation: operation.to_owned(),
                    detail: "done is false but nextRecordsUrl is missing".into(),
                });
            }
            (true, _) => None,
        };
        tracing::debug!(
            rows = body.records.len(),
            done = body.done,
            "read rest query results page"
        );
        Ok(self.to_page(&body.records, next, next_locator))
    }

    fn to_page(
        &self,
        records: &[Map<String, Value>],
        locator: Option<&str>,
        next_locator: Option<String>,
    ) -> CsvPage {
        let headers = self
            .columns
            .iter()
            .map(|c| canonical(records.first(), c))
            .collect::<csv::StringRecord>();
        let records = records
            .iter()
            .map(|r| self.columns.iter().map(|c| cell(r, c)).collect())
            .collect();
        CsvPage {
            headers,
            records,
            locator: locator.map(str::to_owned),
            next_locator,
        }
    }
}

/// The field paths of the SELECT list, as written.
fn select_columns(soql: &str) -> Vec<String> {
    let lower = soql.to_ascii_lowercase();
    let Some(start) = lower.find("select").map(|i| i + "select".len()) else {
        return Vec::new();
    };
    let bytes = lower.as_bytes();
    let end = (start..lower.len())
        .find(|&i| {
            lower[i..].starts_with("from")
                && bytes
                    .get(i.wrapping_sub(1))
                    .is_some_and(u8::is_ascii_whitespace)
                && bytes.get(i + 4).is_none_or(u8::is_ascii_whitespace)
        })
        .unwrap_or(lower.len());
    soql[start..end]
        .split(',')
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}

/// The entry of `map` whose key equals `key` ignoring case (SOQL names are case-insensitive).
fn entry<'a>(map: &'a Map<String, Value>, key: &str) -> Option<(&'a String, &'a Value)> {
    map.get_key_value(key)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
}

/// A plain column's name as the record spells it (the API name), else as written.
fn canonical(record: Option<&Map<String, Value>>, column: &str) -> String {
    match record {
        Some(r) if !column.contains('.') => entry(r, column)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| column.to_owned()),
        _ => column.to_owned(),
    }
}

/// The value at `path` (`Name`, `Account.Owner.Name`) as a CSV cell; null or missing is empty.
fn cell(record: &Map<String, Value>, path: &str) -> String {
    let mut current = record;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some((_, value)) = entry(current, part) else {
            return String::new();
        };
        if parts.peek().is_none() {
            return render(value);
        }
        match value {
            Value::Object(next) => current = next,
            _ => return String::new(),
        }
    }
    String::new()
}

fn render(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn select_list_is_read_in_order() {
        assert_eq!(
            select_columns("SELECT Id, Name,Account.Name\nFROM Contact WHERE Name = 'from'"),
            vec!["Id", "Name", "Account.Name"]
        );
        assert_eq!(
            select_columns("select Fromage__c from X"),
            vec!["Fromage__c"]
        );
    }

    #[test]
    fn records_become_csv_rows() {
        let q = RestQuery::new(
            "SELECT id, Amount, IsDeleted, Account.Name, Note FROM Opportunity",
            QueryOperation::Query,
        );
        let record: Map<String, Value> = serde_json::from_str(
            r#"{"attributes":{"type":"Opportunity"},"Id":"006x","Amount":12.5,"IsDeleted":false,"Account":{"attributes":{},"Name":"Acme"},"Note":null}"#,
        )
        .unwrap();
        let page = q.to_page(&[record], None, None);
        assert_eq!(
            page.headers.iter().collect::<Vec<_>>(),
            vec!["Id", "Amount", "IsDeleted", "Account.Name", "Note"]
        );
        assert_eq!(
            page.records[0].iter().collect::<Vec<_>>(),
            vec!["006x", "12.5", "false", "Acme", ""]
        );
    }
}
