//! Jobs: one row per job message, with its attempts and outcome.
//!
//! The row is written when a worker starts an attempt and updated when the attempt ends, so an
//! operator can see what ran, how often, and why it failed, even for jobs that never created a
//! backup (an unknown org, a malformed scope).

use coffer_core::JobId;
use sqlx::Row;

use crate::{Catalog, CatalogError};

/// How a job ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// An attempt is running, or was interrupted.
    Running,
    /// Done; its effects are durable.
    Completed,
    /// Given up; see `last_error`.
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
        }
    }
}

/// A job's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// The job.
    pub job_id: JobId,
    /// `backup`, `restore`, ...
    pub kind: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its org, for jobs of one org.
    pub org_id: Option<String>,
    /// Where it is.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl Catalog {
    /// Records the start of an attempt and returns the job's row after it. A job that already
    /// completed stays completed (the caller then acks without redoing anything). A row of
    /// another kind, tenant or org under the same job id (a message reusing someone else's job
    /// id) is left as it is: the caller compares the row returned with its own job and refuses.
    pub async fn start_job_attempt(
        &self,
        job_id: JobId,
        kind: &str,
        tenant_id: &str,
        org_id: Option<&str>,
    ) -> Result<JobRecord, CatalogError> {
        sqlx::query(
            "INSERT INTO jobs (job_id, kind, tenant_id, org_id, state, attempts) VALUES (?, ?, ?, ?, 'running', 1) \
             ON DUPLICATE KEY UPDATE \
             state = IF(kind <=> VALUES(kind) AND tenant_id <=> VALUES(tenant_id) AND org_id <=> VALUES(org_id) \
                        AND state <> 'completed', 'running', state), \
             attempts = IF(kind <=> VALUES(kind) AND tenant_id <=> VALUES(tenant_id) AND org_id <=> VALUES(org_id), \
                           attempts + 1, attempts)",
        )
        .bind(job_id.to_string())
        .bind(kind)
        .bind(tenant_id)
        .bind(org_id)
        .execute(&self.pool)
        .await?;
        self.job(job_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("job {job_id} vanished")))
    }

    /// Records the end of an attempt.
    pub async fn finish_job(
        &self,
        job_id: JobId,
        state: JobState,
        error: Option<&str>,
    ) -> Result<(), CatalogError> {
        sqlx::query("UPDATE jobs SET state = ?, last_error = ? WHERE job_id = ?")
            .bind(state.as_str())
            .bind(error)
            .bind(job_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// One job's row.
    pub async fn job(&self, job_id: JobId) -> Result<Option<JobRecord>, CatalogError> {
        let row = sqlx::query(
            "SELECT kind, tenant_id, org_id, state, attempts, last_error FROM jobs WHERE job_id = ?",
        )
        .bind(job_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let state = match row.try_get::<String, _>("state")?.as_str() {
            "completed" => JobState::Completed,
            "failed" => JobState::Failed,
            _ => JobState::Running,
        };
        Ok(Some(JobRecord {
            job_id,
            kind: row.try_get("kind")?,
            tenant_id: row.try_get("tenant_id")?,
            org_id: row.try_get("org_id")?,
            state,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
        }))
    }
}
