//! Fuzz target: `decode_job` on arbitrary bytes never panics; what it accepts is version 1,
//! carries a job and re-encodes to bytes that decode to the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = coffer_proto::decode_job(data) {
        assert_eq!(envelope.schema_version, 1);
        assert!(envelope.job.is_some());
        let again = coffer_proto::decode_job(&coffer_proto::encode(&envelope)).expect("re-decodes");
        assert_eq!(again, envelope);
    }
});
