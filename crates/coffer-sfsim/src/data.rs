//! Seeded, deterministic org data, generated on demand: a record is a pure function of (seed,
//! object, row index), so no table of rows is ever held in memory and a 10-million-row object
//! costs nothing until it is read.
//!
//! Parent links are computed arithmetically from the row index (children are spread evenly over
//! their parents), so every reference points at a row that exists. Text fields carry CSV-hostile
//! content (commas, quotes, newlines, non-ASCII, formula-like text); a missing value is null.
//! Blob bodies (`Attachment.Body`, `ContentVersion.VersionData`) are generated from the record id
//! on request, and `ContentVersion.Checksum` is the real MD5 of those bytes.
//!
//! Deleted rows, when the seed asks for them, follow the live rows of their object: row indexes
//! `live..live + deleted` have `IsDeleted = true` and ids no live record uses; nothing references
//! them, and only `queryAll` returns them.

use std::collections::BTreeMap;
use std::sync::Arc;

use md5::{Digest, Md5};

use crate::OrgSeed;
use crate::ids::{id_counter, pod_of, record_id};
use crate::schema::{
    BENCHMARK_OBJECT, ObjectDef, RECORD_TYPES, RESTORE_KEY_OBJECTS, add_restore_key, benchmark,
    objects,
};

/// One generated record: a CSV cell value per field of its [`ObjectDef`], in describe order.
/// `None` is null (an empty cell); compound and binary fields are always `None`.
pub type Row = Vec<Option<String>>;

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

const STAGES: &[(&str, u32)] = &[
    ("Prospecting", 10),
    ("Qualification", 20),
    ("Needs Analysis", 20),
    ("Negotiation/Review", 90),
    ("Closed Won", 100),
    ("Closed Lost", 0),
];
const CASE_STATUSES: &[&str] = &["New", "Working", "Escalated", "Closed"];
const PRIORITIES: &[&str] = &["High", "Medium", "Low"];
const ORIGINS: &[&str] = &["Phone", "Email", "Web"];
const TASK_STATUSES: &[&str] = &[
    "Not Started",
    "In Progress",
    "Completed",
    "Waiting on someone else",
    "Deferred",
];
const TASK_SUBJECTS: &[&str] = &[
    "Call",
    "Send Letter",
    "Send Quote",
    "Other",
    "Email: \"Re: quote, v2\"",
];
const INVOICE_STATUSES: &[&str] = &["Draft", "Sent", "Paid", "Void"];
const FILES: &[(&str, &str, &str)] = &[
    ("pdf", "PDF", "Contract"),
    ("docx", "WORD_X", "Proposal, final"),
    ("png", "PNG", "Logo"),
    ("csv", "CSV", "Export \"raw\""),
    ("txt", "TEXT", "Notes — réunion"),
];

