//! The simulated org's metadata: objects, fields and child relationships, rendered as
//! describe-global and describe-sObject JSON the way the REST API shapes them.

use serde_json::{Value, json};

/// One field of an object, with the describe properties the client persists.
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// API name.
    pub name: &'static str,
    /// Describe type (`id`, `string`, `reference`, `base64`, `address`, ...).
    pub ftype: &'static str,
    /// Label.
    pub label: &'static str,
    /// Maximum length for text types, 0 otherwise.
    pub length: u32,
    /// Whether the field may be empty.
    pub nillable: bool,
    /// Whether the field may be set on insert.
    pub createable: bool,
    /// Whether the field may be set on update.
    pub updateable: bool,
    /// Whether the field is a formula.
    pub calculated: bool,
    /// Whether the field is an auto-number.
    pub auto_number: bool,
    /// Whether the field is an external id.
    pub external_id: bool,
    /// Whether the field can identify a record in upsert.
    pub id_lookup: bool,
    /// Whether the value is unique.
    pub unique: bool,
    /// Objects a reference field points to (several: polymorphic).
    pub reference_to: Vec<&'static str>,
    /// Relationship name of a reference field.
    pub relationship_name: Option<&'static str>,
    /// The compound field this field is a component of.
    pub compound_field_name: Option<&'static str>,
    /// Whether the field is custom (`__c`).
    pub custom: bool,
    /// Master-detail: deleting the parent deletes this record.
    pub cascade_delete: bool,
    /// Whether the parent cannot be deleted while this record references it.
    pub restricted_delete: bool,
    /// Master-detail order (0 for the first master), `None` for other fields.
    pub relationship_order: Option<u8>,
    /// Whether Salesforce fills the field on insert when it is not given (booleans default to
    /// false, `OwnerId` to the running user): not nillable, yet not required on insert.
    pub defaulted_on_create: bool,
}

impl FieldDef {
    fn new(name: &'static str, ftype: &'static str, label: &'static str) -> Self {
        let length = match ftype {
            "id" | "reference" => 18,
            "string" | "url" | "email" => 255,
            "phone" => 40,
            "textarea" => 32000,
            "base64" => 0,
            "picklist" => 255,
            _ => 0,
        };
        FieldDef {
            name,
            ftype,
            label,
            length,
            nillable: true,
            createable: true,
            updateable: true,
            calculated: false,
            auto_number: false,
            external_id: false,
            id_lookup: false,
            unique: false,
            reference_to: Vec::new(),
            relationship_name: None,
            compound_field_name: None,
            custom: name.ends_with("__c"),
            cascade_delete: false,
            restricted_delete: false,
            relationship_order: None,
            defaulted_on_create: ftype == "boolean",
        }
    }

    /// A master-detail reference: required, cascade-deleted with its master.
    fn master_detail(mut self) -> Self {
        self.nillable = false;
        self.updateable = false;
        self.cascade_delete = true;
        self.relationship_order = Some(0);
        self
    }

    /// A lookup whose records are deleted with the record they point to (Account -> Contact,
    /// Opportunity, Case; Task.WhatId and WhoId; Attachment.ParentId).
    fn cascades(mut self) -> Self {
        self.cascade_delete = true;
        self
    }

    /// A lookup whose target cannot be deleted while this record points at it.
    fn restricts(mut self) -> Self {
        self.restricted_delete = true;
        self
    }

    /// An external id: indexed, usable to match records in upsert.
    fn external(mut self) -> Self {
        self.external_id = true;
        self.id_lookup = true;
        self.unique = true;
        self
    }

    /// Whether insert requires a value: not nillable, createable and not defaulted.
    pub fn required_on_create(&self) -> bool {
        !self.nillable && self.createable && !self.defaulted_on_create
    }

    /// Whether `undelete` restores this lookup when deleting its target had cleared it: the
    /// parent account, a contact's manager (Reports To) and every custom lookup, as Salesforce
    /// documents; other standard lookups stay blank.
    pub fn restored_on_undelete(&self) -> bool {
        self.ftype == "reference"
            && !self.cascade_delete
            && (self.custom || matches!(self.name, "ParentId" | "ReportsToId"))
    }

