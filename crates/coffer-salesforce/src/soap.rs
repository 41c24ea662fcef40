//! Undelete through the SOAP API (the REST API has no undelete): records still in the Recycle
//! Bin come back with their original ids, and so do the children a cascade delete took with them.
//!
//! One call is `POST {instance_url}/services/Soap/u/{version}` with `SOAPAction: undelete` and an
//! envelope in the partner namespace `urn:partner.soap.sforce.com` that carries the session in its
//! `SessionHeader`, at most [`UNDELETE_MAX_IDS`] ids per call (larger inputs are split). Results
//! come back in request order as [`RecordOutcome`]s. SOAP reports an expired session as a fault
//! (`INVALID_SESSION_ID`, HTTP 500) rather than a 401: the client mints a new token once and sends
//! the call again, as it does for REST. Other faults become [`SalesforceError::SoapFault`],
//! classified like REST error codes.
//!
//! An undelete replayed after a lost answer reports records it did restore as failed (they are no
//! longer in the Recycle Bin), so a call is sent again only when the connection could not be
//! established. The envelope holds the access token: it is built inside the request and never
//! logged, and no error quotes it.

use coffer_core::secret::ExposeSecret;
use quick_xml::events::Event;
use reqwest::StatusCode;

use crate::client::snippet;
use crate::collections::{RecordError, RecordOutcome, is_record_id};
use crate::{SalesforceClient, SalesforceError};

/// Ids one `undelete` call takes at most.
pub const UNDELETE_MAX_IDS: usize = 200;

const PARTNER_NS: &str = "urn:partner.soap.sforce.com";
const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// What a SOAP call answered, once faults that are errors have been turned into errors.
enum SoapReply {
    /// A 2xx body.
    Body(bytes::Bytes),
    /// `INVALID_SESSION_ID` (or a 401) for the session of this generation.
    SessionExpired(u64),
}

impl SalesforceClient {
    /// Restores the records with `ids` from the Recycle Bin, [`UNDELETE_MAX_IDS`] per call;
    /// outcomes in input order. A record no longer in the Recycle Bin fails with
    /// `UNDELETE_FAILED`; after the bin is emptied it can only be inserted again, with a new id.
    pub async fn undelete_records<S: AsRef<str>>(
        &self,
        ids: &[S],
    ) -> Result<Vec<RecordOutcome>, SalesforceError> {
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        if let Some(bad) = ids.iter().find(|id| !is_record_id(id)) {
            return Err(SalesforceError::InvalidWriteRequest {
                operation: "undelete records (soap)".into(),
                detail: format!("{bad:?} is not a record id"),
            });
        }
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(UNDELETE_MAX_IDS) {
            out.extend(self.undelete_chunk(chunk).await?);
        }
        Ok(out)
    }

    async fn undelete_chunk(&self, ids: &[&str]) -> Result<Vec<RecordOutcome>, SalesforceError> {
        let op = format!("undelete {} records (soap)", ids.len());
        let body = match self.soap_undelete(&op, ids).await? {
            SoapReply::Body(body) => body,
            SoapReply::SessionExpired(generation) => {
                tracing::info!(
                    operation = %op,
                    "salesforce session expired or invalid; minting a new token"
                );
                self.renew_session(generation).await?;
                match self.soap_undelete(&op, ids).await? {
                    SoapReply::Body(body) => body,
                    SoapReply::SessionExpired(_) => {
                        return Err(SalesforceError::SessionRejected { operation: op });
                    }
                }
            }
        };
        let outcomes = parse_undelete(&op, &body)?;
        if outcomes.len() != ids.len() {
            return Err(unexpected(
                &op,
                &format!("{} results for {} ids", outcomes.len(), ids.len()),
            ));
        }
        let failed = outcomes.iter().filter(|o| !o.is_success()).count();
        tracing::debug!(operation = %op, records = ids.len(), failed, "undelete call done");
        Ok(outcomes)
    }

    /// One `undelete` call, sent again only if it never left.
    async fn soap_undelete(&self, op: &str, ids: &[&str]) -> Result<SoapReply, SalesforceError> {
        let url = format!(
            "{}/services/Soap/u/{}",
            self.instance_url().trim_end_matches('/'),
            self.api_version()
        );
        self.with_unsent_retries(op, || async {
            let (resp, generation) = self
                .send_with_session(op, |http, token| {
                    http.post(&url)
                        .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=UTF-8")
                        .header("SOAPAction", "undelete")
                        .body(undelete_envelope(token.expose_secret(), ids))
                })
                .await?;
            read_reply(op, resp, generation).await
        })
        .await
    }
}

