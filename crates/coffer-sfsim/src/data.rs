//! Seeded, deterministic org data: Accounts (some with a parent Account), Contacts (some reporting
//! to another Contact) and Attachments, with CSV-hostile text in names and descriptions.
//!
//! Values are held as the strings Bulk API 2.0 would put in a CSV cell; a missing value is null.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::OrgSeed;
use crate::ids::{pod_of, record_id};
use crate::schema::{ObjectDef, objects};

/// One record: field API name -> CSV cell value. Absent means null.
pub type Record = HashMap<&'static str, String>;

/// Text with commas, quotes, newlines, non-ASCII and formula-like content.
const DESCRIPTIONS: &[&str] = &[
    "Plain description",
    "Commas, everywhere, really",
    "She said \"hello\" and left",
    "Line one\nLine two\nLine three",
    "Windows line\r\nending",
    "Café crème, naïve façade — 日本語のテキスト 🚀🎉",
    "\"Quoted at start\", then a comma",
    "Trailing spaces   ",
    "   leading spaces",
    "=HYPERLINK(\"http://example.invalid\")",
    "Tab\tseparated\tvalues",
    "Backslash \\ semicolon; pipe | caret ^ backquote `",
    "\"\"",
    "Ünïcödé ümlauts and ß, 中文, العربية, emoji 👩‍💻",
];

const COMPANY_WORDS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Müller & Söhne",
    "Société Générale de Test",
    "\"Quoted\" Corp",
    "Comma, Inc.",
    "日本商事",
    "Zoë's Café",
];
const TYPES: &[&str] = &[
    "Prospect",
    "Customer - Direct",
    "Customer - Channel",
    "Partner",
    "Other",
];
const INDUSTRIES: &[&str] = &["Banking", "Energy", "Healthcare", "Retail", "Technology"];
const CITIES: &[&str] = &[
    "San Francisco",
    "São Paulo",
    "東京",
    "Zürich",
    "New York, NY",
];
const FIRST_NAMES: &[&str] = &[
    "Ada", "José", "Zoë", "李", "Søren", "Amélie", "O'Brien", "Grace",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "García",
    "Nguyễn",
    "王",
    "O'Neil",
    "Smith, Jr.",
    "Hopper",
];
const TITLES: &[&str] = &[
    "CEO",
    "VP, Sales",
    "Engineer",
    "\"Chief\" Officer",
    "Directrice générale",
];

/// The generated org: object metadata plus every record and blob.
#[derive(Debug)]
pub struct Org {
    /// Objects in describe-global order.
    pub objects: Vec<ObjectDef>,
    /// Records per object, in id order.
    pub records: BTreeMap<&'static str, Vec<Record>>,
    /// Blob bodies by (record id, field name).
    pub blobs: HashMap<(String, &'static str), Vec<u8>>,
    /// The id of the integration user the simulator reports as the job creator.
    pub user_id: String,
}

impl Org {
    /// The object named `name` (case-insensitive).
    pub fn object(&self, name: &str) -> Option<&ObjectDef> {
        self.objects
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// The records of `name` (exact API name).
    pub fn records_of(&self, name: &str) -> &[Record] {
        self.records.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

struct Gen {
    rng: StdRng,
    pod: String,
}

impl Gen {
    fn pick<'a>(&mut self, pool: &[&'a str]) -> &'a str {
        pool[self.rng.random_range(0..pool.len())]
    }

    fn maybe(&mut self, probability_null: f64, value: String) -> Option<String> {
        if self.rng.random_bool(probability_null) {
            None
        } else {
            Some(value)
        }
    }

    /// CreatedDate <= LastModifiedDate <= SystemModstamp, between 2021 and 2024.
    fn audit_dates(&mut self, record: &mut Record) {
        let created = 1_609_459_200 + self.rng.random_range(0..3 * 365 * 86_400_i64);
        let modified = created + self.rng.random_range(0..200 * 86_400_i64);
        let modstamp = modified + self.rng.random_range(0..3_600_i64);
        record.insert("CreatedDate", format_datetime(created));
        record.insert("LastModifiedDate", format_datetime(modified));
        record.insert("SystemModstamp", format_datetime(modstamp));
    }

    fn description(&mut self) -> Option<String> {
        let text = self.pick(DESCRIPTIONS).to_owned();
        self.maybe(0.2, text)
    }
}

/// Formats unix seconds the way Bulk API 2.0 renders a dateTime: `2024-05-01T12:34:56.000+0000`.
pub fn format_datetime(unix_seconds: i64) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].000+0000");
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000+0000".to_owned())
}

fn insert(record: &mut Record, field: &'static str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        record.insert(field, v);
    }
}

