//! REST writes: sObject Collections (`/composite/sobjects`: create, update and delete up to 200
//! records, results in request order, optional `allOrNone`) and the single-record sObject Rows
//! resource (`/sobjects/{type}/{id}`: get, update, delete; `POST /sobjects/{type}` creates).
//!
//! Upserts (`PATCH /composite/sobjects/{type}/{field}`) match each record by an external id
//! field (or `Id`) among live records: one match is updated, none creates, several fail with
//! `DUPLICATE_EXTERNAL_ID`; each result also says whether it `created` the record.
//!
//! A request that is not well formed (no `attributes.type`, an unknown object or field, more
//! than 200 records) answers `400` as a whole; otherwise `200` with one
//! `{id, success, errors: [{statusCode, message, fields}]}` per record. With `allOrNone` one
//! failure rolls everything back: failed records keep their error, the others report
//! `ALL_OR_NONE_OPERATION_ROLLED_BACK`. JSON `null` sets a field to null.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::dml::{RecordError, Writer, no_such_field};
use crate::schema::ObjectDef;
use crate::server::{Sim, authorize, sf_error};
use crate::store::{State as RecordState, normalize_id};

/// Most records one collections request may carry.
pub const MAX_RECORDS: usize = 200;

/// The collections and sObject Rows routes under `data` (`/services/data/{version}`).
pub fn routes(data: &str) -> Router<Arc<Sim>> {
    let collections = format!("{data}/composite/sobjects");
    let rows = format!("{data}/sobjects/{{name}}/{{id}}");
    Router::new()
        .route(&collections, post(create).patch(update).delete(delete))
        .route(
            &format!("{collections}/"),
            post(create).patch(update).delete(delete),
        )
        .route(
            &format!("{collections}/{{name}}/{{field}}"),
            axum::routing::patch(upsert),
        )
        .route(&format!("{data}/sobjects/{{name}}"), post(create_one))
        .route(&format!("{data}/sobjects/{{name}}/"), post(create_one))
        .route(&rows, get(get_one).patch(update_one).delete(delete_one))
}

/// A well-formed record of a request: its object, id (update) and changes.
struct Item {
    def: Option<&'static str>,
    id: Option<String>,
    changes: Vec<(String, Option<String>)>,
}

type Refusal = (StatusCode, &'static str, String);

fn bad(code: &'static str, message: impl Into<String>) -> Refusal {
    (StatusCode::BAD_REQUEST, code, message.into())
}

fn refuse((status, code, message): Refusal) -> Response {
    sf_error(status, code, &message)
}

/// A JSON value as the cell a field stores (`None`: null).
fn cell(value: &Value) -> Result<Option<String>, Refusal> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(bad(
            "JSON_PARSER_ERROR",
            "Cannot deserialize a field value from an object or array",
        )),
    }
}

/// Checks one JSON record against the org (`type` is the object when the URL names it).
fn item(sim: &Sim, record: &Value, object: Option<&str>) -> Result<Item, Refusal> {
    let map = record
        .as_object()
        .ok_or_else(|| bad("JSON_PARSER_ERROR", "A record must be a JSON object"))?;
    let name = object
        .or_else(|| map.get("attributes")?.get("type")?.as_str())
        .ok_or_else(|| bad("INVALID_TYPE", "Must send a concrete entity type."))?;
    let def = sim.org.object(name).ok_or_else(|| {
        bad(
            "INVALID_TYPE",
            format!("sObject type '{name}' is not supported."),
        )
    })?;
    let mut id = None;
    let mut changes = Vec::new();
    for (key, value) in map {
        if key == "attributes" {
            continue;
        }
        if key.eq_ignore_ascii_case("id") {
            id = value.as_str().map(str::to_owned);
            continue;
        }
        let field = def.field(key).ok_or_else(|| {
            let e = no_such_field(def, key);
            bad(e.code, e.message)
        })?;
        changes.push((field.name.to_owned(), cell(value)?));
    }
    Ok(Item {
        def: Some(def.name),
        id,
        changes,
    })
}

/// The `records` of a collections body, checked; and its `allOrNone`.
fn items(sim: &Sim, body: &[u8]) -> Result<(Vec<Item>, bool), Refusal> {
    let body: Value =
        serde_json::from_slice(body).map_err(|e| bad("JSON_PARSER_ERROR", e.to_string()))?;
    let records = body["records"]
        .as_array()
        .ok_or_else(|| bad("JSON_PARSER_ERROR", "records is required"))?;
    if records.len() > MAX_RECORDS {
        return Err(too_many());
    }
    let all_or_none = body["allOrNone"].as_bool().unwrap_or(false);
    let items = records
        .iter()
        .map(|r| item(sim, r, None))
        .collect::<Result<_, _>>()?;
    Ok((items, all_or_none))
}