    /// An auto-number `Name`: read-only, unique per record.
    fn auto_numbered(mut self) -> Self {
        self.auto_number = true;
        self.nillable = false;
        self.length = 30;
        self.read_only()
    }

    fn system(mut self) -> Self {
        self.nillable = false;
        self.createable = false;
        self.updateable = false;
        self
    }

    fn required(mut self) -> Self {
        self.nillable = false;
        self
    }

    fn lookup(mut self) -> Self {
        self.id_lookup = true;
        self
    }

    fn refs(mut self, to: &[&'static str], relationship: &'static str) -> Self {
        self.reference_to = to.to_vec();
        self.relationship_name = Some(relationship);
        self
    }

    fn part_of(mut self, compound: &'static str) -> Self {
        self.compound_field_name = Some(compound);
        self
    }

    fn read_only(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self
    }

    /// Whether Bulk API 2.0 can select this field (binary and compound fields it cannot).
    pub fn bulk_queryable(&self) -> bool {
        !self.is_binary() && !self.is_compound()
    }

    /// A base64 (blob) field.
    pub fn is_binary(&self) -> bool {
        self.ftype == "base64"
    }

    /// A compound address or geolocation field.
    pub fn is_compound(&self) -> bool {
        matches!(self.ftype, "address" | "location")
    }

    fn describe(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.ftype,
            "label": self.label,
            "length": self.length,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "calculated": self.calculated,
            "autoNumber": self.auto_number,
            "externalId": self.external_id,
            "idLookup": self.id_lookup,
            "unique": self.unique,
            "referenceTo": self.reference_to,
            "relationshipName": self.relationship_name,
            "compoundFieldName": self.compound_field_name,
            "custom": self.custom,
            "cascadeDelete": self.cascade_delete,
            "restrictedDelete": self.restricted_delete,
            "relationshipOrder": self.relationship_order,
            "defaultedOnCreate": self.defaulted_on_create,
            "polymorphicForeignKey": self.reference_to.len() > 1,
        })
    }
}

/// A child relationship as listed in the parent's describe.
#[derive(Debug, Clone)]
pub struct ChildRel {
    /// The child object.
    pub child_sobject: &'static str,
    /// The reference field on the child.
    pub field: &'static str,
    /// The relationship name (`Contacts`), if any.
    pub relationship_name: Option<&'static str>,
    /// Whether deleting the parent deletes the child.
    pub cascade_delete: bool,
    /// Whether the parent cannot be deleted while referenced.
    pub restricted_delete: bool,
}

/// One object of the org.
#[derive(Debug, Clone)]
pub struct ObjectDef {
    /// API name.
    pub name: &'static str,
    /// Label.
    pub label: &'static str,
    /// 3-character id prefix.
    pub key_prefix: &'static str,
    /// Fields in describe order.
    pub fields: Vec<FieldDef>,
    /// Children pointing at this object.
    pub child_relationships: Vec<ChildRel>,
    /// Whether the object is custom (`__c`).
    pub custom: bool,
}

impl ObjectDef {
    /// The field named `name`, case-insensitively (SOQL is case-insensitive).
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The position of the field named exactly `name` in [`ObjectDef::fields`].
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// Whether records can be deleted (and so undeleted): every object but User.
    pub fn deletable(&self) -> bool {
        self.index_of("IsDeleted").is_some()
    }

    /// Fields a full Bulk query selects, in describe order.
    pub fn bulk_fields(&self) -> Vec<&FieldDef> {
        self.fields.iter().filter(|f| f.bulk_queryable()).collect()
    }

    /// The describe-global entry.
    pub fn summary(&self) -> Value {
        json!({
            "name": self.name,
            "label": self.label,
            "keyPrefix": self.key_prefix,
            "queryable": true,
            "retrieveable": true,
            "replicateable": true,
            "createable": true,
            "updateable": true,
            "deletable": self.deletable(),
            "undeletable": self.deletable(),
            "custom": self.custom,
            "urls": {
                "describe": format!("/services/data/v62.0/sobjects/{}/describe", self.name),
            },
        })
    }

