//! Error classes: the one question every boundary error must answer.
//!
//! Each boundary crate (salesforce, storage, catalog, queue) has its own typed error. They all
//! implement [`Classify`], so the worker can decide what to do with a failed job without knowing
//! where the failure came from:
//!
//! - [`ErrorClass::Retryable`]: the same request may succeed later (network, 5xx, throttling,
//!   a broker or database restart). The job is retried with a growing delay.
//! - [`ErrorClass::Permanent`]: retrying cannot help (bad input, unknown tenant, access denied,
//!   a misconfigured bucket). The job goes to the dead-letter queue with the reason.

use std::fmt;

/// Whether retrying the failed operation can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The operation may succeed if tried again later.
    Retryable,
    /// The operation will fail the same way every time; a person must fix something.
    Permanent,
}

impl ErrorClass {
    /// Lowercase name, used in logs and in the dead-letter header.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every boundary error.
pub trait Classify {
    /// Whether the failed operation is worth retrying.
    fn class(&self) -> ErrorClass;

    /// Shorthand for `self.class() == ErrorClass::Retryable`.
    fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }
}
