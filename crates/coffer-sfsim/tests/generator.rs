//! The streaming generator without HTTP: every cell is valid for its field's describe type, every
//! reference points at a row that exists, blobs match their metadata (ContentVersion checksums
//! are real MD5s), huge objects cost nothing until read, and filtered result sets page exactly.

#![allow(clippy::unwrap_used)]

use coffer_core::OrgId;
use coffer_sfsim::OrgSeed;
use coffer_sfsim::bulk::{self, CreateJob};
use coffer_sfsim::data::{Org, generate};
use coffer_sfsim::schema::{BENCHMARK_OBJECT, FieldDef};
use coffer_sfsim::soql::parse_datetime;
use md5::{Digest, Md5};

fn seed() -> OrgSeed {
    OrgSeed::new(OrgId::new("00D5g000004XyZaEAK").unwrap(), 9, 41, 3)
}

fn check_cell(org: &Org, object: &str, field: &FieldDef, value: Option<&str>) {
    let what = format!("{object}.{}", field.name);
    if !field.bulk_queryable() {
        assert_eq!(value, None, "{what}: binary and compound cells are null");
        return;
    }
    let Some(v) = value else {
        assert!(field.nillable, "{what} is required but null");
        return;
    };
    match field.ftype {
        "id" => {
            let def = org.object(object).unwrap();
            assert!(v.starts_with(def.key_prefix) && v.len() == 18, "{what} {v}");
        }
        "reference" => {
            let target = org
                .objects
                .iter()
                .find(|o| v.starts_with(o.key_prefix))
                .unwrap_or_else(|| panic!("{what}: {v} has an unknown key prefix"));
            assert!(
                field.reference_to.contains(&target.name),
                "{what}: {v} is a {} but the field references {:?}",
                target.name,
                field.reference_to
            );
            assert!(
                org.index_of(target, v).is_some(),
                "{what}: {v} points at no row"
            );
        }
        "boolean" => assert!(v == "true" || v == "false", "{what} {v}"),
        "datetime" => assert!(parse_datetime(v).is_some(), "{what} {v}"),
        "date" => assert!(
            v.len() == 10 && v.as_bytes()[4] == b'-' && v.as_bytes()[7] == b'-',
            "{what} {v}"
        ),
        "int" | "double" | "currency" | "percent" => {
            assert!(v.parse::<f64>().is_ok(), "{what} {v}")
        }
        _ => {}
    }
}

fn check_org(org: &Org) {
    for def in org.objects.iter() {
        for row in org.rows(def) {
            assert_eq!(row.len(), def.fields.len(), "{}", def.name);
            for (field, value) in def.fields.iter().zip(&row) {
                check_cell(org, def.name, field, value.as_deref());
            }
            let stamps: Vec<&str> = ["CreatedDate", "LastModifiedDate", "SystemModstamp"]
                .iter()
                .filter_map(|n| def.index_of(n))
                .filter_map(|i| row[i].as_deref())
                .collect();
            if stamps.len() == 3 {
                let t: Vec<_> = stamps.iter().map(|s| parse_datetime(s).unwrap()).collect();
                assert!(t[0] <= t[1] && t[1] <= t[2], "{} audit order", def.name);
            }
        }
    }
}

#[test]
fn every_cell_is_valid_for_its_type_and_every_reference_resolves() {
    let org = generate(&seed().with_rows(BENCHMARK_OBJECT, 200));
    assert!(org.objects.windows(2).all(|w| w[0].name < w[1].name));
    for def in org.objects.iter() {
        assert!(org.row_count(def.name) > 0, "{} has rows", def.name);
    }
    check_org(&org);
    assert_eq!(
        org.object(BENCHMARK_OBJECT).unwrap().bulk_fields().len(),
        20
    );
}

#[test]
fn dates_and_ids_render_as_salesforce_does() {
    use coffer_sfsim::data::{format_date, format_datetime};
    assert_eq!(format_datetime(0), "1970-01-01T00:00:00.000+0000");
    assert_eq!(
        format_datetime(1_714_566_896),
        "2024-05-01T12:34:56.000+0000"
    );
    assert_eq!(format_datetime(951_782_400), "2000-02-29T00:00:00.000+0000");
    assert_eq!(format_date(19_844), "2024-05-01");
    let org = generate(&seed());
    for def in org.objects.iter() {
        let id = org.row(def, 0)[0].clone().unwrap();
        assert!(id.starts_with(def.key_prefix), "{} {id}", def.name);
        assert_eq!(
            &id[15..],
            coffer_sfsim::ids::checksum_suffix(&id[..15]),
            "{id}"
        );
    }
}

