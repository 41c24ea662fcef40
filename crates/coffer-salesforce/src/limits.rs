//! The org's allocations: `GET /limits/` (`DailyApiRequests`, `DailyBulkV2QueryJobs`, ...).
//! Salesforce computes these within about five minutes of accuracy and asks clients not to poll
//! them rapidly; the `Sforce-Limit-Info` header of every response
//! ([`SalesforceClient::api_usage`]) is the cheap, current view of API usage.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{SalesforceClient, SalesforceError};

/// One allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Limit {
    /// The allocation.
    #[serde(rename = "Max")]
    pub max: u64,
    /// What is left of it.
    #[serde(rename = "Remaining")]
    pub remaining: u64,
}

/// Every allocation by name, as `/limits/` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct OrgLimits(pub BTreeMap<String, Limit>);

impl OrgLimits {
    /// The allocation named `name` (`DailyApiRequests`, `DailyBulkV2QueryJobs`, ...).
    pub fn get(&self, name: &str) -> Option<Limit> {
        self.0.get(name).copied()
    }

    /// `DailyApiRequests`: API calls in the rolling 24 hours.
    pub fn daily_api_requests(&self) -> Option<Limit> {
        self.get("DailyApiRequests")
    }

    /// `DailyBulkV2QueryJobs`: Bulk API 2.0 query jobs in the rolling 24 hours.
    pub fn daily_bulk_v2_query_jobs(&self) -> Option<Limit> {
        self.get("DailyBulkV2QueryJobs")
    }
}

impl SalesforceClient {
    /// `GET /limits/` (one API call; needs the View Setup and Configuration permission).
    pub async fn limits(&self) -> Result<OrgLimits, SalesforceError> {
        let url = self.data_url(self.api_version(), "limits/");
        self.get_json("read org limits", &url).await
    }
}
