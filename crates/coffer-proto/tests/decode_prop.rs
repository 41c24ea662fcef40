//! Property tests of job decoding against hostile bytes: `decode_job` never panics, refuses
//! empty and oversized bodies before decoding, accepts only known schema versions carrying a
//! job, and round-trips every envelope it accepts.

use coffer_proto::v1::{BackupRequested, JobEnvelope, job_envelope::Job};
use coffer_proto::{DecodeError, MAX_JOB_BYTES, decode_job, encode};
use proptest::prelude::*;

fn envelope() -> impl Strategy<Value = JobEnvelope> {
    (
        0u32..4,
        ".{0,40}",
        ".{0,20}",
        ".{0,20}",
        proptest::collection::vec(".{0,12}", 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(version, job_id, tenant, org, sobjects, with_job)| JobEnvelope {
                schema_version: version,
                job_id,
                requested_at_unix_ms: 1,
                requested_by: "prop".into(),
                traceparent: String::new(),
                job: with_job.then_some({
                    Job::BackupRequested(BackupRequested {
                        tenant_id: tenant,
                        org_id: org,
                        kind: 1,
                        sobjects,
                    })
                }),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_ones_round_trip(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        match decode_job(&bytes) {
            Ok(envelope) => {
                prop_assert_eq!(envelope.schema_version, 1);
                prop_assert!(envelope.job.is_some());
                prop_assert_eq!(decode_job(&encode(&envelope)).ok(), Some(envelope));
            }
            Err(DecodeError::Empty) => prop_assert!(bytes.is_empty()),
            Err(_) => {}
        }
    }

    #[test]
    fn envelopes_are_accepted_exactly_when_versioned_one_and_carrying_a_job(e in envelope()) {
        let result = decode_job(&encode(&e));
        let acceptable = e.schema_version == 1 && e.job.is_some();
        prop_assert_eq!(result.is_ok(), acceptable, "{:?}", result);
        if acceptable {
            prop_assert_eq!(result.ok(), Some(e));
        }
    }

    #[test]
    fn flipped_bytes_of_a_valid_envelope_never_panic(
        e in envelope(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = encode(&e);
        if bytes.is_empty() {
            return Ok(());
        }
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = decode_job(&bytes);
    }

    #[test]
    fn anything_over_the_limit_is_refused_before_decoding(extra in 1usize..4096, fill in any::<u8>()) {
        let bytes = vec![fill; MAX_JOB_BYTES + extra];
        let refused = matches!(
            decode_job(&bytes),
            Err(DecodeError::TooLarge { max: MAX_JOB_BYTES, .. })
        );
        prop_assert!(refused);
    }
}