/// A small, fast, seedable generator (SplitMix64); one independent stream per (object, row).
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: &str, index: usize) -> Self {
        let mut h = seed ^ 0x51_7C_C1_B7_27_22_0A_95;
        for b in stream.bytes() {
            h = mix(h ^ u64::from(b));
        }
        Rng(mix(h ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64) < p * (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, pool: &[&'a str]) -> &'a str {
        pool[self.below(pool.len())]
    }

    /// `value` with probability `1 - p_null`, else null.
    fn maybe(&mut self, p_null: f64, value: impl Into<String>) -> Option<String> {
        let keep = !self.chance(p_null);
        keep.then(|| value.into())
    }

    fn description(&mut self) -> Option<String> {
        let text = self.pick(DESCRIPTIONS);
        self.maybe(0.2, text)
    }

    fn fill(&mut self, out: &mut Vec<u8>, len: usize) {
        while out.len() < len {
            let bytes = self.next().to_le_bytes();
            let take = (len - out.len()).min(8);
            out.extend_from_slice(&bytes[..take]);
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Formats unix seconds the way Bulk API 2.0 renders a dateTime: `2024-05-01T12:34:56.000+0000`.
pub fn format_datetime(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let mut out = String::with_capacity(28);
    push_date(&mut out, days);
    out.push('T');
    push_2(&mut out, secs / 3600);
    out.push(':');
    push_2(&mut out, secs / 60 % 60);
    out.push(':');
    push_2(&mut out, secs % 60);
    out.push_str(".000+0000");
    out
}

/// Formats days since 1970-01-01 as a Bulk API 2.0 date: `2024-05-01`.
pub fn format_date(days: i64) -> String {
    let mut out = String::with_capacity(10);
    push_date(&mut out, days);
    out
}

fn push_date(out: &mut String, days: i64) {
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999);
    push_2(out, year / 100);
    push_2(out, year % 100);
    out.push('-');
    push_2(out, month);
    out.push('-');
    push_2(out, day);
}

/// Pushes `n` (0..100) as two digits.
fn push_2(out: &mut String, n: i64) {
    let n = n.clamp(0, 99) as u8;
    out.push(char::from(b'0' + n / 10));
    out.push(char::from(b'0' + n % 10));
}

/// Row counts per object, derived from the seed.
#[derive(Debug, Clone, Default)]
struct Counts {
    by_name: BTreeMap<&'static str, usize>,
    deleted: BTreeMap<&'static str, usize>,
}

impl Counts {
    fn of(&self, name: &str) -> usize {
        self.by_name.get(name).copied().unwrap_or(0)
    }

    fn deleted(&self, name: &str) -> usize {
        self.deleted.get(name).copied().unwrap_or(0)
    }

    fn derive(seed: &OrgSeed) -> Self {
        let a = seed.accounts;
        let asked = |name: &str, default: usize| seed.rows.get(name).copied().unwrap_or(default);
        let accounts = asked("Account", a);
        let documents = asked("ContentDocument", a.div_ceil(4));
        let by_name = BTreeMap::from([
            ("User", asked("User", 3 + a / 20).max(1)),
            ("Account", accounts),
            ("Contact", asked("Contact", a * seed.contacts_per_account)),
            ("Attachment", asked("Attachment", a.div_ceil(4))),
            ("Opportunity", asked("Opportunity", a)),
            ("Case", asked("Case", a.div_ceil(2))),
            ("Task", asked("Task", a)),
            ("Invoice__c", asked("Invoice__c", a)),
            ("ContentDocument", documents),
            ("ContentVersion", documents + documents.div_ceil(3)),
            ("ContentDocumentLink", documents),
            (BENCHMARK_OBJECT, asked(BENCHMARK_OBJECT, 0)),
            ("RecordType", record_types_of(seed).len()),
        ]);
        let deleted = by_name
            .keys()
            .filter(|name| !matches!(**name, "User" | "RecordType"))
            .filter_map(|name| Some((*name, *seed.deleted.get(*name)?)))
            .collect();
        Counts { by_name, deleted }
    }
}

/// The generated org: object metadata and the recipe for every record and blob. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Org {
    /// Objects in describe-global order.
    pub objects: Arc<[ObjectDef]>,
    /// The id of the integration user (User row 0) the simulator reports as the job creator.
    pub user_id: String,
    seed: u64,
    pod: String,
    counts: Arc<Counts>,
    /// The org's record types (of [`RECORD_TYPES`], less those its seed leaves out), in id
    /// order.
    record_types: Arc<[(&'static str, &'static str, &'static str)]>,
}

/// The record types an org of `seed` has.
fn record_types_of(seed: &OrgSeed) -> Vec<(&'static str, &'static str, &'static str)> {
    RECORD_TYPES
        .iter()
        .filter(|(_, name, _)| !seed.missing_record_types.contains(*name))
        .copied()
        .collect()
}

/// Generates the org described by `seed`; the same seed always yields the same org.
pub fn generate(seed: &OrgSeed) -> Org {
    let counts = Counts::derive(seed);
    let mut defs = objects();
    if counts.of(BENCHMARK_OBJECT) > 0 {
        defs.push(benchmark());
    }
    if seed.restore_key {
        defs.iter_mut()
            .filter(|d| RESTORE_KEY_OBJECTS.contains(&d.name))
            .for_each(add_restore_key);
    }
    defs.sort_by(|a, b| a.name.cmp(b.name));
    let pod = pod_of(seed.org_id.as_str());
    Org {
        objects: defs.into(),
        user_id: record_id("005", &pod, 1),
        seed: seed.seed,
        pod,
        counts: Arc::new(counts),
        record_types: record_types_of(seed).into(),
    }
}

impl Org {
    /// The object named `name` (case-insensitive).
    pub fn object(&self, name: &str) -> Option<&ObjectDef> {
        self.objects
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// Number of live rows of the object named exactly `name`.
    pub fn row_count(&self, name: &str) -> usize {
        self.counts.of(name)
    }

    /// Number of deleted rows of the object named exactly `name`; they follow the live rows.
    pub fn deleted_count(&self, name: &str) -> usize {
        self.counts.deleted(name)
    }

    /// Row `index` (0-based, in id order) of `object`, generated on the spot. Indexes from
    /// [`Org::row_count`] on are deleted rows: shaped like a live row, with their own id.
    pub fn row(&self, object: &ObjectDef, index: usize) -> Row {
        let live = self.row_count(object.name);
        if index < live {
            return self.generate_row(object, index, index);
        }
        let mut row = self.generate_row(object, (index - live) % live.max(1), index);
        if let Some(id) = object.index_of("Id").and_then(|i| row.get_mut(i)) {
            *id = Some(self.id(object.name, index));
        }
        if let Some(deleted) = object.index_of("IsDeleted").and_then(|i| row.get_mut(i)) {
            *deleted = Some("true".to_owned());
        }
        row
    }

    /// Generates the row shaped as live row `index`, drawing from the random stream of `stream`.
    fn generate_row(&self, object: &ObjectDef, index: usize, stream: usize) -> Row {
        let mut rng = Rng::new(self.seed, object.name, stream);
        let mut c = Cells {
            org: self,
            values: Vec::with_capacity(object.fields.len()),
            number: stream,
        };
        match object.name {
            "Account" => account(&mut c, &mut rng, index),
            "Contact" => contact(&mut c, &mut rng, index),
            "Attachment" => attachment(&mut c, &mut rng, index),
            "User" => user(&mut c, &mut rng, index),
            "Opportunity" => opportunity(&mut c, &mut rng, index),
            "Case" => case(&mut c, &mut rng, index),
            "Task" => task(&mut c, &mut rng, index),
            "Invoice__c" => invoice(&mut c, &mut rng, index),
            "ContentDocument" => content_document(&mut c, &mut rng, index),
            "ContentVersion" => content_version(&mut c, &mut rng, index),
            "ContentDocumentLink" => content_document_link(&mut c, &mut rng, index),
            BENCHMARK_OBJECT => benchmark_record(&mut c, &mut rng, index),
            "RecordType" => self.record_type_row(&mut c, &mut rng, index),
            _ => {}
        }
        c.values.resize(object.fields.len(), None);
        if let Some(at) = object.index_of("RecordTypeId") {
            c.values[at] = self.record_type_of(object.name, index);
        }
        c.values
    }

    /// Row `index` of RecordType.
    fn record_type_row(&self, c: &mut Cells, rng: &mut Rng, index: usize) {
        let Some((sobject, name, label)) = self.record_types.get(index).copied() else {
            return;
        };
        c.id("RecordType", index);
        c.set(label);
        c.set(name);
        c.set(sobject);
        c.bool(true);
        c.audit(rng);
    }

    /// The record type of row `index` of `sobject`: its object's record types in turn (of all
    /// [`RECORD_TYPES`], so orgs agree on each row's type by name), none where this org lacks
    /// it.
    fn record_type_of(&self, sobject: &str, index: usize) -> Option<String> {
        let kinds: Vec<&str> = RECORD_TYPES
            .iter()
            .filter(|(o, _, _)| *o == sobject)
            .map(|(_, name, _)| *name)
            .collect();
        let name = kinds.get(index % kinds.len().max(1))?;
        let at = self
            .record_types
            .iter()
            .position(|(o, n, _)| *o == sobject && n == name)?;
        Some(self.id("RecordType", at))
    }

    /// Every live row of `object`, generated lazily.
    pub fn rows<'a>(&'a self, object: &'a ObjectDef) -> impl Iterator<Item = Row> + 'a {
        (0..self.row_count(object.name)).map(move |i| self.row(object, i))
    }

    /// The row index of record `id` of `object`, if such a record exists.
    pub fn index_of(&self, object: &ObjectDef, id: &str) -> Option<usize> {
        let counter = id_counter(id)?;
        let index = usize::try_from(counter.checked_sub(1)?).ok()?;
        let exists = index < self.row_count(object.name)
            && record_id(object.key_prefix, &self.pod, counter) == id;
        exists.then_some(index)
    }

    /// The row index of generated record `id` of `object`, live or deleted by the seed.
    pub fn generated_index(&self, object: &ObjectDef, id: &str) -> Option<usize> {
        let counter = id_counter(id)?;
        let index = usize::try_from(counter.checked_sub(1)?).ok()?;
        let total = self.row_count(object.name) + self.deleted_count(object.name);
        let exists = index < total && record_id(object.key_prefix, &self.pod, counter) == id;
        exists.then_some(index)
    }

    /// The object whose ids start with `key_prefix`.
    pub fn object_by_prefix(&self, key_prefix: &str) -> Option<&ObjectDef> {
        self.objects.iter().find(|o| o.key_prefix == key_prefix)
    }

    /// The position of the object named exactly `name` in [`Org::objects`].
    pub fn position(&self, name: &str) -> Option<usize> {
        self.objects.iter().position(|o| o.name == name)
    }

    /// The two pod characters every record id of this org carries.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// The body of blob field `field` of record `id` of `sobject` (names case-insensitive).
    pub fn blob(&self, sobject: &str, id: &str, field: &str) -> Option<Vec<u8>> {
        let def = self.object(sobject)?;
        let field = def.field(field).filter(|f| f.is_binary())?;
        let index = self.index_of(def, id)?;
        match (def.name, field.name) {
            ("Attachment", "Body") => Some(self.attachment_body(index)),
            ("ContentVersion", "VersionData") => Some(self.version_bytes(index)),
            _ => None,
        }
    }

    fn id(&self, object: &str, index: usize) -> String {
        record_id(key_prefix(object), &self.pod, index as u64 + 1)
    }

    /// The id of a random existing row of `object`, or null if it has none.
    fn any(&self, rng: &mut Rng, object: &str) -> Option<String> {
        let n = self.row_count(object);
        (n > 0).then(|| self.id(object, rng.below(n)))
    }

    fn attachment_size(&self, index: usize) -> usize {
        Rng::new(self.seed, "Attachment.Body", index).below(2048) + 16
    }

    fn attachment_body(&self, index: usize) -> Vec<u8> {
        let mut rng = Rng::new(self.seed, "Attachment.Body", index);
        let size = rng.below(2048) + 16;
        let mut body = attachment_header(index).into_bytes();
        let len = body.len() + size;
        rng.fill(&mut body, len);
        body
    }

    fn version_size(&self, version: usize) -> usize {
        let header = version_header(version).len();
        header + Rng::new(self.seed, "ContentVersion.VersionData", version).below(16_384) + 1
    }

    fn version_bytes(&self, version: usize) -> Vec<u8> {
        let mut rng = Rng::new(self.seed, "ContentVersion.VersionData", version);
        let mut body = version_header(version).into_bytes();
        let size = body.len() + rng.below(16_384) + 1;
        rng.fill(&mut body, size);
        body
    }

    fn file(&self, document: usize) -> (&'static str, &'static str, String) {
        let mut rng = Rng::new(self.seed, "ContentDocument.file", document);
        let (ext, kind, title) = FILES[rng.below(FILES.len())];
        (ext, kind, format!("{title} {document}"))
    }
}

/// The key prefix of a generated object (the same as its [`ObjectDef::key_prefix`]).
fn key_prefix(object: &str) -> &'static str {
    match object {
        "Account" => "001",
        "Contact" => "003",
        "User" => "005",
        "Opportunity" => "006",
        "Attachment" => "00P",
        "Task" => "00T",
        "ContentVersion" => "068",
        "ContentDocument" => "069",
        "ContentDocumentLink" => "06A",
        "Case" => "500",
        "Invoice__c" => "a0I",
        "RecordType" => "012",
        BENCHMARK_OBJECT => "a0B",
        _ => "000",
    }
}

fn version_header(version: usize) -> String {
    let (document, number) = version_of(version);
    format!("document {document} version {number}\n")
}

/// Maps a ContentVersion row to (ContentDocument row, version number): every third document has
/// two versions, the others one; versions of a document are adjacent.
fn version_of(version: usize) -> (usize, usize) {
    let (block, r) = (version / 4, version % 4);
    let (doc, number) = [(0, 1), (0, 2), (1, 1), (2, 1)][r];
    (block * 3 + doc, number)
}

/// The ContentVersion row that is the latest version of `document`.
fn latest_version_of(document: usize) -> usize {
    document / 3 * 4 + document % 3 + 1
}

/// The parent row of child row `child` when `children` rows are spread evenly over `parents`.
fn parent_of(child: usize, children: usize, parents: usize) -> Option<usize> {
    (parents > 0 && children > 0)
        .then(|| (child as u128 * parents as u128 / children as u128) as usize)
}

/// The first child row of parent row `parent` under [`parent_of`].
fn first_child_of(parent: usize, children: usize, parents: usize) -> usize {
    (parent as u128 * children as u128).div_ceil(parents.max(1) as u128) as usize
}

/// The cells of a row being built, pushed in describe order.
struct Cells<'a> {
    org: &'a Org,
    values: Row,
    /// The row's own index, unique among live and deleted rows (for auto-numbers).
    number: usize,
}

impl Cells<'_> {
    fn push(&mut self, value: Option<String>) {
        self.values.push(value.filter(|v| !v.is_empty()));
    }

    fn set(&mut self, value: impl Into<String>) {
        self.push(Some(value.into()));
    }

    fn null(&mut self) {
        self.values.push(None);
    }

    fn id(&mut self, object: &str, index: usize) {
        let id = self.org.id(object, index);
        self.set(id);
    }

    fn id_and_deleted(&mut self, object: &str, index: usize) {
        self.id(object, index);
        self.set("false");
    }

    fn reference(&mut self, object: &str, index: Option<usize>) {
        let id = index.map(|i| self.org.id(object, i));
        self.push(id);
    }

    fn bool(&mut self, value: bool) {
        self.set(if value { "true" } else { "false" });
    }

    fn owner(&mut self, rng: &mut Rng) {
        let id = self.org.any(rng, "User");
        self.push(id);
    }

    /// CreatedDate <= LastModifiedDate <= SystemModstamp, between 2021 and 2024.
    fn audit(&mut self, rng: &mut Rng) {
        let (created, modified, modstamp) = audit_times(rng);
        self.set(format_datetime(created));
        self.set(format_datetime(modified));
        self.set(format_datetime(modstamp));
    }

    fn date(&mut self, rng: &mut Rng, p_null: f64) {
        let day = 18_628 + rng.below(4 * 365) as i64;
        let value = rng.maybe(p_null, format_date(day));
        self.push(value);
    }
}

fn audit_times(rng: &mut Rng) -> (i64, i64, i64) {
    let created = 1_609_459_200 + rng.below(3 * 365 * 86_400) as i64;
    let modified = created + rng.below(200 * 86_400) as i64;
    let modstamp = modified + rng.below(3_600) as i64;
    (created, modified, modstamp)
}

fn account(c: &mut Cells, rng: &mut Rng, i: usize) {
    c.id_and_deleted("Account", i);
    let word = rng.pick(COMPANY_WORDS);
    c.set(format!("{word} {i}"));
    let kind = rng.pick(TYPES);
    c.push(rng.maybe(0.2, kind));
    let parent = (i > 0 && rng.chance(0.25)).then(|| rng.below(i));
    c.reference("Account", parent);
    let city = rng.pick(CITIES);
    c.push(rng.maybe(0.2, city));
    c.null(); // BillingAddress (compound)
    let phone = format!("+1 (415) 555-{:04}", rng.below(10_000));
    c.push(rng.maybe(0.3, phone));
    c.push(rng.maybe(0.3, format!("https://www.example{i}.com")));
    let industry = rng.pick(INDUSTRIES);
    c.push(rng.maybe(0.2, industry));
    let revenue = ((rng.below(99_999) + 1) * 1000).to_string();
    c.push(rng.maybe(0.3, revenue));
    c.push(rng.description());
    c.owner(rng);
    c.audit(rng);
}

fn contact(c: &mut Cells, rng: &mut Rng, n: usize) {
    let (contacts, accounts) = (c.org.row_count("Contact"), c.org.row_count("Account"));
    c.id_and_deleted("Contact", n);
    let account = parent_of(n, contacts, accounts);
    c.reference("Account", account);
    let last = rng.pick(LAST_NAMES);
    c.set(format!("{last} {n}"));
    let first = rng.pick(FIRST_NAMES);
    c.push(rng.maybe(0.1, first));
    let first_of_account = account.map(|a| first_child_of(a, contacts, accounts));
    let boss = first_of_account.filter(|f| *f < n && rng.chance(0.3));
    c.reference("Contact", boss);
    c.push(rng.maybe(0.2, format!("contact{n}@example.com")));
    let phone = format!("+44 20 7946 {:04}", rng.below(10_000));
    c.push(rng.maybe(0.4, phone));
    let title = rng.pick(TITLES);
    c.push(rng.maybe(0.3, title));
    c.push(rng.description());
    c.owner(rng);
    c.audit(rng);
}

fn attachment(c: &mut Cells, rng: &mut Rng, i: usize) {
    let (count, accounts) = (c.org.row_count("Attachment"), c.org.row_count("Account"));
    c.id_and_deleted("Attachment", i);
    c.reference("Account", parent_of(i, count, accounts));
    c.set(format!("notes-{i}.bin"));
    c.set("false");
    c.set("application/octet-stream");
    let size = c.org.attachment_body_len(i);
    c.set(size.to_string());
    c.null(); // Body (binary)
    c.push(rng.description());
    c.audit(rng);
}

impl Org {
    fn attachment_body_len(&self, index: usize) -> usize {
        attachment_header(index).len() + self.attachment_size(index)
    }
}

fn attachment_header(index: usize) -> String {
    format!("notes for attachment {index}\n")
}

fn user(c: &mut Cells, rng: &mut Rng, u: usize) {
    c.id("User", u);
    let domain = c.org.pod.to_lowercase();
    c.set(format!("user{u}@sfsim-{domain}.example.com"));
    let (first, last) = if u == 0 {
        ("Integration", "User".to_owned())
    } else {
        (
            rng.pick(FIRST_NAMES),
            format!("{} {u}", rng.pick(LAST_NAMES)),
        )
    };
    c.set(last);
    c.set(first);
    c.set(format!("user{u}@example.com"));
    c.set(format!("u{u:07}"));
    c.bool(u == 0 || !rng.chance(0.1));
    let manager = (u > 1 && rng.chance(0.5)).then(|| 1 + rng.below(u - 1));
    c.reference("User", manager);
    c.audit(rng);
}

fn opportunity(c: &mut Cells, rng: &mut Rng, o: usize) {
    let (count, accounts) = (c.org.row_count("Opportunity"), c.org.row_count("Account"));
    c.id_and_deleted("Opportunity", o);
    c.reference("Account", parent_of(o, count, accounts));
    let word = rng.pick(COMPANY_WORDS);
    c.set(format!("{word} deal {o}"));
    let (stage, probability) = STAGES[rng.below(STAGES.len())];
    c.set(stage);
    let amount = format!("{}.{:02}", rng.below(500_000), rng.below(100));
    c.push(rng.maybe(0.1, amount));
    c.set(probability.to_string());
    c.date(rng, 0.0);
    let kind = rng.pick(&[
        "New Customer",
        "Existing Customer - Upgrade",
        "Existing Customer - Replacement",
    ]);
    c.push(rng.maybe(0.3, kind));
    c.bool(stage.starts_with("Closed"));
    c.bool(stage == "Closed Won");
    c.push(rng.description());
    c.owner(rng);
    c.audit(rng);
}

fn case(c: &mut Cells, rng: &mut Rng, n: usize) {
    let org = c.org;
    let (count, accounts) = (org.row_count("Case"), org.row_count("Account"));
    let contacts = org.row_count("Contact");
    c.id_and_deleted("Case", n);
    c.set(format!("{:08}", c.number + 1));
    let account = parent_of(n, count, accounts);
    c.reference("Account", account);
    let contact = account.and_then(|a| {
        let first = first_child_of(a, contacts, accounts);
        let end = first_child_of(a + 1, contacts, accounts).min(contacts);
        (first < end).then(|| first + rng.below(end - first))
    });
    c.reference("Contact", contact);
    let subject = rng.pick(DESCRIPTIONS);
    c.push(rng.maybe(0.1, subject.lines().next().unwrap_or_default()));
    let status = rng.pick(CASE_STATUSES);
    c.set(status);
    let priority = rng.pick(PRIORITIES);
    c.set(priority);
    let origin = rng.pick(ORIGINS);
    c.push(rng.maybe(0.2, origin));
    c.bool(status == "Closed");
    c.push(rng.description());
    c.owner(rng);
    c.audit(rng);
}

fn task(c: &mut Cells, rng: &mut Rng, t: usize) {
    c.id_and_deleted("Task", t);
    let what = match rng.below(4) {
        0 => c.org.any(rng, "Account"),
        1 => c.org.any(rng, "Opportunity"),
        2 => c.org.any(rng, "Case"),
        _ => None,
    };
    c.push(what);
    let who = if rng.chance(0.7) {
        c.org.any(rng, "Contact")
    } else {
        None
    };
    c.push(who);
    let subject = rng.pick(TASK_SUBJECTS);
    c.set(subject);
    c.date(rng, 0.2);
    let status = rng.pick(TASK_STATUSES);
    c.set(status);
    let priority = rng.pick(PRIORITIES);
    c.set(priority);
    c.bool(status == "Completed");
    c.push(rng.description());
    c.owner(rng);
    c.audit(rng);
}

fn invoice(c: &mut Cells, rng: &mut Rng, v: usize) {
    let (count, accounts) = (c.org.row_count("Invoice__c"), c.org.row_count("Account"));
    c.id_and_deleted("Invoice__c", v);
    c.set(format!("INV-{:06}", c.number + 1));
    c.reference("Account", parent_of(v, count, accounts));
    let contact = if rng.chance(0.6) {
        c.org.any(rng, "Contact")
    } else {
        None
    };
    c.push(contact);
    let amount = format!("{}.{:02}", rng.below(100_000), rng.below(100));
    c.set(amount);
    let status = rng.pick(INVOICE_STATUSES);
    c.push(rng.maybe(0.1, status));
    c.date(rng, 0.1);
    c.bool(status == "Paid");
    c.push(rng.description());
    c.set(format!("EXT-{:08}", c.number + 1));
    c.audit(rng);
}

fn content_document(c: &mut Cells, rng: &mut Rng, d: usize) {
    let org = c.org;
    c.id_and_deleted("ContentDocument", d);
    let (ext, kind, title) = org.file(d);
    c.set(title);
    c.set("P");
    let latest = latest_version_of(d);
    c.id("ContentVersion", latest);
    c.set(kind);
    c.set(ext);
    c.set(org.version_size(latest).to_string());
    c.push(rng.description());
    c.owner(rng);
    c.audit(rng);
}

fn content_version(c: &mut Cells, rng: &mut Rng, v: usize) {
    let org = c.org;
    let (document, number) = version_of(v);
    let (documents, accounts) = (org.row_count("ContentDocument"), org.row_count("Account"));
    c.id_and_deleted("ContentVersion", v);
    c.id("ContentDocument", document);
    c.bool(latest_version_of(document) == v);
    c.set(number.to_string());
    let (ext, kind, title) = org.file(document);
    c.set(title.clone());
    c.set(format!("C:\\Users\\zoë\\Documents\\{title}.{ext}"));
    c.set(ext);
    c.set(kind);
    c.set("S");
    let bytes = org.version_bytes(v);
    c.set(bytes.len().to_string());
    c.set(hex(&Md5::digest(&bytes)));
    c.null(); // VersionData (binary)
    c.reference("Account", parent_of(document, documents, accounts));
    c.push(rng.description());
    c.owner(rng);
    c.audit(rng);
}

fn content_document_link(c: &mut Cells, rng: &mut Rng, k: usize) {
    let org = c.org;
    let (documents, accounts) = (org.row_count("ContentDocument"), org.row_count("Account"));
    c.id_and_deleted("ContentDocumentLink", k);
    match parent_of(k, documents, accounts) {
        Some(account) => c.id("Account", account),
        None => c.id("User", 0),
    }
    c.id("ContentDocument", k);
    let share = rng.pick(&["V", "C", "I"]);
    c.set(share);
    let visibility = rng.pick(&["AllUsers", "InternalUsers"]);
    c.set(visibility);
    let (_, _, modstamp) = audit_times(rng);
    c.set(format_datetime(modstamp));
}

fn benchmark_record(c: &mut Cells, rng: &mut Rng, i: usize) {
    c.id_and_deleted(BENCHMARK_OBJECT, i);
    c.set(format!("Record {i}"));
    for _ in 0..4 {
        let word = rng.pick(COMPANY_WORDS);
        let city = rng.pick(CITIES);
        c.push(rng.maybe(0.1, format!("{word} / {city}")));
    }
    for _ in 0..3 {
        let number = format!("{}.{}", rng.below(1_000_000), rng.below(1000));
        c.push(rng.maybe(0.1, number));
    }
    c.set(format!("{}.{:02}", rng.below(1_000_000), rng.below(100)));
    let (a, b) = (rng.chance(0.5), rng.chance(0.5));
    c.bool(a);
    c.bool(b);
    c.date(rng, 0.1);
    let (stamp, _, _) = audit_times(rng);
    c.push(rng.maybe(0.1, format_datetime(stamp)));
    let account = c.org.any(rng, "Account");
    c.push(account);
    c.push(rng.description());
    c.audit(rng);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