/// Generates the org described by `seed`; the same seed always yields the same org.
pub fn generate(seed: &OrgSeed) -> Org {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed.seed),
        pod: pod_of(seed.org_id.as_str()),
    };
    let accounts = gen_accounts(&mut g, seed.accounts);
    let contacts = gen_contacts(&mut g, &accounts, seed.contacts_per_account);
    let (attachments, blobs) = gen_attachments(&mut g, &accounts);
    let mut records = BTreeMap::new();
    records.insert("Account", accounts);
    records.insert("Contact", contacts);
    records.insert("Attachment", attachments);
    let user_id = record_id("005", &g.pod, 1);
    Org {
        objects: objects(),
        records,
        blobs,
        user_id,
    }
}

fn gen_accounts(g: &mut Gen, count: usize) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::with_capacity(count);
    for i in 0..count {
        let mut r = Record::new();
        r.insert("Id", record_id("001", &g.pod, i as u64 + 1));
        r.insert("IsDeleted", "false".to_owned());
        let word = g.pick(COMPANY_WORDS);
        r.insert("Name", format!("{word} {i}"));
        let kind = g.pick(TYPES).to_owned();
        insert(&mut r, "Type", g.maybe(0.2, kind));
        if i > 0 && g.rng.random_bool(0.25) {
            let parent = g.rng.random_range(0..i);
            insert(&mut r, "ParentId", out[parent].get("Id").cloned());
        }
        let city = g.pick(CITIES).to_owned();
        insert(&mut r, "BillingCity", g.maybe(0.2, city));
        let phone = format!("+1 (415) 555-{:04}", g.rng.random_range(0..10_000));
        insert(&mut r, "Phone", g.maybe(0.3, phone));
        insert(
            &mut r,
            "Website",
            g.maybe(0.3, format!("https://www.example{i}.com")),
        );
        let industry = g.pick(INDUSTRIES).to_owned();
        insert(&mut r, "Industry", g.maybe(0.2, industry));
        let revenue = (g.rng.random_range(1..100_000_u64) * 1000).to_string();
        insert(&mut r, "AnnualRevenue", g.maybe(0.3, revenue));
        let description = g.description();
        insert(&mut r, "Description", description);
        g.audit_dates(&mut r);
        out.push(r);
    }
    out
}

fn gen_contacts(g: &mut Gen, accounts: &[Record], per_account: usize) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::with_capacity(accounts.len() * per_account);
    for account in accounts {
        let first_of_account = out.len();
        for k in 0..per_account {
            let n = out.len();
            let mut r = Record::new();
            r.insert("Id", record_id("003", &g.pod, n as u64 + 1));
            r.insert("IsDeleted", "false".to_owned());
            insert(&mut r, "AccountId", account.get("Id").cloned());
            let last = g.pick(LAST_NAMES);
            r.insert("LastName", format!("{last} {n}"));
            let first = g.pick(FIRST_NAMES).to_owned();
            insert(&mut r, "FirstName", g.maybe(0.1, first));
            if k > 0 && g.rng.random_bool(0.3) {
                insert(
                    &mut r,
                    "ReportsToId",
                    out[first_of_account].get("Id").cloned(),
                );
            }
            insert(
                &mut r,
                "Email",
                g.maybe(0.2, format!("contact{n}@example.com")),
            );
            let phone = format!("+44 20 7946 {:04}", g.rng.random_range(0..10_000));
            insert(&mut r, "Phone", g.maybe(0.4, phone));
            let title = g.pick(TITLES).to_owned();
            insert(&mut r, "Title", g.maybe(0.3, title));
            let description = g.description();
            insert(&mut r, "Description", description);
            g.audit_dates(&mut r);
            out.push(r);
        }
    }
    out
}

type Blobs = HashMap<(String, &'static str), Vec<u8>>;

fn gen_attachments(g: &mut Gen, accounts: &[Record]) -> (Vec<Record>, Blobs) {
    let mut out = Vec::new();
    let mut blobs = HashMap::new();
    for (i, account) in accounts.iter().enumerate().filter(|(i, _)| i % 4 == 0) {
        let Some(parent) = account.get("Id") else {
            continue;
        };
        let id = record_id("00P", &g.pod, out.len() as u64 + 1);
        let size = g.rng.random_range(16..2048_usize);
        let mut body = format!("notes for account {i}\n").into_bytes();
        body.extend((0..size).map(|_| g.rng.random::<u8>()));
        let mut r = Record::new();
        r.insert("Id", id.clone());
        r.insert("IsDeleted", "false".to_owned());
        r.insert("ParentId", parent.clone());
        r.insert("Name", format!("notes-{i}.bin"));
        r.insert("IsPrivate", "false".to_owned());
        r.insert("ContentType", "application/octet-stream".to_owned());
        r.insert("BodyLength", body.len().to_string());
        let description = g.description();
        insert(&mut r, "Description", description);
        g.audit_dates(&mut r);
        blobs.insert((id, "Body"), body);
        out.push(r);
    }
    (out, blobs)
}
