//! Property tests of the worker's two gates for hostile input, without services:
//! - [`validate_message`]: any body and tenant header; whatever it accepts has only valid ids
//!   (so every key built from them stays under the tenant's prefix) and a header that agrees
//!   with the payload; whatever it refuses is a permanent error (a dead letter, never a retry);
//! - [`RowIndex::observe`]: any row; it indexes a row only when its `Id` and lookups are
//!   Salesforce ids, and never panics on short, long or strange rows.

use coffer_core::layout::{BasePath, OrgPrefix};
use coffer_core::{Classify, ErrorClass, OrgId, RecordId, SObjectName, TenantId};
use coffer_proto::v1::{
    BackupRequested, ExtractTaskRequested, JobEnvelope, RestoreRequested, RestoreScope,
    RetentionSweepRequested, job_envelope::Job,
};
use coffer_salesforce::SObjectDescribe;
use coffer_worker::backup::index::RowIndex;
use coffer_worker::handler::validate_message;
use csv::StringRecord;
use proptest::prelude::*;

const TRICKS: &[&str] = &[
    "acme",
    "globex",
    "00D000000000001AAA",
    "001000000000001AAA",
    "Account",
    "0190f5b4-6b8e-7c3a-9d2e-1f0a2b3c4d5e",
    "",
    "..",
    "/",
    "%2e%2e",
    "\0",
    "\n",
    "\u{430}",
    "\u{ff0e}",
    "'",
    "\"",
    "-",
    "_",
];

/// Mostly plausible values, often with a trick in them.
fn field() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => proptest::sample::select(TRICKS).prop_map(str::to_owned),
        1 => ".{0,6}",
    ];
    proptest::collection::vec(piece, 1..3).prop_map(|p| p.concat())
}

fn job() -> impl Strategy<Value = Job> {
    let ids = || proptest::collection::vec(field(), 0..3);
    prop_oneof![
        (field(), field(), ids()).prop_map(|(tenant_id, org_id, sobjects)| {
            Job::BackupRequested(BackupRequested {
                tenant_id,
                org_id,
                kind: 1,
                sobjects,
            })
        }),
        (field(), field(), field(), any::<u32>()).prop_map(
            |(tenant_id, org_id, backup_id, task_no)| {
                Job::ExtractTaskRequested(ExtractTaskRequested {
                    tenant_id,
                    org_id,
                    backup_id,
                    task_no,
                })
            }
        ),
        (field(), field(), field(), ids(), ids()).prop_map(
            |(tenant_id, org_id, backup_id, sobjects, record_ids)| {
                Job::RestoreRequested(RestoreRequested {
                    tenant_id,
                    org_id,
                    backup_id,
                    as_of_unix_ms: 0,
                    target_org_id: String::new(),
                    scope: Some(RestoreScope {
                        sobjects,
                        record_ids,
                        child_depth: 0,
                        parent_depth: 0,
                    }),
                    mode: 1,
                })
            }
        ),
        field().prop_map(
            |tenant_id| Job::RetentionSweepRequested(RetentionSweepRequested {
                tenant_id,
                dry_run: true
            })
        ),
    ]
}

