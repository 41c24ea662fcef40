//! Coffer's wire messages: the jobs on the jobs queue and the lifecycle events on the events
//! exchange, generated from `proto/coffer/v1/*.proto`.
//!
//! Decoding goes through [`decode_job`], which checks the schema version and that the envelope
//! carries a job, so a worker never acts on a message it does not fully understand.

/// Generated types of package `coffer.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/coffer.v1.rs"));
}

use prost::Message;

/// The envelope schema versions this build understands.
pub const SUPPORTED_SCHEMA_VERSIONS: &[u32] = &[1];

/// The schema version this build writes.
pub const CURRENT_SCHEMA_VERSION: u32 = 1;

/// The largest job message a worker decodes. Jobs name ids, never data: the biggest legitimate
/// one is a restore naming some thousands of record ids (20 bytes each), far below this. A
/// larger body is refused before decoding, so an oversized message (RabbitMQ accepts up to
/// 128 MiB) never costs a worker its memory nor runs a job padded with junk.
pub const MAX_JOB_BYTES: usize = 1024 * 1024;

/// Why a message on the jobs queue cannot be acted on. Always permanent: the same bytes will
/// never decode differently.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The message has no body at all.
    #[error("empty job message (0 bytes): the publisher sent no JobEnvelope")]
    Empty,
    /// The message is larger than any job this worker knows ([`MAX_JOB_BYTES`]).
    #[error(
        "job message of {bytes} bytes is larger than the {max} bytes a job can take; refused without decoding"
    )]
    TooLarge {
        /// The body's size.
        bytes: usize,
        /// [`MAX_JOB_BYTES`].
        max: usize,
    },
    /// The bytes are not a protobuf `JobEnvelope`.
    #[error("malformed job message: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// A schema version from a newer (or broken) producer.
    #[error(
        "unsupported job schema version {found} (this worker understands {SUPPORTED_SCHEMA_VERSIONS:?})"
    )]
    UnsupportedVersion {
        /// The version found in the message.
        found: u32,
    },
    /// The envelope carries no job (an empty message, or a job kind added after this build).
    #[error("job message carries no job this worker knows")]
    NoJob,
}

/// Decodes and checks a job envelope.
pub fn decode_job(bytes: &[u8]) -> Result<v1::JobEnvelope, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > MAX_JOB_BYTES {
        return Err(DecodeError::TooLarge {
            bytes: bytes.len(),
            max: MAX_JOB_BYTES,
        });
    }
    let envelope = v1::JobEnvelope::decode(bytes)?;
    if !SUPPORTED_SCHEMA_VERSIONS.contains(&envelope.schema_version) {
        return Err(DecodeError::UnsupportedVersion {
            found: envelope.schema_version,
        });
    }
    if envelope.job.is_none() {
        return Err(DecodeError::NoJob);
    }
    Ok(envelope)
}

/// Encodes a message to bytes.
pub fn encode<M: Message>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::v1::{BackupKind, BackupRequested, JobEnvelope, job_envelope::Job};
    use super::*;

    fn backup_envelope(version: u32) -> JobEnvelope {
        JobEnvelope {
            schema_version: version,
            job_id: "0190f5b4-6b8e-7c3a-9d2e-1f0a2b3c4d5e".into(),
            requested_at_unix_ms: 1,
            requested_by: "test".into(),
            traceparent: String::new(),
            job: Some(Job::BackupRequested(BackupRequested {
                tenant_id: "acme".into(),
                org_id: "00D000000000001AAA".into(),
                kind: BackupKind::Full as i32,
                sobjects: vec![],
            })),
        }
    }

    #[test]
    fn a_job_round_trips() {
        let env = backup_envelope(CURRENT_SCHEMA_VERSION);
        let decoded = decode_job(&encode(&env)).expect("decodes");
        assert_eq!(decoded, env);
    }

    #[test]
    fn unknown_versions_are_refused() {
        let err = decode_job(&encode(&backup_envelope(2))).unwrap_err();
        assert!(
            matches!(err, DecodeError::UnsupportedVersion { found: 2 }),
            "{err}"
        );
    }

    #[test]
    fn empty_and_oversized_bodies_are_refused_before_decoding() {
        assert!(matches!(decode_job(b""), Err(DecodeError::Empty)));
        // A valid envelope padded to just over the limit: it would decode, and must not.
        let mut padded = backup_envelope(CURRENT_SCHEMA_VERSION);
        padded.requested_by = "x".repeat(MAX_JOB_BYTES);
        let bytes = encode(&padded);
        assert!(v1::JobEnvelope::decode(bytes.as_slice()).is_ok());
        let err = decode_job(&bytes).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooLarge { bytes: n, max: MAX_JOB_BYTES } if n == bytes.len()),
            "{err}"
        );
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn garbage_is_malformed_and_empty_is_no_job() {
        assert!(matches!(
            decode_job(b"\xff\xff\xff not protobuf"),
            Err(DecodeError::Malformed(_))
        ));
        let empty = JobEnvelope {
            schema_version: 1,
            ..Default::default()
        };
        assert!(matches!(
            decode_job(&encode(&empty)),
            Err(DecodeError::NoJob)
        ));
    }
}