#[test]
fn overridden_counts_keep_every_reference_valid() {
    let seed = OrgSeed::new(OrgId::new("00D5g000004XyZaEAK").unwrap(), 3, 7, 2)
        .with_rows("Contact", 1000)
        .with_rows("Case", 50)
        .with_rows("Task", 300)
        .with_rows("ContentDocument", 10)
        .with_rows("User", 0);
    let org = generate(&seed);
    assert_eq!(org.row_count("Contact"), 1000);
    assert_eq!(org.row_count("ContentVersion"), 14);
    assert_eq!(org.row_count("ContentDocumentLink"), 10);
    assert_eq!(
        org.row_count("User"),
        1,
        "the integration user always exists"
    );
    check_org(&org);
    let empty = generate(&OrgSeed::new(
        OrgId::new("00D5g000004XyZaEAK").unwrap(),
        3,
        0,
        2,
    ));
    assert_eq!(empty.row_count("Account"), 0);
    check_org(&empty);
}

fn plan(org: &Org, operation: &str, soql: &str) -> bulk::Planned {
    let req = CreateJob {
        operation: Some(operation.into()),
        query: Some(soql.into()),
        content_type: None,
        column_delimiter: None,
        line_ending: None,
    };
    bulk::plan(org, &req).unwrap()
}

#[test]
fn deleted_rows_are_seen_only_by_query_all() {
    let org = generate(&seed().with_deleted("Account", 5).with_deleted("User", 3));
    let live = plan(&org, "query", "SELECT Id, IsDeleted, ParentId FROM Account");
    let all = plan(
        &org,
        "queryAll",
        "SELECT Id, IsDeleted, ParentId FROM Account",
    );
    assert_eq!(live.rows.len(), 41);
    assert_eq!(all.rows.len(), 46);
    assert_eq!(all.rows.cells(0, 41), live.rows.cells(0, 41));
    let gone = plan(
        &org,
        "queryAll",
        "SELECT Id, IsDeleted, ParentId FROM Account WHERE IsDeleted = true",
    );
    let gone = gone.rows.cells(0, 100);
    assert_eq!(gone, all.rows.cells(41, 46));
    let account = org.object("Account").unwrap();
    for row in &gone {
        assert_eq!(row[1], "true");
        assert_eq!(
            &row[0][15..],
            coffer_sfsim::ids::checksum_suffix(&row[0][..15])
        );
        assert_eq!(org.index_of(account, &row[0]), None, "not a live record");
        if !row[2].is_empty() {
            assert!(org.index_of(account, &row[2]).is_some(), "parents are live");
        }
    }
    assert_eq!(bulk::full_table(&org, "Account").unwrap().1.len(), 41);
    let users = plan(&org, "queryAll", "SELECT Id FROM User");
    assert_eq!(
        users.rows.len(),
        org.row_count("User"),
        "User has no recycle bin"
    );
}

#[test]
fn the_benchmark_object_exists_only_when_asked_for() {
    let org = generate(&seed());
    assert!(org.object(BENCHMARK_OBJECT).is_none());
    let names: Vec<&str> = org.objects.iter().map(|o| o.name).collect();
    for expected in [
        "Account",
        "Attachment",
        "Case",
        "Contact",
        "ContentDocument",
        "ContentDocumentLink",
        "ContentVersion",
        "Invoice__c",
        "Opportunity",
        "Task",
        "User",
    ] {
        assert!(names.contains(&expected), "{expected}");
    }
}

#[test]
fn blobs_match_their_metadata_and_checksums_are_real_md5() {
    let org = generate(&seed());
    let versions = org.object("ContentVersion").unwrap();
    let at = |name: &str| versions.index_of(name).unwrap();
    let (id, size, sum) = (at("Id"), at("ContentSize"), at("Checksum"));
    let (latest, doc) = (at("IsLatest"), at("ContentDocumentId"));
    let mut latest_of = std::collections::HashMap::new();
    for row in org.rows(versions) {
        let vid = row[id].as_deref().unwrap();
        let bytes = org.blob("ContentVersion", vid, "VersionData").unwrap();
        assert_eq!(row[size].as_deref().unwrap(), bytes.len().to_string());
        let md5: String = Md5::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(row[sum].as_deref().unwrap(), md5);
        if row[latest].as_deref() == Some("true") {
            let prev = latest_of.insert(row[doc].clone().unwrap(), vid.to_owned());
            assert!(prev.is_none(), "one latest version per document");
        }
    }
    let documents = org.object("ContentDocument").unwrap();
    let latest_field = documents.index_of("LatestPublishedVersionId").unwrap();
    for row in org.rows(documents) {
        let doc_id = row[0].clone().unwrap();
        assert_eq!(latest_of.get(&doc_id), row[latest_field].as_ref());
    }
    let attachments = org.object("Attachment").unwrap();
    let length = attachments.index_of("BodyLength").unwrap();
    for row in org.rows(attachments) {
        let body = org
            .blob("attachment", row[0].as_deref().unwrap(), "body")
            .unwrap();
        assert_eq!(row[length].as_deref().unwrap(), body.len().to_string());
    }
    assert!(
        org.blob("Attachment", "00P5g0000000zzzAAA", "Body")
            .is_none()
    );
    assert!(org.blob("Account", "0015g0000000001AAA", "Name").is_none());
}

