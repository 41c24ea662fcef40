//! Trace context in message headers: a job's span continues the trace of the span that
//! published it, whichever process that was (W3C `traceparent`/`tracestate` headers, the same
//! names an OpenTelemetry-instrumented AMQP client in any language reads).
//!
//! The propagator is the process's global one: `coffer-telemetry` installs the W3C propagator
//! when traces are exported; without it nothing is injected and nothing extracted.

use lapin::types::{AMQPValue, FieldTable};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::headers;

/// Adds the current span's context to `headers`.
pub(crate) fn inject_current(headers: &mut FieldTable) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers));
    });
}

/// Makes `span` a child of the context carried in `headers`, if any.
pub(crate) fn continue_trace(span: &tracing::Span, headers: Option<&FieldTable>) {
    let Some(headers) = headers else { return };
    let parent: Context =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if let Err(e) = span.set_parent(parent) {
        tracing::trace!(error = %e, "span not linked to the publisher's trace");
    }
}

struct HeaderInjector<'a>(&'a mut FieldTable);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        headers::put_str(self.0, key, &value);
    }
}

struct HeaderExtractor<'a>(&'a FieldTable);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            AMQPValue::ShortString(s) => Some(s.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    #[test]
    fn a_traceparent_survives_the_round_trip_through_amqp_headers() {
        let mut h = FieldTable::default();
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers::put_str(&mut h, "traceparent", traceparent);
        let propagator = TraceContextPropagator::new();
        let cx = propagator.extract(&HeaderExtractor(&h));
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut out = FieldTable::default();
        propagator.inject_context(&cx, &mut HeaderInjector(&mut out));
        assert_eq!(
            headers::get_str(&out, "traceparent").as_deref(),
            Some(traceparent)
        );
    }
}