    /// The describe-sObject document.
    pub fn describe(&self) -> Value {
        let fields: Vec<Value> = self.fields.iter().map(FieldDef::describe).collect();
        let children: Vec<Value> = self
            .child_relationships
            .iter()
            .map(|c| {
                json!({
                    "childSObject": c.child_sobject,
                    "field": c.field,
                    "relationshipName": c.relationship_name,
                    "cascadeDelete": c.cascade_delete,
                    "restrictedDelete": c.restricted_delete,
                    "deprecatedAndHidden": false,
                })
            })
            .collect();
        let mut doc = self.summary();
        if let Value::Object(map) = &mut doc {
            map.insert("fields".into(), Value::Array(fields));
            map.insert("childRelationships".into(), Value::Array(children));
        }
        doc
    }
}

fn audit_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("CreatedDate", "datetime", "Created Date").system(),
        FieldDef::new("LastModifiedDate", "datetime", "Last Modified Date").system(),
        FieldDef::new("SystemModstamp", "datetime", "System Modstamp").system(),
    ]
}

fn id_and_deleted(label: &'static str) -> Vec<FieldDef> {
    vec![
        FieldDef::new("Id", "id", label).system().lookup(),
        FieldDef::new("IsDeleted", "boolean", "Deleted").system(),
    ]
}

fn owner() -> FieldDef {
    let mut owner = FieldDef::new("OwnerId", "reference", "Owner ID")
        .required()
        .refs(&["User"], "Owner");
    owner.defaulted_on_create = true;
    owner
}

fn object(
    name: &'static str,
    label: &'static str,
    key_prefix: &'static str,
    fields: Vec<FieldDef>,
    child_relationships: Vec<ChildRel>,
) -> ObjectDef {
    ObjectDef {
        name,
        label,
        key_prefix,
        fields,
        child_relationships,
        custom: name.ends_with("__c"),
    }
}

fn account() -> ObjectDef {
    let mut fields = id_and_deleted("Account ID");
    fields.extend([
        FieldDef::new("Name", "string", "Account Name")
            .required()
            .lookup(),
        FieldDef::new("Type", "picklist", "Account Type"),
        FieldDef::new("ParentId", "reference", "Parent Account ID").refs(&["Account"], "Parent"),
        FieldDef::new("BillingCity", "string", "Billing City").part_of("BillingAddress"),
        FieldDef::new("BillingAddress", "address", "Billing Address").read_only(),
        FieldDef::new("Phone", "phone", "Account Phone"),
        FieldDef::new("Website", "url", "Website"),
        FieldDef::new("Industry", "picklist", "Industry"),
        FieldDef::new("AnnualRevenue", "currency", "Annual Revenue"),
        FieldDef::new("Description", "textarea", "Account Description"),
        owner(),
    ]);
    fields.extend(audit_fields());
    let children = vec![
        child("Account", "ParentId", Some("ChildAccounts"), false),
        child("Attachment", "ParentId", Some("Attachments"), true),
        child("Case", "AccountId", Some("Cases"), true),
        child(
            "ContentDocumentLink",
            "LinkedEntityId",
            Some("ContentDocumentLinks"),
            true,
        ),
        child("Contact", "AccountId", Some("Contacts"), true),
        child("Invoice__c", "Account__c", Some("Invoices__r"), true),
        child("Opportunity", "AccountId", Some("Opportunities"), true),
        child("Task", "WhatId", Some("Tasks"), true),
    ];
    fields.push(record_type_field());
    object("Account", "Account", "001", fields, children)
}

