//! Property tests of key building with hostile ids: whatever strings reach the id and base path
//! constructors (path tricks, `%2e%2e`, control characters, look-alike dots and slashes), every
//! key built from the ones they accept stays under its tenant's prefix, has no `.`, `..` or
//! empty segment, and holds printable ASCII only.

use coffer_core::layout::{BasePath, BucketName, Compression, OrgPrefix, tenant_prefix};
use coffer_core::{BackupId, OrgId, RecordId, SObjectName, TenantId};
use proptest::prelude::*;

/// Pieces that hostile input is made of.
const TRICKS: &[&str] = &[
    "..",
    ".",
    "/",
    "//",
    "\\",
    "%2e",
    "%2E%2e",
    "%2f",
    "\0",
    "\n",
    "\r",
    "\u{1b}",
    "\u{7f}",
    "\u{2024}",
    "\u{ff0e}",
    "\u{2215}",
    "\u{ff0f}",
    "\u{202e}",
    "ａ",
    "é",
    " ",
    "~",
    "*",
    "?",
    "'",
    "acme",
    "00D000000000001AAA",
    "001000000000001AAA",
    "Account",
    "coffer",
    "prod",
    "-",
    "_",
];

/// A string mixing tricks with arbitrary characters.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => proptest::sample::select(TRICKS).prop_map(str::to_owned),
        1 => any::<char>().prop_map(|c| c.to_string()),
        1 => "[a-zA-Z0-9]{1,20}",
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|p| p.concat())
}

/// Mostly values shaped like the real thing (so keys do get built), sometimes hostile ones.
fn either(shaped: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![3 => shaped, 1 => hostile()]
}

/// What every key must look like.
fn assert_safe_key(key: &str, tenant_prefix: &str) {
    assert!(
        key.starts_with(&format!("{tenant_prefix}/")),
        "{key:?} escapes {tenant_prefix:?}"
    );
    assert!(!key.starts_with('/'), "{key:?} is absolute");
    for segment in key.trim_end_matches('/').split('/') {
        assert!(
            !segment.is_empty() && segment != "." && segment != "..",
            "{key:?} has segment {segment:?}"
        );
    }
    assert!(
        key.bytes().all(|b| b.is_ascii_graphic()),
        "{key:?} holds a control, space or non-ASCII character"
    );
    assert!(!key.contains('\\') && !key.contains('%'), "{key:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn keys_from_accepted_ids_never_leave_the_tenant_prefix(
        base in either("([a-z0-9._-]{1,6}/){0,3}[a-z0-9._-]{0,6}"),
        tenant in either("[a-z0-9-]{1,12}"),
        org in either("00D[a-zA-Z0-9]{12}([a-zA-Z0-9]{3})?"),
        sobject in either("[A-Z][a-zA-Z0-9_]{0,12}"),
        record in either("[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?"),
        part in any::<u32>(),
    ) {
        let (Ok(base), Ok(tenant), Ok(org), Ok(sobject)) = (
            BasePath::new(base),
            TenantId::new(tenant),
            OrgId::new(org),
            SObjectName::new(sobject),
        ) else {
            return Ok(());
        };
        let tenant_prefix = tenant_prefix(&base, &tenant);
        let prefix = OrgPrefix::new(&base, &tenant, &org);
        let backup = BackupId::generate();
        let mut keys = vec![
            prefix.manifest_key(&backup),
            prefix.backup_prefix(&backup),
            prefix.records_prefix(&backup, &sobject),
            prefix.records_part_key(&backup, &sobject, part, Compression::Gzip),
            prefix.records_part_key(&backup, &sobject, part, Compression::Zstd),
            prefix.files_prefix(),
            prefix.restore_report_key(&backup.as_uuid()),
        ];
        if let Ok(key) = prefix.file_staging_key(&backup, &sobject, &record) {
            keys.push(key);
        }
        for key in &keys {
            assert_safe_key(key, &tenant_prefix);
        }
    }

    #[test]
    fn file_keys_accept_only_sha256_hex(sha in hostile(), hex in "[0-9a-f]{64}") {
        let tenant = TenantId::new("acme").expect("tenant");
        let org = OrgId::new("00D000000000001AAA").expect("org");
        let prefix = OrgPrefix::new(&BasePath::default(), &tenant, &org);
        if let Ok(key) = prefix.file_key(&sha) {
            prop_assert_eq!(sha.len(), 64);
            assert_safe_key(&key, "acme");
        }
        let key = prefix.file_key(&hex).expect("a sha-256 in hex is a file key");
        assert_safe_key(&key, "acme");
        prop_assert!(key.ends_with(&hex));
    }

    #[test]
    fn accepted_ids_hold_no_separator_dot_segment_or_control_character(s in hostile()) {
        let accepted: Vec<String> = [
            TenantId::new(s.clone()).map(String::from).ok(),
            OrgId::new(s.clone()).map(String::from).ok(),
            SObjectName::new(s.clone()).map(String::from).ok(),
            RecordId::new(s.clone()).map(String::from).ok(),
            BucketName::new(s.clone()).map(|b| b.as_str().to_owned()).ok(),
        ]
        .into_iter()
        .flatten()
        .collect();
        for id in accepted {
            prop_assert!(!id.contains('/') && id != "." && id != ".." && !id.contains(".."));
            prop_assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{:?}", id);
        }
        if let Ok(base) = BasePath::new(s.clone()) {
            let b = base.as_str();
            prop_assert!(!b.starts_with('/') && !b.ends_with('/') && !b.contains("//"));
            prop_assert!(b.split('/').all(|seg| b.is_empty() || (seg != "." && seg != "..")));
            prop_assert!(b.bytes().all(|c| c.is_ascii_graphic()));
        }
    }

    #[test]
    fn refusals_never_echo_control_characters(s in hostile()) {
        for err in [
            TenantId::new(s.clone()).err(),
            OrgId::new(s.clone()).err(),
            RecordId::new(s.clone()).err(),
            BasePath::new(s.clone()).err(),
            BucketName::new(s.clone()).err(),
        ]
        .into_iter()
        .flatten()
        {
            let text = err.to_string();
            prop_assert!(!text.chars().any(char::is_control), "{:?}", text);
        }
    }
}