#[test]
fn describe_carries_master_detail_polymorphism_and_cascade_deletes() {
    let org = generate(&seed());
    let invoice = org.object("Invoice__c").unwrap().describe();
    assert_eq!(invoice["custom"], true);
    let fields = invoice["fields"].as_array().unwrap();
    let master = fields.iter().find(|f| f["name"] == "Account__c").unwrap();
    assert_eq!(master["cascadeDelete"], true);
    assert_eq!(master["nillable"], false);
    assert_eq!(master["relationshipName"], "Account__r");
    assert_eq!(master["relationshipOrder"], 0);
    let lookup = fields.iter().find(|f| f["name"] == "Contact__c").unwrap();
    assert_eq!(lookup["cascadeDelete"], false);
    let task = org.object("Task").unwrap().describe();
    let what = task["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "WhatId")
        .unwrap()
        .clone();
    assert_eq!(what["polymorphicForeignKey"], true);
    assert_eq!(what["referenceTo"].as_array().unwrap().len(), 3);
    let account = org.object("Account").unwrap().describe();
    let invoices = account["childRelationships"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["childSObject"] == "Invoice__c")
        .unwrap()
        .clone();
    assert_eq!(invoices["cascadeDelete"], true);
    assert_eq!(invoices["relationshipName"], "Invoices__r");
    for def in org.objects.iter() {
        for rel in &def.child_relationships {
            let child = org.object(rel.child_sobject).unwrap();
            let field = child.field(rel.field).unwrap();
            assert!(
                field.reference_to.contains(&def.name),
                "{}.{}",
                child.name,
                field.name
            );
        }
    }
}

#[test]
fn ten_million_rows_cost_nothing_until_read() {
    let org = generate(&seed().with_rows("Task", 10_000_000));
    let task = org.object("Task").unwrap();
    assert_eq!(org.row_count("Task"), 10_000_000);
    let last = org.row(task, 9_999_999);
    assert_eq!(
        org.index_of(task, last[0].as_deref().unwrap()),
        Some(9_999_999)
    );
    let planned = bulk::plan(
        &org,
        &CreateJob {
            operation: Some("query".into()),
            query: Some("SELECT Id, WhatId FROM Task".into()),
            content_type: None,
            column_delimiter: None,
            line_ending: None,
        },
    )
    .unwrap();
    assert_eq!(planned.rows.len(), 10_000_000);
    let tail = planned.rows.cells(9_999_998, 10_000_005);
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[1][0], last[0].clone().unwrap());
    assert_eq!(org.row(task, 123), org.row(task, 123), "deterministic");
}

#[test]
fn filtered_result_sets_page_exactly_across_checkpoints() {
    let org = generate(&seed().with_rows(BENCHMARK_OBJECT, 20_000));
    let (columns, table) = bulk::full_table(&org, BENCHMARK_OBJECT).unwrap();
    let flag = columns.iter().position(|c| c == "Flag_1__c").unwrap();
    let expected: Vec<Vec<String>> = table
        .into_iter()
        .filter(|r| r[flag] == "true")
        .take(9_001)
        .collect();
    let soql = format!(
        "SELECT {} FROM {BENCHMARK_OBJECT} WHERE Flag_1__c = true LIMIT 9001",
        columns.join(", ")
    );
    let planned = bulk::plan(
        &org,
        &CreateJob {
            operation: Some("query".into()),
            query: Some(soql),
            content_type: None,
            column_delimiter: None,
            line_ending: None,
        },
    )
    .unwrap();
    assert_eq!(planned.rows.len(), 9_001);
    let mut paged = Vec::new();
    let mut start = 0;
    while start < planned.rows.len() {
        paged.extend(planned.rows.cells(start, start + 2_999));
        start += 2_999;
    }
    assert_eq!(paged, expected);
}