fn contact() -> ObjectDef {
    let mut fields = id_and_deleted("Contact ID");
    fields.extend([
        FieldDef::new("AccountId", "reference", "Account ID")
            .refs(&["Account"], "Account")
            .cascades(),
        FieldDef::new("LastName", "string", "Last Name")
            .required()
            .part_of("Name"),
        FieldDef::new("FirstName", "string", "First Name").part_of("Name"),
        FieldDef::new("ReportsToId", "reference", "Reports To ID").refs(&["Contact"], "ReportsTo"),
        FieldDef::new("Email", "email", "Email").lookup(),
        FieldDef::new("Phone", "phone", "Business Phone"),
        FieldDef::new("Title", "string", "Title"),
        FieldDef::new("Description", "textarea", "Contact Description"),
        owner(),
    ]);
    fields.extend(audit_fields());
    let children = vec![
        child("Attachment", "ParentId", Some("Attachments"), true),
        restricting(child("Case", "ContactId", Some("Cases"), false)),
        child("Contact", "ReportsToId", None, false),
        child("Invoice__c", "Contact__c", Some("Invoices__r"), false),
        child("Task", "WhoId", Some("Tasks"), true),
    ];
    object("Contact", "Contact", "003", fields, children)
}

fn attachment() -> ObjectDef {
    let mut fields = id_and_deleted("Attachment ID");
    fields.extend([
        FieldDef::new("ParentId", "reference", "Parent ID")
            .required()
            .refs(&["Account", "Contact"], "Parent")
            .cascades(),
        FieldDef::new("Name", "string", "File Name").required(),
        FieldDef::new("IsPrivate", "boolean", "Private").required(),
        FieldDef::new("ContentType", "string", "Content Type"),
        FieldDef::new("BodyLength", "int", "Body Length").read_only(),
        FieldDef::new("Body", "base64", "Body").required(),
        FieldDef::new("Description", "textarea", "Description"),
    ]);
    fields.extend(audit_fields());
    object("Attachment", "Attachment", "00P", fields, Vec::new())
}

fn user() -> ObjectDef {
    let fields = vec![
        FieldDef::new("Id", "id", "User ID").system().lookup(),
        FieldDef::new("Username", "string", "Username")
            .required()
            .lookup(),
        FieldDef::new("LastName", "string", "Last Name")
            .required()
            .part_of("Name"),
        FieldDef::new("FirstName", "string", "First Name").part_of("Name"),
        FieldDef::new("Email", "email", "Email").required(),
        FieldDef::new("Alias", "string", "Alias").required(),
        FieldDef::new("IsActive", "boolean", "Active").required(),
        FieldDef::new("ManagerId", "reference", "Manager ID").refs(&["User"], "Manager"),
        FieldDef::new("CreatedDate", "datetime", "Created Date").system(),
        FieldDef::new("LastModifiedDate", "datetime", "Last Modified Date").system(),
        FieldDef::new("SystemModstamp", "datetime", "System Modstamp").system(),
    ];
    let children = vec![child("User", "ManagerId", Some("ManagedUsers"), false)];
    object("User", "User", "005", fields, children)
}

fn opportunity() -> ObjectDef {
    let mut fields = id_and_deleted("Opportunity ID");
    fields.extend([
        FieldDef::new("AccountId", "reference", "Account ID")
            .refs(&["Account"], "Account")
            .cascades(),
        FieldDef::new("Name", "string", "Name").required(),
        FieldDef::new("StageName", "picklist", "Stage").required(),
        FieldDef::new("Amount", "currency", "Amount"),
        FieldDef::new("Probability", "percent", "Probability (%)"),
        FieldDef::new("CloseDate", "date", "Close Date").required(),
        FieldDef::new("Type", "picklist", "Opportunity Type"),
        FieldDef::new("IsClosed", "boolean", "Closed").system(),
        FieldDef::new("IsWon", "boolean", "Won").system(),
        FieldDef::new("Description", "textarea", "Description"),
        owner(),
    ]);
    fields.extend(audit_fields());
    let children = vec![child("Task", "WhatId", Some("Tasks"), true)];
    fields.push(record_type_field());
    object("Opportunity", "Opportunity", "006", fields, children)
}

