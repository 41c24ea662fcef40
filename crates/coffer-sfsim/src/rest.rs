//! REST resources beside Bulk: `query` / `queryAll` (JSON records paged by `nextRecordsUrl`,
//! the fallback for objects Bulk API 2.0 refuses) and `limits`.
//!
//! A query runs once; its rows are kept under a cursor id (`01g...`) and each further batch is
//! served from `/query/{cursor}-{offset}`, as Salesforce does. The batch size follows
//! `Sforce-Query-Options: batchSize=N` (at most 2,000; default 2,000).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::bulk::{self, CreateJob};
use crate::ids::{pod_of, record_id};
use crate::server::{Sim, authorize, lock, sf_error};

/// Largest (and default) batch of records per response.
const MAX_BATCH: usize = 2_000;

/// The rows of one REST query, kept for `nextRecordsUrl` requests.
#[derive(Debug)]
pub struct Cursor {
    /// The object queried.
    object: String,
    /// Selected field names.
    columns: Vec<String>,
    /// Describe types of the columns.
    types: Vec<&'static str>,
    /// Rows as cell strings (empty: null).
    rows: Arc<bulk::ResultSet>,
    /// Records per response.
    batch: usize,
}

/// `GET /query?q=`.
pub async fn query(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    start(&sim, &version, &headers, &params, "query")
}

/// `GET /queryAll?q=`.
pub async fn query_all(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    start(&sim, &version, &headers, &params, "queryAll")
}

/// `GET /query/{cursor}-{offset}` (and the same under `queryAll`).
pub async fn query_more(
    State(sim): State<Arc<Sim>>,
    Path((version, locator)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let version = match authorize(&sim, &headers, &version) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let invalid = || {
        sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        )
    };
    let Some((id, offset)) = locator.rsplit_once('-') else {
        return invalid();
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return invalid();
    };
    let cursors = lock(&sim.cursors);
    match cursors.get(id) {
        Some(cursor) if offset <= cursor.rows.len() => {
            axum::Json(batch(cursor, id, offset, &version)).into_response()
        }
        _ => invalid(),
    }
}

fn start(
    sim: &Sim,
    version: &str,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    operation: &str,
) -> Response {
    let version = match authorize(sim, headers, version) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let Some(q) = params.get("q").filter(|q| !q.trim().is_empty()) else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string (q) is required",
        );
    };
    let req = CreateJob {
        operation: Some(operation.to_owned()),
        query: Some(q.clone()),
        content_type: None,
        column_delimiter: None,
        line_ending: None,
    };
    let planned = match bulk::plan_at(&sim.org, &sim.store.snapshot(), &req) {
        Ok(p) => p,
        Err(e) => return sf_error(StatusCode::BAD_REQUEST, e.code, &e.message),
    };
    let object = sim.org.object(planned.object);
    let types = planned
        .columns
        .iter()
        .map(|c| {
            object
                .and_then(|o| o.field(c))
                .map(|f| f.ftype)
                .unwrap_or("string")
        })
        .collect();
    let cursor = Cursor {
        object: planned.object.to_owned(),
        columns: planned.columns,
        types,
        rows: Arc::new(planned.rows),
        batch: batch_size(headers),
    };
    let mut cursors = lock(&sim.cursors);
    let id = record_id(
        "01g",
        &pod_of(sim.org_id.as_str()),
        cursors.len() as u64 + 1,
    );
    let body = batch(&cursor, &id, 0, &version);
    cursors.insert(id, cursor);
    axum::Json(body).into_response()
}

/// `Sforce-Query-Options: batchSize=N`, capped at 2,000.
fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("Sforce-Query-Options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|o| o.trim().strip_prefix("batchSize="))
                .find_map(|n| n.trim().parse::<usize>().ok())
        })
        .unwrap_or(MAX_BATCH)
        .clamp(1, MAX_BATCH)
}

/// The response for records `offset..offset + batch`.
fn batch(cursor: &Cursor, id: &str, offset: usize, version: &str) -> Value {
    let end = offset.saturating_add(cursor.batch).min(cursor.rows.len());
    let records: Vec<Value> = cursor
        .rows
        .cells(offset.min(end), end)
        .iter()
        .map(|row| record(cursor, row, version))
        .collect();
    let mut body = json!({
        "totalSize": cursor.rows.len(),
        "done": end >= cursor.rows.len(),
        "records": records,
    });
    if end < cursor.rows.len()
        && let Value::Object(map) = &mut body
    {
        map.insert(
            "nextRecordsUrl".into(),
            json!(format!("/services/data/v{version}/query/{id}-{end}")),
        );
    }
    body
}

/// One record as JSON: `attributes`, then each selected field typed as the REST API types it.
fn record(cursor: &Cursor, row: &[String], version: &str) -> Value {
    let mut map = Map::new();
    let id = cursor
        .columns
        .iter()
        .position(|c| c == "Id")
        .and_then(|i| row.get(i))
        .cloned()
        .unwrap_or_default();
    map.insert(
        "attributes".into(),
        json!({
            "type": cursor.object,
            "url": format!("/services/data/v{version}/sobjects/{}/{id}", cursor.object),
        }),
    );
    for ((column, ftype), cell) in cursor.columns.iter().zip(&cursor.types).zip(row) {
        map.insert(column.clone(), typed(ftype, cell));
    }
    Value::Object(map)
}

/// A cell as a JSON value: empty is null, booleans and numbers are typed.
pub(crate) fn typed(ftype: &str, cell: &str) -> Value {
    if cell.is_empty() {
        return Value::Null;
    }
    match ftype {
        "boolean" => Value::Bool(cell == "true"),
        "int" | "double" | "currency" | "percent" => {
            match serde_json::from_str::<serde_json::Number>(cell) {
                Ok(n) if n.to_string() == cell => Value::Number(n),
                _ => Value::String(cell.to_owned()),
            }
        }
        _ => Value::String(cell.to_owned()),
    }
}

/// `GET /limits/`: the org's allocations and what remains of them.
pub async fn limits(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let (used, max) = sim.faults.usage();
    let jobs = sim.job_counter.load(std::sync::atomic::Ordering::Relaxed);
    let limit = |max: u64, used: u64| json!({ "Max": max, "Remaining": max.saturating_sub(used) });
    axum::Json(json!({
        "DailyApiRequests": limit(max, used),
        "DailyBulkApiBatches": limit(15_000, 0),
        "DailyBulkV2QueryJobs": limit(10_000, jobs),
        "DailyBulkV2QueryFileStorageMB": limit(976_562, 0),
        "DataStorageMB": limit(1_024, 0),
        "FileStorageMB": limit(2_048, 0),
    }))
    .into_response()
}

/// `GET /limits/recordCount?sObjects=A,B`: the number of live records of each object asked for
/// (every object when none is named); unknown names are left out, as Salesforce does.
pub async fn record_count(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let snapshot = sim.store.snapshot();
    let names: Vec<String> = match params.get("sObjects").filter(|s| !s.trim().is_empty()) {
        Some(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
        None => sim.org.objects.iter().map(|o| o.name.to_owned()).collect(),
    };
    let counts: Vec<Value> = names
        .iter()
        .filter_map(|name| sim.org.object(name))
        .map(|def| {
            let count = crate::store::View::new(&sim.org, &snapshot, def, false).len();
            json!({ "count": count, "name": def.name })
        })
        .collect();
    axum::Json(json!({ "sObjects": counts })).into_response()
}
