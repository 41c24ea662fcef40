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
}

impl FieldDef {
    fn new(name: &'static str, ftype: &'static str, label: &'static str) -> Self {
        let length = match ftype {
            "id" | "reference" => 18,
            "string" | "url" | "email" => 255,
            "phone" => 40,
            "textarea" => 32000,
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
        }
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
}

impl ObjectDef {
    /// The field named `name`, case-insensitively (SOQL is case-insensitive).
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
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
            "deletable": true,
            "undeletable": true,
            "custom": false,
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

fn id_and_deleted() -> Vec<FieldDef> {
    vec![
        FieldDef::new("Id", "id", "Account ID").system().lookup(),
        FieldDef::new("IsDeleted", "boolean", "Deleted").system(),
    ]
}

fn account() -> ObjectDef {
    let mut fields = id_and_deleted();
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
    ]);
    fields.extend(audit_fields());
    ObjectDef {
        name: "Account",
        label: "Account",
        key_prefix: "001",
        fields,
        child_relationships: vec![
            child("Account", "ParentId", Some("ChildAccounts"), false),
            child("Attachment", "ParentId", Some("Attachments"), true),
            child("Contact", "AccountId", Some("Contacts"), false),
        ],
    }
}

fn contact() -> ObjectDef {
    let mut fields = id_and_deleted();
    fields[0].label = "Contact ID";
    fields.extend([
        FieldDef::new("AccountId", "reference", "Account ID").refs(&["Account"], "Account"),
        FieldDef::new("LastName", "string", "Last Name")
            .required()
            .part_of("Name"),
        FieldDef::new("FirstName", "string", "First Name").part_of("Name"),
        FieldDef::new("ReportsToId", "reference", "Reports To ID").refs(&["Contact"], "ReportsTo"),
        FieldDef::new("Email", "email", "Email").lookup(),
        FieldDef::new("Phone", "phone", "Business Phone"),
        FieldDef::new("Title", "string", "Title"),
        FieldDef::new("Description", "textarea", "Contact Description"),
    ]);
    fields.extend(audit_fields());
    ObjectDef {
        name: "Contact",
        label: "Contact",
        key_prefix: "003",
        fields,
        child_relationships: vec![
            child("Attachment", "ParentId", Some("Attachments"), true),
            child("Contact", "ReportsToId", None, false),
        ],
    }
}

fn attachment() -> ObjectDef {
    let mut fields = id_and_deleted();
    fields[0].label = "Attachment ID";
    fields.extend([
        FieldDef::new("ParentId", "reference", "Parent ID")
            .required()
            .refs(&["Account", "Contact"], "Parent"),
        FieldDef::new("Name", "string", "File Name").required(),
        FieldDef::new("IsPrivate", "boolean", "Private").required(),
        FieldDef::new("ContentType", "string", "Content Type"),
        FieldDef::new("BodyLength", "int", "Body Length").read_only(),
        FieldDef::new("Body", "base64", "Body").required(),
        FieldDef::new("Description", "textarea", "Description"),
    ]);
    fields.extend(audit_fields());
    ObjectDef {
        name: "Attachment",
        label: "Attachment",
        key_prefix: "00P",
        fields,
        child_relationships: Vec::new(),
    }
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

/// Every object of the simulated org, in describe-global order.
pub fn objects() -> Vec<ObjectDef> {
    vec![account(), attachment(), contact()]
}