fn case() -> ObjectDef {
    let mut fields = id_and_deleted("Case ID");
    fields.extend([
        FieldDef::new("CaseNumber", "string", "Case Number").auto_numbered(),
        FieldDef::new("AccountId", "reference", "Account ID")
            .refs(&["Account"], "Account")
            .cascades(),
        FieldDef::new("ContactId", "reference", "Contact ID")
            .refs(&["Contact"], "Contact")
            .restricts(),
        FieldDef::new("Subject", "string", "Subject"),
        FieldDef::new("Status", "picklist", "Status").required(),
        FieldDef::new("Priority", "picklist", "Priority"),
        FieldDef::new("Origin", "picklist", "Case Origin"),
        FieldDef::new("IsClosed", "boolean", "Closed").system(),
        FieldDef::new("Description", "textarea", "Description"),
        owner(),
    ]);
    fields.extend(audit_fields());
    let children = vec![child("Task", "WhatId", Some("Tasks"), true)];
    fields.push(record_type_field());
    object("Case", "Case", "500", fields, children)
}

fn task() -> ObjectDef {
    let mut fields = id_and_deleted("Activity ID");
    fields.extend([
        FieldDef::new("WhatId", "reference", "Related To ID")
            .refs(&["Account", "Case", "Opportunity"], "What")
            .cascades(),
        FieldDef::new("WhoId", "reference", "Name ID")
            .refs(&["Contact"], "Who")
            .cascades(),
        FieldDef::new("Subject", "string", "Subject"),
        FieldDef::new("ActivityDate", "date", "Due Date Only"),
        FieldDef::new("Status", "picklist", "Status").required(),
        FieldDef::new("Priority", "picklist", "Priority").required(),
        FieldDef::new("IsClosed", "boolean", "Closed").system(),
        FieldDef::new("Description", "textarea", "Description"),
        owner(),
    ]);
    fields.extend(audit_fields());
    object("Task", "Task", "00T", fields, Vec::new())
}

fn invoice() -> ObjectDef {
    let mut fields = id_and_deleted("Record ID");
    fields.extend([
        FieldDef::new("Name", "string", "Invoice Number").auto_numbered(),
        FieldDef::new("Account__c", "reference", "Account")
            .refs(&["Account"], "Account__r")
            .master_detail(),
        FieldDef::new("Contact__c", "reference", "Billing Contact")
            .refs(&["Contact"], "Contact__r"),
        FieldDef::new("Amount__c", "currency", "Amount"),
        FieldDef::new("Status__c", "picklist", "Status"),
        FieldDef::new("Due_Date__c", "date", "Due Date"),
        FieldDef::new("Paid__c", "boolean", "Paid").required(),
        FieldDef::new("Notes__c", "textarea", "Notes"),
        FieldDef::new("External_Id__c", "string", "External Id").external(),
    ]);
    fields.extend(audit_fields());
    object("Invoice__c", "Invoice", "a0I", fields, Vec::new())
}

fn content_document() -> ObjectDef {
    let mut fields = id_and_deleted("ContentDocument ID");
    fields.extend([
        FieldDef::new("Title", "string", "Title").required(),
        FieldDef::new("PublishStatus", "picklist", "Publish Status").read_only(),
        FieldDef::new(
            "LatestPublishedVersionId",
            "reference",
            "Latest Published Version ID",
        )
        .refs(&["ContentVersion"], "LatestPublishedVersion")
        .read_only(),
        FieldDef::new("FileType", "string", "File Type").read_only(),
        FieldDef::new("FileExtension", "string", "File Extension").read_only(),
        FieldDef::new("ContentSize", "int", "Size").read_only(),
        FieldDef::new("Description", "textarea", "Description"),
        owner(),
    ]);
    fields.extend(audit_fields());
    let children = vec![
        child(
            "ContentDocumentLink",
            "ContentDocumentId",
            Some("ContentDocumentLinks"),
            true,
        ),
        child(
            "ContentVersion",
            "ContentDocumentId",
            Some("ContentVersions"),
            true,
        ),
    ];
    object(
        "ContentDocument",
        "Content Document",
        "069",
        fields,
        children,
    )
}

