//! The SOAP partner API's `undelete` call, the only way Salesforce offers to restore records
//! from the Recycle Bin: `POST /services/Soap/u/{version}` with `Content-Type: text/xml`, a
//! `SOAPAction` header and the OAuth access token as `<SessionHeader><sessionId>`.
//!
//! The request is read with `quick-xml` (namespace prefixes are ignored; elements are matched by
//! local name in the `urn:partner.soap.sforce.com` body): `<undelete><ids>ID</ids>...</undelete>`.
//! The answer is an `undeleteResponse` with one `result` per id in request order, `success`
//! false with `UNDELETE_FAILED` for ids not in the Recycle Bin. A bad session answers a SOAP
//! fault `sf:INVALID_SESSION_ID` (HTTP 500), as Salesforce does.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use quick_xml::Reader;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;

use crate::dml::RecordError;
use crate::server::{Sim, lock};

/// Most ids one `undelete` call may carry.
pub const MAX_IDS: usize = 200;

const ENVELOPE_OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#;
const ENVELOPE_CLOSE: &str = "</soapenv:Envelope>";

/// The SOAP route.
pub fn routes() -> Router<Arc<Sim>> {
    Router::new().route("/services/Soap/u/{version}", post(call))
}

/// What a request asks: the session, the call (first element of the body) and its `ids`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `SessionHeader/sessionId`.
    pub session: Option<String>,
    /// Local name of the call element (`undelete`).
    pub call: Option<String>,
    /// The call's `ids` elements, in order.
    pub ids: Vec<String>,
}

/// Reads a SOAP request envelope.
pub fn parse(xml: &str) -> Result<Request, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut request = Request::default();
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_owned();
                request.note_call(&stack, &name);
                stack.push(name);
                text.clear();
            }
            Event::Empty(e) => request.note_call(&stack, e.local_name().as_ref()),
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::CData(t) => text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                let name = r.xml10_content();
                match r.resolve_char_ref().ok().flatten() {
                    Some(c) => text.push(c),
                    None => text.push_str(resolve_predefined_entity(&name).unwrap_or_default()),
                }
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                request.note_text(&stack, &name, text.trim());
                text.clear();
            }
            Event::Eof => return Ok(request),
            _ => {}
        }
    }
}

impl Request {
    fn note_call(&mut self, stack: &[String], name: &str) {
        if self.call.is_none() && stack.last().is_some_and(|p| p == "Body") {
            self.call = Some(name.to_owned());
        }
    }

    fn note_text(&mut self, stack: &[String], name: &str, text: &str) {
        let parent = stack.last().map(String::as_str);
        match (name, parent) {
            ("sessionId", Some("SessionHeader")) => self.session = Some(text.to_owned()),
            ("ids", Some(p)) if self.call.as_deref() == Some(p) => self.ids.push(text.to_owned()),
            _ => {}
        }
    }
}

/// A SOAP fault: `faultcode`, `faultstring` and, for Salesforce's own codes, an
/// `UnexpectedErrorFault` detail.
fn fault(status: StatusCode, code: &str, message: &str) -> Response {
    let detail = match code.strip_prefix("sf:") {
        Some(exception) => format!(
            r#"<detail><sf:UnexpectedErrorFault xsi:type="sf:UnexpectedErrorFault"><sf:exceptionCode>{exception}</sf:exceptionCode><sf:exceptionMessage>{}</sf:exceptionMessage></sf:UnexpectedErrorFault></detail>"#,
            escape(message)
        ),
        None => String::new(),
    };
    let faultstring = match code.strip_prefix("sf:") {
        Some(exception) => format!("{exception}: {message}"),
        None => message.to_owned(),
    };
    let body = format!(
        "{ENVELOPE_OPEN}<soapenv:Body><soapenv:Fault><faultcode>{code}</faultcode><faultstring>{}</faultstring>{detail}</soapenv:Fault></soapenv:Body>{ENVELOPE_CLOSE}",
        escape(&faultstring)
    );
    xml(status, body)
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `POST /services/Soap/u/{version}`.
pub async fn call(
    State(sim): State<Arc<Sim>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let server = StatusCode::INTERNAL_SERVER_ERROR;
    if version.parse::<f64>().is_err() {
        return fault(
            server,
            "soapenv:Client",
            &format!("Invalid API version: {version}"),
        );
    }
    if !headers.contains_key("SOAPAction") {
        return fault(server, "soapenv:Client", "No SOAPAction header!");
    }
    let request = match std::str::from_utf8(&body)
        .map_err(|e| e.to_string())
        .and_then(parse)
    {
        Ok(request) => request,
        Err(e) => return fault(server, "soapenv:Client", &format!("Invalid XML: {e}")),
    };
    let valid = request
        .session
        .as_deref()
        .is_some_and(|s| lock(&sim.tokens).contains(s));
    if !valid {
        return fault(
            server,
            "sf:INVALID_SESSION_ID",
            "Invalid Session ID found in SessionHeader: Illegal Session",
        );
    }
    if request.call.as_deref() != Some("undelete") {
        let call = request.call.unwrap_or_default();
        return fault(
            server,
            "soapenv:Client",
            &format!("No operation available for request {{urn:partner.soap.sforce.com}}{call}"),
        );
    }
    if request.ids.len() > MAX_IDS {
        return fault(
            server,
            "sf:EXCEEDED_ID_LIMIT",
            &format!(
                "record limit reached. cannot submit more than {MAX_IDS} records into this call"
            ),
        );
    }
    let writer = sim.clone();
    let ids = request.ids.clone();
    let results = tokio::task::spawn_blocking(move || writer.write(|w| w.undelete_all(&ids)))
        .await
        .unwrap_or_default();
    tracing::debug!(ids = request.ids.len(), "sfsim answered a soap undelete");
    xml(StatusCode::OK, response(&request.ids, &results))
}

/// The `undeleteResponse` envelope: one `result` per requested id.
fn response(ids: &[String], results: &[Result<String, RecordError>]) -> String {
    let mut out = format!("{ENVELOPE_OPEN}<soapenv:Body><undeleteResponse>");
    for (id, result) in ids.iter().zip(results) {
        match result {
            Ok(id) => out.push_str(&format!(
                "<result><id>{}</id><success>true</success></result>",
                escape(id.as_str())
            )),
            Err(e) => out.push_str(&format!(
                "<result><errors><message>{}</message><statusCode>{}</statusCode></errors><id>{}</id><success>false</success></result>",
                escape(e.message.as_str()),
                e.code,
                escape(id.as_str())
            )),
        }
    }
    out.push_str(&format!(
        "</undeleteResponse></soapenv:Body>{ENVELOPE_CLOSE}"
    ));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_session_call_and_ids_whatever_the_prefixes() {
        let xml = r#"<?xml version="1.0"?>
<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">
  <env:Header><urn:SessionHeader><urn:sessionId>00D!AQ&amp;x</urn:sessionId></urn:SessionHeader></env:Header>
  <env:Body><urn:undelete><urn:ids>001A</urn:ids><urn:ids> 003B </urn:ids></urn:undelete></env:Body>
</env:Envelope>"#;
        let request = parse(xml).unwrap();
        assert_eq!(request.session.as_deref(), Some("00D!AQ&x"));
        assert_eq!(request.call.as_deref(), Some("undelete"));
        assert_eq!(request.ids, ["001A", "003B"]);
        assert!(parse("<a><b></a>").is_err());
    }
}