fn too_many() -> Refusal {
    bad(
        "EXCEEDED_ID_LIMIT",
        format!(
            "record limit reached. cannot submit more than {MAX_RECORDS} records into this call"
        ),
    )
}

/// One write of a collections request.
type Op = fn(&mut Writer<'_>, Option<&ObjectDef>, &Item) -> Result<String, RecordError>;

fn unknown_type() -> RecordError {
    RecordError::new("INVALID_TYPE", "Must send a concrete entity type.")
}

fn do_create(
    w: &mut Writer<'_>,
    def: Option<&ObjectDef>,
    item: &Item,
) -> Result<String, RecordError> {
    let def = def.ok_or_else(unknown_type)?;
    if item.id.is_some() {
        return Err(RecordError::new(
            "INVALID_FIELD",
            "cannot specify Id in an insert call",
        ));
    }
    w.insert(def, &item.changes)
}

fn do_update(
    w: &mut Writer<'_>,
    def: Option<&ObjectDef>,
    item: &Item,
) -> Result<String, RecordError> {
    let def = def.ok_or_else(unknown_type)?;
    let id = item.id.as_deref().ok_or_else(|| {
        RecordError::new("MISSING_ARGUMENT", "Id not specified in an update call")
    })?;
    w.update(Some(def), id, &item.changes, None)
}

fn do_delete(
    w: &mut Writer<'_>,
    def: Option<&ObjectDef>,
    item: &Item,
) -> Result<String, RecordError> {
    w.delete(def, item.id.as_deref().unwrap_or_default(), false)
}

/// Runs `op` on every item in one write, rolling back on a failure under `all_or_none`.
async fn run(
    sim: Arc<Sim>,
    items: Vec<Item>,
    all_or_none: bool,
    op: Op,
) -> Vec<Result<String, RecordError>> {
    let writer = sim.clone();
    let done = tokio::task::spawn_blocking(move || {
        writer.write(|w| {
            let saved = w.overlay().clone();
            let results: Vec<_> = items
                .iter()
                .map(|item| op(w, item.def.and_then(|d| writer.org.object(d)), item))
                .collect();
            if all_or_none && results.iter().any(Result::is_err) {
                w.restore(saved);
                return results.into_iter().map(rolled_back).collect();
            }
            results
        })
    })
    .await;
    done.unwrap_or_else(|e| vec![Err(RecordError::new("UNKNOWN_EXCEPTION", e.to_string()))])
}

/// A body sent in a base64 field: (item index, object, field, bytes).
type Body = (usize, &'static str, String, Vec<u8>);

/// The bodies the items carry in blob fields (`Attachment.Body`, `ContentVersion.VersionData`).
fn bodies_of(sim: &Sim, items: &[Item]) -> Vec<Body> {
    use base64::Engine as _;
    let mut bodies = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(def) = item.def.and_then(|d| sim.org.object(d)) else {
            continue;
        };
        for (field, value) in &item.changes {
            let binary = def.field(field).filter(|f| f.is_binary());
            let bytes = value.as_deref().and_then(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .ok()
            });
            if let (Some(f), Some(bytes)) = (binary, bytes) {
                bodies.push((index, def.name, f.name.to_owned(), bytes));
            }
        }
    }
    bodies
}

/// Stores the bodies of the records written; a record whose body cannot be kept fails.
fn keep_bodies(
    sim: &Sim,
    mut results: Vec<Result<String, RecordError>>,
    bodies: Vec<Body>,
) -> Vec<Result<String, RecordError>> {
    for (index, sobject, field, bytes) in bodies {
        if let Some(Ok(id)) = results.get(index)
            && let Err(e) = sim.set_blob(sobject, id, &field, &bytes)
        {
            results[index] = Err(e);
        }
    }
    results
}

fn rolled_back(result: Result<String, RecordError>) -> Result<String, RecordError> {
    result.and_then(|_| {
        Err(RecordError::new(
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "Record rolled back because not all records were valid and the request was using AllOrNone header",
        ))
    })
}

/// A SaveResult/DeleteResult: `{id, success, errors}` (no `id` on failure).
fn result_json(result: &Result<String, RecordError>) -> Value {
    match result {
        Ok(id) => json!({ "id": id, "success": true, "errors": [] }),
        Err(e) => json!({
            "success": false,
            "errors": [{ "statusCode": e.code, "message": e.message, "fields": e.fields }],
        }),
    }
}

