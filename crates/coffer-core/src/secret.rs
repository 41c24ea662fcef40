//! Secrets: values that must never reach a log line, an error message or a metric label.
//!
//! Re-exports [`secrecy::SecretString`], whose `Debug` prints `[REDACTED]` and which has no
//! `Display`, so a secret cannot be formatted by accident; reading it takes an explicit
//! `expose_secret()` at the one place that sends it.

pub use secrecy::{ExposeSecret, SecretString};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_secret() {
        let s = SecretString::from("hunter2-very-secret".to_owned());
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2"),
            "secret leaked in Debug: {shown}"
        );
        assert_eq!(s.expose_secret(), "hunter2-very-secret");
    }
}