fn content_version() -> ObjectDef {
    let mut fields = id_and_deleted("ContentVersion ID");
    fields.extend([
        FieldDef::new("ContentDocumentId", "reference", "ContentDocument ID")
            .refs(&["ContentDocument"], "ContentDocument")
            .cascades(),
        FieldDef::new("IsLatest", "boolean", "Is Latest").system(),
        FieldDef::new("VersionNumber", "string", "Version Number").read_only(),
        FieldDef::new("Title", "string", "Title").required(),
        FieldDef::new("PathOnClient", "string", "Path On Client"),
        FieldDef::new("FileExtension", "string", "File Extension").read_only(),
        FieldDef::new("FileType", "string", "File Type").read_only(),
        FieldDef::new("ContentLocation", "picklist", "Content Location"),
        FieldDef::new("ContentSize", "int", "Size").read_only(),
        FieldDef::new("Checksum", "string", "Checksum").read_only(),
        FieldDef::new("VersionData", "base64", "Version Data"),
        FieldDef::new(
            "FirstPublishLocationId",
            "reference",
            "First Publish Location ID",
        )
        .refs(&["Account", "User"], "FirstPublishLocation"),
        FieldDef::new("Description", "textarea", "Description"),
        owner(),
    ]);
    fields.extend(audit_fields());
    object(
        "ContentVersion",
        "Content Version",
        "068",
        fields,
        Vec::new(),
    )
}

fn content_document_link() -> ObjectDef {
    let mut fields = id_and_deleted("ContentDocumentLink ID");
    fields.extend([
        FieldDef::new("LinkedEntityId", "reference", "Linked Entity ID")
            .required()
            .refs(&["Account", "User"], "LinkedEntity")
            .cascades(),
        FieldDef::new("ContentDocumentId", "reference", "ContentDocument ID")
            .required()
            .refs(&["ContentDocument"], "ContentDocument")
            .cascades(),
        FieldDef::new("ShareType", "picklist", "Share Type").required(),
        FieldDef::new("Visibility", "picklist", "Visibility"),
        FieldDef::new("SystemModstamp", "datetime", "System Modstamp").system(),
    ]);
    object(
        "ContentDocumentLink",
        "Content Document Link",
        "06A",
        fields,
        Vec::new(),
    )
}

/// Name of the wide object that exists only when an [`crate::OrgSeed`] asks for its rows.
pub const BENCHMARK_OBJECT: &str = "Benchmark_Record__c";

/// A wide custom object for throughput benchmarks: 20 bulk-queryable columns of every common
/// type.
pub fn benchmark() -> ObjectDef {
    let mut fields = id_and_deleted("Record ID");
    fields.push(FieldDef::new("Name", "string", "Record Name").required());
    fields.extend([
        FieldDef::new("Text_1__c", "string", "Text 1"),
        FieldDef::new("Text_2__c", "string", "Text 2"),
        FieldDef::new("Text_3__c", "string", "Text 3"),
        FieldDef::new("Text_4__c", "string", "Text 4"),
        FieldDef::new("Number_1__c", "double", "Number 1"),
        FieldDef::new("Number_2__c", "double", "Number 2"),
        FieldDef::new("Number_3__c", "double", "Number 3"),
        FieldDef::new("Amount__c", "currency", "Amount"),
        FieldDef::new("Flag_1__c", "boolean", "Flag 1").required(),
        FieldDef::new("Flag_2__c", "boolean", "Flag 2").required(),
        FieldDef::new("Day__c", "date", "Day"),
        FieldDef::new("Stamp__c", "datetime", "Stamp"),
        FieldDef::new("Account__c", "reference", "Account").refs(&["Account"], "Account__r"),
        FieldDef::new("Notes__c", "textarea", "Notes"),
    ]);
    fields.extend(audit_fields());
    object(
        BENCHMARK_OBJECT,
        "Benchmark Record",
        "a0B",
        fields,
        Vec::new(),
    )
}

fn child(
    child_sobject: &'static str,
    field: &'static str,
    relationship_name: Option<&'static str>,
    cascade_delete: bool,
) -> ChildRel {
    ChildRel {
        child_sobject,
        field,
        relationship_name,
        cascade_delete,
        restricted_delete: false,
    }
}

/// `rel` with deletes of the parent blocked while the child points at it.
fn restricting(mut rel: ChildRel) -> ChildRel {
    rel.restricted_delete = true;
    rel
}