async fn collection(
    sim: Arc<Sim>,
    version: &str,
    headers: &HeaderMap,
    body: &[u8],
    op: Op,
) -> Response {
    if let Err(e) = authorize(&sim, headers, version) {
        return e.into_response();
    }
    let (items, all_or_none) = match items(&sim, body) {
        Ok(parsed) => parsed,
        Err(refusal) => return refuse(refusal),
    };
    if sim.faults.fail_this_collection_write() {
        return unavailable();
    }
    sim.faults.delay_write().await;
    let bodies = bodies_of(&sim, &items);
    let results = run(sim.clone(), items, all_or_none, op).await;
    let results = keep_bodies(&sim, results, bodies);
    sim.faults.delay_write().await;
    if sim.faults.lose_this_collection_answer() {
        return unavailable();
    }
    axum::Json(results.iter().map(result_json).collect::<Vec<_>>()).into_response()
}

/// The `503` of a write the fault injection refuses, before or after applying it.
fn unavailable() -> Response {
    sf_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVER_UNAVAILABLE",
        "Server unavailable, please retry later.",
    )
}

/// `PATCH /composite/sobjects/{type}/{field}`: creates or updates each record by `field`.
pub async fn upsert(
    State(sim): State<Arc<Sim>>,
    Path((version, name, field)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let Some(def) = sim.org.object(&name) else {
        return sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("The requested resource does not exist: sObject type '{name}'"),
        );
    };
    let Some(key) = def
        .field(&field)
        .filter(|f| f.external_id || f.name == "Id")
    else {
        return refuse(bad(
            "INVALID_FIELD",
            format!("Field {field} is not an external id field of {}", def.name),
        ));
    };
    let (def_name, key_name) = (def.name, key.name);
    let (items, all_or_none) = match items(&sim, &body) {
        Ok(parsed) => parsed,
        Err(refusal) => return refuse(refusal),
    };
    if items.iter().any(|i| i.def != Some(def_name)) {
        return refuse(bad(
            "INVALID_TYPE",
            format!("every record of this request must be a {def_name}"),
        ));
    }
    if sim.faults.fail_this_collection_write() {
        return unavailable();
    }
    sim.faults.delay_write().await;
    let bodies = bodies_of(&sim, &items);
    let results = run_upserts(sim.clone(), def_name, key_name, items, all_or_none).await;
    let created: Vec<bool> = results.iter().map(|r| matches!(r, Ok((_, true)))).collect();
    let results: Vec<_> = results.into_iter().map(|r| r.map(|(id, _)| id)).collect();
    let results = keep_bodies(&sim, results, bodies);
    sim.faults.delay_write().await;
    if sim.faults.lose_this_collection_answer() {
        return unavailable();
    }
    let answer: Vec<Value> = results
        .iter()
        .zip(created)
        .map(|(result, created)| {
            let mut json = result_json(result);
            if result.is_ok() {
                json["created"] = Value::Bool(created);
            }
            json
        })
        .collect();
    axum::Json(answer).into_response()
}

/// Upserts `items` of `object` by `field` in one write; results are (id, created).
async fn run_upserts(
    sim: Arc<Sim>,
    object: &'static str,
    field: &'static str,
    items: Vec<Item>,
    all_or_none: bool,
) -> Vec<Result<(String, bool), RecordError>> {
    let writer = sim.clone();
    let done = tokio::task::spawn_blocking(move || {
        let (Some(def), n) = (writer.org.object(object), items.len()) else {
            return Vec::new();
        };
        let Some(key) = def.field(field) else {
            return vec![Err(unknown_type()); n];
        };
        writer.write(|w| {
            let saved = w.overlay().clone();
            let mut index = w.external_index(def, key);
            let results: Vec<_> = items
                .iter()
                .map(|item| w.upsert(def, key, &mut index, &item.changes))
                .collect();
            if all_or_none && results.iter().any(Result::is_err) {
                w.restore(saved);
                return results
                    .into_iter()
                    .map(|r| rolled_back(r.map(|(id, _)| id)).map(|id| (id, false)))
                    .collect();
            }
            results
        })
    })
    .await;
    done.unwrap_or_else(|e| vec![Err(RecordError::new("UNKNOWN_EXCEPTION", e.to_string()))])
}

/// `POST /composite/sobjects`.
pub async fn create(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    collection(sim, &version, &headers, &body, do_create).await
}

/// `PATCH /composite/sobjects`.
pub async fn update(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    collection(sim, &version, &headers, &body, do_update).await
}

