//! Fuzz target: a Bulk API results page of arbitrary bytes is parsed or refused with a
//! permanent error naming the job and page, never a panic; every row it accepts has the
//! header's width (the csv reader's own rule) or is refused.
#![no_main]

use coffer_core::{Classify, ErrorClass};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match coffer_salesforce::bulk::parse_page("750000000000001AAA", 1, None, data) {
        Ok((header, rows)) => {
            for row in rows {
                assert_eq!(row.len(), header.len());
            }
        }
        Err(e) => {
            assert_eq!(e.class(), ErrorClass::Permanent);
            assert!(e.to_string().contains("750000000000001AAA"));
        }
    }
});