/// The request envelope. Holds the session id: never log it.
fn undelete_envelope(session_id: &str, ids: &[&str]) -> String {
    use quick_xml::escape::escape;
    let ids: String = ids
        .iter()
        .map(|id| format!("<urn:ids>{}</urn:ids>", escape(*id)))
        .collect();
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="{env}" xmlns:urn="{ns}">"#,
            "<soapenv:Header><urn:SessionHeader><urn:sessionId>{session}</urn:sessionId>",
            "</urn:SessionHeader></soapenv:Header>",
            "<soapenv:Body><urn:undelete>{ids}</urn:undelete></soapenv:Body></soapenv:Envelope>"
        ),
        env = SOAP_ENV_NS,
        ns = PARTNER_NS,
        session = escape(session_id),
        ids = ids,
    )
}

/// Reads the body; turns faults into errors, but an expired session into a reply to renew on.
async fn read_reply(
    op: &str,
    resp: reqwest::Response,
    generation: u64,
) -> Result<SoapReply, SalesforceError> {
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|source| SalesforceError::Transport {
            operation: op.to_owned(),
            source,
        })?;
    if status.is_success() {
        return Ok(SoapReply::Body(body));
    }
    if status == StatusCode::UNAUTHORIZED {
        return Ok(SoapReply::SessionExpired(generation));
    }
    let Some((code, message)) = parse_document(op, &body).ok().and_then(|d| d.fault) else {
        return Err(SalesforceError::Api {
            operation: op.to_owned(),
            status: status.as_u16(),
            code: String::new(),
            message: snippet(&body),
        });
    };
    tracing::debug!(operation = op, status = status.as_u16(), code = %code, "salesforce soap fault");
    match code.as_str() {
        "INVALID_SESSION_ID" => Ok(SoapReply::SessionExpired(generation)),
        "REQUEST_LIMIT_EXCEEDED" if !message.contains("ConcurrentRequests") => {
            Err(SalesforceError::LimitExceeded {
                operation: op.to_owned(),
                message,
            })
        }
        _ => Err(SalesforceError::SoapFault {
            operation: op.to_owned(),
            code,
            message,
        }),
    }
}

/// What the parser keeps of a SOAP response: `result` elements and the fault, if any.
#[derive(Debug, Default)]
struct SoapDocument {
    results: Vec<PartialResult>,
    /// (`faultcode` without its namespace prefix, `faultstring`).
    fault: Option<(String, String)>,
}

#[derive(Debug, Default)]
struct PartialResult {
    id: Option<String>,
    success: Option<bool>,
    errors: Vec<RecordError>,
}

impl SoapDocument {
    /// An element opens under `parent`.
    fn open(&mut self, parent: Option<&str>, name: &str) {
        match (parent, name) {
            (Some("undeleteResponse"), "result") => self.results.push(PartialResult::default()),
            (Some("result"), "errors") => {
                if let Some(r) = self.results.last_mut() {
                    r.errors.push(RecordError {
                        status_code: String::new(),
                        message: String::new(),
                        fields: Vec::new(),
                    });
                }
            }
            (Some("Fault"), _) if self.fault.is_none() => {
                self.fault = Some((String::new(), String::new()));
            }
            _ => {}
        }
    }

    /// An element under `parent` closes with `text` as its content.
    fn close(&mut self, parent: Option<&str>, name: &str, text: &str) {
        let text = text.trim();
        let result = self.results.last_mut();
        match (parent, name) {
            (Some("result"), "id") => {
                if let Some(r) = result {
                    r.id = Some(text.to_owned()).filter(|t| !t.is_empty());
                }
            }
            (Some("result"), "success") => {
                if let Some(r) = result {
                    r.success = Some(text == "true");
                }
            }
            (Some("errors"), "statusCode") => {
                if let Some(e) = last_error(result) {
                    e.status_code = text.to_owned();
                }
            }
            (Some("errors"), "message") => {
                if let Some(e) = last_error(result) {
                    e.message = text.to_owned();
                }
            }
            (Some("errors"), "fields") => {
                if let Some(e) = last_error(result) {
                    e.fields.push(text.to_owned());
                }
            }
            (Some("Fault"), "faultcode") => {
                let code = text.rsplit(':').next().unwrap_or(text).to_owned();
                if let Some(f) = &mut self.fault {
                    f.0 = code;
                }
            }
            (Some("Fault"), "faultstring") => {
                if let Some(f) = &mut self.fault {
                    f.1 = text.to_owned();
                }
            }
            _ => {}
        }
    }
}

fn last_error(result: Option<&mut PartialResult>) -> Option<&mut RecordError> {
    result.and_then(|r| r.errors.last_mut())
}