/// The record types of the simulated org, as (object, `DeveloperName`, label): Salesforce
/// gives each its own id per org, so a restore into another org maps them by developer name.
pub const RECORD_TYPES: &[(&str, &str, &str)] = &[
    ("Account", "Customer", "Customer"),
    ("Account", "Partner", "Partner"),
    ("Case", "Billing", "Billing"),
    ("Case", "Support", "Support"),
    ("Opportunity", "New_Business", "New Business"),
    ("Opportunity", "Renewal", "Renewal"),
];

/// `RecordTypeId`: the record's record type (the profile's default when left empty on create).
fn record_type_field() -> FieldDef {
    FieldDef::new("RecordTypeId", "reference", "Record Type ID").refs(&["RecordType"], "RecordType")
}

/// `RecordType`: read-only metadata as far as data APIs go.
fn record_type() -> ObjectDef {
    let read_only = |f: FieldDef| FieldDef {
        createable: false,
        updateable: false,
        ..f
    };
    let mut fields = vec![
        FieldDef::new("Id", "id", "Record Type ID")
            .system()
            .lookup(),
    ];
    fields.extend(
        [
            FieldDef::new("Name", "string", "Record Type Label").required(),
            FieldDef::new("DeveloperName", "string", "Record Type Name").required(),
            FieldDef::new("SobjectType", "picklist", "SObject Type Name").required(),
            FieldDef::new("IsActive", "boolean", "Active").required(),
        ]
        .map(read_only),
    );
    fields.extend(audit_fields());
    object("RecordType", "Record Type", "012", fields, Vec::new())
}

/// The external id field an admin adds so that restores insert exactly once (Coffer's
/// `--restore-key-field` default): Text(18), External ID, Unique.
pub const RESTORE_KEY_FIELD: &str = "Coffer_Source_Id__c";

/// The objects that take the restore key when the org has it: the data objects a restore
/// inserts into (Salesforce allows no custom field on Attachment, and files are restored
/// through their own path).
pub const RESTORE_KEY_OBJECTS: &[&str] = &[
    "Account",
    "Case",
    "Contact",
    "Invoice__c",
    "Opportunity",
    "Task",
];

/// Adds the restore key field to `def`, after its other fields (generated rows leave it empty).
pub fn add_restore_key(def: &mut ObjectDef) {
    let mut field = FieldDef::new(RESTORE_KEY_FIELD, "string", "Coffer Source Id").external();
    field.length = 18;
    def.fields.push(field);
}

/// Every standard object of the simulated org, in describe-global (alphabetical) order. The
/// [`benchmark`] object is added by the org only when asked for.
pub fn objects() -> Vec<ObjectDef> {
    vec![
        account(),
        attachment(),
        case(),
        contact(),
        content_document(),
        content_document_link(),
        content_version(),
        invoice(),
        opportunity(),
        record_type(),
        task(),
        user(),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn child_relationships_agree_with_their_reference_fields() {
        let all = objects();
        for parent in &all {
            for rel in &parent.child_relationships {
                let child = all.iter().find(|o| o.name == rel.child_sobject).unwrap();
                let field = child.field(rel.field).unwrap();
                let at = format!("{}.{}", child.name, field.name);
                assert!(field.reference_to.contains(&parent.name), "{at}");
                assert_eq!(field.cascade_delete, rel.cascade_delete, "{at}");
                assert_eq!(field.restricted_delete, rel.restricted_delete, "{at}");
            }
        }
    }

    #[test]
    fn account_deletes_cascade_to_contacts_opportunities_and_cases() {
        let all = objects();
        let account = all.iter().find(|o| o.name == "Account").unwrap();
        for child in ["Contact", "Opportunity", "Case", "Task", "Invoice__c"] {
            let rel = account
                .child_relationships
                .iter()
                .find(|r| r.child_sobject == child)
                .unwrap();
            assert!(rel.cascade_delete, "{child}");
        }
        let contact = all.iter().find(|o| o.name == "Contact").unwrap();
        let cases = contact
            .child_relationships
            .iter()
            .find(|r| r.child_sobject == "Case")
            .unwrap();
        assert!(cases.restricted_delete && !cases.cascade_delete);
    }
}