fn tenant_and_names(job: &Job) -> (String, Option<String>, Vec<String>, Vec<String>) {
    match job {
        Job::BackupRequested(m) => (
            m.tenant_id.clone(),
            Some(m.org_id.clone()),
            m.sobjects.clone(),
            vec![],
        ),
        Job::ExtractTaskRequested(m) => {
            (m.tenant_id.clone(), Some(m.org_id.clone()), vec![], vec![])
        }
        Job::RestoreRequested(m) => {
            let scope = m.scope.clone().unwrap_or_default();
            (
                m.tenant_id.clone(),
                Some(m.org_id.clone()),
                scope.sobjects,
                scope.record_ids,
            )
        }
        Job::RetentionSweepRequested(m) => (m.tenant_id.clone(), None, vec![], vec![]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn accepted_messages_carry_only_valid_ids_and_refusals_are_permanent(
        job_id in prop_oneof![Just("0190f5b4-6b8e-7c3a-9d2e-1f0a2b3c4d5e".to_owned()), field()],
        job in job(),
        header in proptest::option::of(field()),
        same_header in any::<bool>(),
    ) {
        let (tenant, org, sobjects, records) = tenant_and_names(&job);
        let header = if same_header { Some(tenant.clone()) } else { header };
        let envelope = JobEnvelope {
            schema_version: 1,
            job_id,
            requested_at_unix_ms: 0,
            requested_by: "prop".into(),
            traceparent: String::new(),
            job: Some(job),
        };
        match validate_message(header.as_deref(), &coffer_proto::encode(&envelope)) {
            Err(e) => prop_assert_eq!(e.class(), ErrorClass::Permanent, "{}", e),
            Ok(_) => {
                prop_assert!(header.as_deref().is_none_or(|h| h == tenant));
                if tenant.is_empty() {
                    return Ok(()); // a sweep of every tenant
                }
                let tenant = TenantId::new(tenant.as_str()).expect("accepted tenant is valid");
                for s in &sobjects {
                    prop_assert!(SObjectName::new(s.as_str()).is_ok(), "{:?}", s);
                }
                for r in &records {
                    prop_assert!(RecordId::new(r.as_str()).is_ok(), "{:?}", r);
                }
                if let Some(org) = org {
                    let org = OrgId::new(org.as_str()).expect("accepted org is valid");
                    let prefix = OrgPrefix::new(&BasePath::default(), &tenant, &org);
                    let tenant_prefix = format!("{}/", tenant);
                    prop_assert!(prefix.as_str().starts_with(&tenant_prefix));
                    prop_assert!(prefix.as_str().split('/').all(|s| !s.is_empty() && s != ".."));
                }
            }
        }
    }

    #[test]
    fn arbitrary_bodies_and_headers_are_refused_as_permanent_or_accepted_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        header in proptest::option::of(".{0,12}"),
    ) {
        if let Err(e) = validate_message(header.as_deref(), &body) {
            prop_assert_eq!(e.class(), ErrorClass::Permanent, "{}", e);
            prop_assert!(!e.to_string().contains('\0'));
        }
    }

    #[test]
    fn rows_are_indexed_only_with_salesforce_ids(
        id in prop_oneof![2 => "[a-zA-Z0-9]{18}", 1 => field()],
        parent in prop_oneof![2 => "[a-zA-Z0-9]{15}", 1 => field()],
        stamp in prop_oneof![Just("2026-11-30T18:00:00.000+0000".to_owned()), field()],
        extra in proptest::collection::vec(".{0,8}", 0..3),
        truncate in 0usize..5,
    ) {
        let describe: SObjectDescribe = serde_json::from_value(serde_json::json!({
            "name": "Contact",
            "fields": [
                {"name": "Id", "type": "id"},
                {"name": "AccountId", "type": "reference", "referenceTo": ["Account"]},
                {"name": "SystemModstamp", "type": "datetime"},
            ],
        }))
        .expect("describe");
        let header = StringRecord::from(vec!["Id", "AccountId", "SystemModstamp"]);
        let mut index = RowIndex::new(&describe, &header).expect("has Id");
        let mut cells = vec![id.clone(), parent.clone(), stamp];
        cells.extend(extra);
        cells.truncate(cells.len().saturating_sub(truncate).max(1));
        let row = StringRecord::from(cells.clone());
        let ok = index.observe(1, 1, &row).is_ok();
        if ok {
            prop_assert!(RecordId::new(id.as_str()).is_ok(), "an invalid id {:?} was indexed", id);
            let parent_cell = cells.get(1).map(String::as_str).unwrap_or_default();
            prop_assert!(parent_cell.is_empty() || RecordId::new(parent_cell).is_ok());
        }
    }
}
