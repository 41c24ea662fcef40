//! Property tests of Bulk API results pages against hostile CSV: parsing arbitrary bytes never
//! panics and every refusal is permanent and names the job and page; a page written the way
//! Salesforce writes it (every cell quoted) with arbitrary cell text (quotes, commas, newlines,
//! NUL, control and non-ASCII characters, path tricks) parses back to exactly those cells.

use coffer_core::{Classify, ErrorClass};
use coffer_salesforce::bulk::parse_page;
use proptest::prelude::*;

/// Byte sequences that are not UTF-8: a stray byte, a cut sequence, a surrogate, a 5-byte form.
const INVALID_UTF8: &[&[u8]] = &[b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"];

fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,16}",
        proptest::sample::select(
            &[
                "",
                "\"",
                "\"\"",
                ",",
                "\n",
                "\r\n",
                "\0",
                "../..",
                "/etc/passwd",
                "%2e%2e",
                "\u{202e}",
                "é日本🚀",
                " lead",
                "trail ",
            ][..]
        )
        .prop_map(str::to_owned),
    ]
}

fn quoted(cells: &[String]) -> String {
    let quoted: Vec<String> = cells
        .iter()
        .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
        .collect();
    quoted.join(",")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_refusals_are_permanent(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        if let Err(e) = parse_page("750000000000001AAA", 2, Some("MTAw"), &bytes) {
            prop_assert_eq!(e.class(), ErrorClass::Permanent);
            let text = e.to_string();
            prop_assert!(text.contains("750000000000001AAA") && text.contains("page 2"), "{}", text);
        }
    }

    #[test]
    fn quoted_pages_round_trip_any_cell_text(
        width in 1usize..5,
        rows in proptest::collection::vec(proptest::collection::vec(cell(), 5), 0..8),
    ) {
        let header: Vec<String> = (0..width).map(|i| format!("Field{i}__c")).collect();
        let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r[..width].to_vec()).collect();
        let mut body = quoted(&header);
        body.push('\n');
        for row in &rows {
            body.push_str(&quoted(row));
            body.push('\n');
        }
        let (got_header, got_rows) = parse_page("750x", 1, None, body.as_bytes())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got_header.iter().collect::<Vec<_>>(), header.iter().map(String::as_str).collect::<Vec<_>>());
        let got: Vec<Vec<String>> = got_rows
            .iter()
            .map(|r| r.iter().map(str::to_owned).collect())
            .collect();
        prop_assert_eq!(got, rows);
    }

    #[test]
    fn invalid_utf8_anywhere_in_a_cell_is_refused(
        before in ".{0,8}",
        after in ".{0,8}",
        bad in proptest::sample::select(INVALID_UTF8),
    ) {
        let mut body = b"\"Id\",\"Name\"\n\"001000000000001AAA\",\"".to_vec();
        body.extend(before.replace('"', "\"\"").as_bytes());
        body.extend(bad);
        body.extend(after.replace('"', "\"\"").as_bytes());
        body.extend(b"\"\n");
        let err = parse_page("750x", 1, None, &body).expect_err("invalid UTF-8 is refused");
        prop_assert_eq!(err.class(), ErrorClass::Permanent);
    }
}
