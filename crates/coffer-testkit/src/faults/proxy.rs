//! [`S3FaultProxy`]: forwards S3 requests to the emulator, or breaks them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// One kind of S3 fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum S3Fault {
    /// `503 SlowDown`, as S3 throttles.
    SlowDown,
    /// `500 InternalError`.
    InternalError,
    /// The connection closed with no response.
    Reset,
    /// The request forwarded after 1 to 3 seconds.
    Latency,
    /// A request body (a part, an object) forwarded halfway, then the connection closed.
    CutMidBody,
}

impl S3Fault {
    /// A name for the suite's table.
    pub fn name(self) -> &'static str {
        match self {
            S3Fault::SlowDown => "s3 503 SlowDown",
            S3Fault::InternalError => "s3 500 InternalError",
            S3Fault::Reset => "s3 connection reset",
            S3Fault::Latency => "s3 latency 1-3 s",
            S3Fault::CutMidBody => "s3 body cut mid-part",
        }
    }
}

/// How often each fault hits a request while faults are on (each a probability; their sum is
/// the share of requests broken).
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    /// `503 SlowDown`.
    pub slow_down: f64,
    /// `500 InternalError`.
    pub internal_error: f64,
    /// Reset.
    pub reset: f64,
    /// Delay.
    pub latency: f64,
    /// Body cut (only requests with a body of 1 KiB or more).
    pub cut_mid_body: f64,
}

impl FaultRates {
    /// A few percent of requests each.
    pub fn moderate() -> Self {
        FaultRates {
            slow_down: 0.02,
            internal_error: 0.01,
            reset: 0.01,
            latency: 0.01,
            cut_mid_body: 0.04,
        }
    }
}

struct Shared {
    upstream: String,
    client: Client<HttpConnector, Body>,
    rates: FaultRates,
    enabled: AtomicBool,
    rng: Mutex<StdRng>,
    injected: Mutex<BTreeMap<S3Fault, u64>>,
}

/// The proxy; stops when dropped.
pub struct S3FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl S3FaultProxy {
    /// Listens on a free loopback port, forwarding to `upstream` (`http://127.0.0.1:4566`).
    /// Faults start off.
    pub async fn start(upstream: &str, rates: FaultRates, seed: u64) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            rates,
            enabled: AtomicBool::new(false),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            injected: Mutex::new(BTreeMap::new()),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// The endpoint workers use instead of the emulator's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Turns faults on or off.
    pub fn set_enabled(&self, on: bool) {
        self.shared.enabled.store(on, Ordering::Relaxed);
    }

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<S3Fault, u64> {
        self.shared
            .injected
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

impl Drop for S3FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The fault for this request, if any (and counts it).
fn choose(shared: &Shared, has_body: bool) -> Option<S3Fault> {
    if !shared.enabled.load(Ordering::Relaxed) {
        return None;
    }
    let roll: f64 = shared.rng.lock().ok()?.random();
    let r = shared.rates;
    let table = [
        (S3Fault::SlowDown, r.slow_down),
        (S3Fault::InternalError, r.internal_error),
        (S3Fault::Reset, r.reset),
        (S3Fault::Latency, r.latency),
        (
            S3Fault::CutMidBody,
            if has_body { r.cut_mid_body } else { 0.0 },
        ),
    ];
    let mut at = 0.0;
    let fault = table.iter().find_map(|(fault, p)| {
        at += p;
        (roll < at).then_some(*fault)
    })?;
    if let Ok(mut counts) = shared.injected.lock() {
        *counts.entry(fault).or_default() += 1;
    }
    Some(fault)
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, BoxError> {
    let length = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    match choose(&shared, length >= 1024) {
        None => forward(&shared, req, None).await,
        Some(S3Fault::SlowDown) => Ok(s3_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
        )),
        Some(S3Fault::InternalError) => Ok(s3_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "We encountered an internal error. Please try again.",
        )),
        Some(S3Fault::Reset) => Err("fault: connection reset".into()),
        Some(S3Fault::Latency) => {
            let ms = shared
                .rng
                .lock()
                .map(|mut r| r.random_range(1_000..3_000))
                .unwrap_or(1_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            forward(&shared, req, None).await
        }
        Some(S3Fault::CutMidBody) => {
            let _ = forward(&shared, req, Some(length / 2)).await;
            Err("fault: request body cut".into())
        }
    }
}

/// Sends the request upstream unchanged (headers, `Host` included), its body cut after `cut`
/// bytes when asked.
async fn forward(
    shared: &Shared,
    req: Request<Incoming>,
    cut: Option<u64>,
) -> Result<Response<Body>, BoxError> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = format!("{}{path}", shared.upstream).parse()?;
    let body: Body = match cut {
        None => body.map_err(BoxError::from).boxed(),
        Some(limit) => cut_body(body, limit),
    };
    let resp = shared
        .client
        .request(Request::from_parts(parts, body))
        .await?;
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        body.map_err(BoxError::from).boxed(),
    ))
}

/// `body`, failing once `limit` bytes have gone through.
fn cut_body(body: Incoming, limit: u64) -> Body {
    let mut sent = 0u64;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(BoxError::from)?;
        if sent + chunk.len() as u64 > limit {
            return Err(BoxError::from("fault: body cut"));
        }
        sent += chunk.len() as u64;
        Ok(Frame::data(chunk))
    });
    http_body_util::BodyExt::boxed(StreamBody::new(stream))
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault</RequestId></Error>"
    );
    let mut resp = Response::new(
        Full::new(Bytes::from(xml))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    resp
}