/// `DELETE /composite/sobjects?ids=a,b&allOrNone=true`.
pub async fn delete(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Err(e) = authorize(&sim, &headers, &version) {
        return e.into_response();
    }
    let ids: Vec<&str> = params
        .get("ids")
        .map(|ids| {
            ids.split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        return refuse(bad("MISSING_ARGUMENT", "ids is required"));
    }
    if ids.len() > MAX_RECORDS {
        return refuse(too_many());
    }
    let all_or_none = params.get("allOrNone").is_some_and(|v| v == "true");
    let items = ids
        .iter()
        .map(|id| Item {
            def: None,
            id: Some((*id).to_owned()),
            changes: Vec::new(),
        })
        .collect();
    let results = run(sim, items, all_or_none, do_delete).await;
    axum::Json(results.iter().map(result_json).collect::<Vec<_>>()).into_response()
}

/// `POST /sobjects/{type}`: `201 {id, success, errors}`, or `400` with the record's error.
pub async fn create_one(
    State(sim): State<Arc<Sim>>,
    Path((version, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    one(sim, &version, &headers, &name, None, &body, do_create).await
}

/// `PATCH /sobjects/{type}/{id}`: `204`, or `400`/`404` with the record's error.
pub async fn update_one(
    State(sim): State<Arc<Sim>>,
    Path((version, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    one(sim, &version, &headers, &name, Some(id), &body, do_update).await
}

/// `DELETE /sobjects/{type}/{id}`: `204`, or `400`/`404` with the record's error.
pub async fn delete_one(
    State(sim): State<Arc<Sim>>,
    Path((version, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    one(sim, &version, &headers, &name, Some(id), b"{}", do_delete).await
}

async fn one(
    sim: Arc<Sim>,
    version: &str,
    headers: &HeaderMap,
    name: &str,
    id: Option<String>,
    body: &[u8],
    op: Op,
) -> Response {
    if let Err(e) = authorize(&sim, headers, version) {
        return e.into_response();
    }
    let record: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return refuse(bad("JSON_PARSER_ERROR", e.to_string())),
    };
    let mut item = match item(&sim, &record, Some(name)) {
        Ok(item) => item,
        Err(refusal) => return refuse(refusal),
    };
    let creating = id.is_none();
    if id.is_some() {
        item.id = id;
    }
    let result = run(sim, vec![item], true, op).await.pop();
    match result {
        Some(Ok(id)) if creating => {
            (StatusCode::CREATED, axum::Json(result_json(&Ok(id)))).into_response()
        }
        Some(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Some(Err(e)) => {
            let status = match e.code {
                "ENTITY_IS_DELETED" | "INVALID_CROSS_REFERENCE_KEY" if !creating => {
                    StatusCode::NOT_FOUND
                }
                _ => StatusCode::BAD_REQUEST,
            };
            sf_error(status, e.code, &e.message)
        }
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /sobjects/{type}/{id}`: the live record with every field, typed; `404 NOT_FOUND` if
/// there is none, `404 ENTITY_IS_DELETED` if it is in the Recycle Bin.
pub async fn get_one(
    State(sim): State<Arc<Sim>>,
    Path((version, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let version = match authorize(&sim, &headers, &version) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let not_found = || {
        sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        )
    };
    let overlay = sim.store.snapshot();
    let found = normalize_id(&id)
        .and_then(|id| overlay.locate(&sim.org, &id))
        .filter(|(def, _)| def.name.eq_ignore_ascii_case(&name))
        .and_then(|(def, slot)| Some((def, overlay.record(&sim.org, def, slot)?)));
    let Some((def, record)) = found else {
        return not_found();
    };
    match record.state {
        RecordState::Live => axum::Json(render(def, &record.row, &version)).into_response(),
        RecordState::Deleted(_) => sf_error(
            StatusCode::NOT_FOUND,
            "ENTITY_IS_DELETED",
            "entity is deleted",
        ),
        RecordState::Purged => not_found(),
    }
}

/// A record as the REST API renders it: `attributes`, then every field typed; a blob field is
/// the URL of its body.
fn render(def: &ObjectDef, row: &[Option<String>], version: &str) -> Value {
    let id = row.first().cloned().flatten().unwrap_or_default();
    let url = format!("/services/data/v{version}/sobjects/{}/{id}", def.name);
    let mut map = Map::new();
    map.insert("attributes".into(), json!({ "type": def.name, "url": url }));
    for (field, value) in def.fields.iter().zip(row) {
        let value = if field.is_binary() {
            json!(format!("{url}/{}", field.name))
        } else {
            value
                .as_deref()
                .map_or(Value::Null, |v| crate::rest::typed(field.ftype, v))
        };
        map.insert(field.name.to_owned(), value);
    }
    Value::Object(map)
}