/// Parses a SOAP response into its results and fault, by local element names.
fn parse_document(op: &str, body: &[u8]) -> Result<SoapDocument, SalesforceError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| unexpected(op, &format!("soap response is not utf-8: {e}")))?;
    let bad = |e: quick_xml::Error| unexpected(op, &format!("soap response is not xml: {e}"));
    let mut reader = quick_xml::Reader::from_str(text);
    let mut doc = SoapDocument::default();
    let mut stack: Vec<String> = Vec::new();
    let mut content = String::new();
    loop {
        match reader.read_event().map_err(bad)? {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_owned();
                doc.open(stack.last().map(String::as_str), &name);
                stack.push(name);
                content.clear();
            }
            Event::Empty(e) => {
                let name = e.local_name().as_ref().to_owned();
                let parent = stack.last().map(String::as_str);
                doc.open(parent, &name);
                doc.close(parent, &name, "");
            }
            Event::End(_) => {
                if let Some(name) = stack.pop() {
                    doc.close(stack.last().map(String::as_str), &name, &content);
                }
                content.clear();
            }
            Event::Text(t) => content.push_str(&t.xml10_content()),
            Event::CData(t) => content.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                let reference = format!("&{};", &*r);
                let resolved = quick_xml::escape::unescape(&reference)
                    .map_err(|e| unexpected(op, &format!("soap response: {e}")))?;
                content.push_str(&resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(doc)
}

/// The `undeleteResponse` results, in order.
fn parse_undelete(op: &str, body: &[u8]) -> Result<Vec<RecordOutcome>, SalesforceError> {
    let doc = parse_document(op, body)?;
    if let Some((code, message)) = doc.fault {
        return Err(SalesforceError::SoapFault {
            operation: op.to_owned(),
            code,
            message,
        });
    }
    doc.results
        .into_iter()
        .map(|r| match (r.success, r.id) {
            (Some(true), Some(id)) => Ok(RecordOutcome::Succeeded { id }),
            (Some(false), id) => Ok(RecordOutcome::Failed {
                id,
                errors: r.errors,
            }),
            _ => Err(unexpected(op, "a result has no success flag or no id")),
        })
        .collect()
}

fn unexpected(op: &str, detail: &str) -> SalesforceError {
    SalesforceError::UnexpectedResponse {
        operation: op.to_owned(),
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use coffer_core::{Classify, ErrorClass};

    use super::*;

    #[test]
    fn the_envelope_escapes_the_session_and_lists_ids_in_order() {
        let xml = undelete_envelope("00D!a<b&c", &["001A", "001B"]);
        assert!(
            xml.contains("<urn:sessionId>00D!a&lt;b&amp;c</urn:sessionId>"),
            "{xml}"
        );
        assert!(xml.contains(
            "<urn:undelete><urn:ids>001A</urn:ids><urn:ids>001B</urn:ids></urn:undelete>"
        ));
        assert!(xml.contains(r#"xmlns:urn="urn:partner.soap.sforce.com""#));
    }

    #[test]
    fn results_faults_and_entities_parse() {
        let body = concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
            "<soapenv:Body><undeleteResponse>",
            "<result><id>001A</id><success>true</success></result>",
            r#"<result><errors><fields>Name</fields><message>a &amp; b &#x41;</message><statusCode>UNDELETE_FAILED</statusCode></errors><id xsi:nil="true"/><success>false</success></result>"#,
            "</undeleteResponse></soapenv:Body></soapenv:Envelope>"
        );
        let outcomes = parse_undelete("t", body.as_bytes()).unwrap();
        assert_eq!(outcomes[0], RecordOutcome::Succeeded { id: "001A".into() });
        let RecordOutcome::Failed { id, errors } = &outcomes[1] else {
            panic!("{outcomes:?}")
        };
        assert_eq!(id, &None);
        assert_eq!(errors[0].status_code, "UNDELETE_FAILED");
        assert_eq!(errors[0].message, "a & b A");
        assert_eq!(errors[0].fields, vec!["Name".to_owned()]);

        let fault = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_TYPE</faultcode><faultstring>INVALID_TYPE: bad</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        let err = parse_undelete("t", fault.as_bytes()).unwrap_err();
        assert_eq!(err.code(), Some("INVALID_TYPE"));
        assert_eq!(err.class(), ErrorClass::Permanent);
        let busy = SalesforceError::SoapFault {
            operation: "t".into(),
            code: "SERVER_UNAVAILABLE".into(),
            message: String::new(),
        };
        assert_eq!(busy.class(), ErrorClass::Retryable);
    }
}
