//! Fuzz target: ids and base paths from arbitrary bytes (split on 0xFF); whenever the
//! constructors accept them, every key stays under the tenant prefix with no `.`, `..` or empty
//! segment and no control, space or non-ASCII character.
#![no_main]

use coffer_core::layout::{BasePath, Compression, OrgPrefix, tenant_prefix};
use coffer_core::{BackupId, OrgId, SObjectName, TenantId};
use libfuzzer_sys::fuzz_target;

fn safe(key: &str, tenant_prefix: &str) {
    assert!(key.starts_with(&format!("{tenant_prefix}/")), "{key:?}");
    for segment in key.trim_end_matches('/').split('/') {
        assert!(
            !segment.is_empty() && segment != "." && segment != "..",
            "{key:?}"
        );
    }
    assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{key:?}");
}

fuzz_target!(|data: &[u8]| {
    let parts: Vec<String> = data
        .split(|b| *b == 0xff)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let get = |i: usize| parts.get(i).cloned().unwrap_or_default();
    let (Ok(base), Ok(tenant), Ok(org), Ok(sobject)) = (
        BasePath::new(get(0)),
        TenantId::new(get(1)),
        OrgId::new(get(2)),
        SObjectName::new(get(3)),
    ) else {
        return;
    };
    let t = tenant_prefix(&base, &tenant);
    let p = OrgPrefix::new(&base, &tenant, &org);
    let b = BackupId::generate();
    for key in [
        p.manifest_key(&b),
        p.records_part_key(&b, &sobject, 1, Compression::Gzip),
        p.files_prefix(),
        p.restore_report_key(&b.as_uuid()),
    ] {
        safe(&key, &t);
    }
    if let Ok(key) = p.file_staging_key(&b, &sobject, &get(4)) {
        safe(&key, &t);
    }
    if let Ok(key) = p.file_key(&get(4)) {
        safe(&key, &t);
    }
});
