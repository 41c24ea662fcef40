//! The AMQP headers Coffer reads and writes, and helpers to read typed values out of a header
//! table whatever integer or string encoding the sender chose.

use lapin::types::{AMQPValue, FieldTable, LongString};

/// Attempt number of a job message (absent on the first delivery).
pub const ATTEMPT: &str = "x-coffer-attempt";
/// On a dead letter: how many attempts were made.
pub const ATTEMPTS: &str = "x-coffer-attempts";
/// On a dead letter: why the job was given up (at most [`MAX_REASON_BYTES`]).
pub const REASON: &str = "x-coffer-reason";
/// On a dead letter: `retryable` or `permanent`.
pub const ERROR_CLASS: &str = "x-coffer-error-class";
/// On a dead letter: the queue the job was consumed from.
pub const ORIGINAL_QUEUE: &str = "x-coffer-original-queue";
/// The tenant a job belongs to, when the publisher named one.
pub const TENANT: &str = "x-coffer-tenant";
/// How many times an operator replayed the job from the dead-letter queue.
pub const REPLAYS: &str = "x-coffer-replays";
/// Set by the broker each time it dead-letters a message.
pub const X_DEATH: &str = "x-death";

/// Longest reason kept in a dead-letter header.
pub const MAX_REASON_BYTES: usize = 1024;

/// A string header (long or short string); invalid UTF-8 is replaced.
pub(crate) fn get_str(headers: &FieldTable, key: &str) -> Option<String> {
    value_as_string(headers.inner().get(key)?)
}

/// A string header of an optional table.
pub(crate) fn get_str_opt(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    get_str(headers?, key)
}

/// An integer header, whatever its AMQP integer type.
pub(crate) fn get_int(headers: &FieldTable, key: &str) -> Option<i64> {
    value_as_int(headers.inner().get(key)?)
}

/// The `count` and `reason` of the `x-death` entry for `queue`, if the broker dead-lettered the
/// message from that queue.
pub(crate) fn death_from(headers: &FieldTable, queue: &str) -> Option<(i64, Option<String>)> {
    let AMQPValue::FieldArray(deaths) = headers.inner().get(X_DEATH)? else {
        return None;
    };
    deaths.as_slice().iter().find_map(|entry| {
        let AMQPValue::FieldTable(entry) = entry else {
            return None;
        };
        if get_str(entry, "queue").as_deref() != Some(queue) {
            return None;
        }
        Some((
            get_int(entry, "count").unwrap_or(1),
            get_str(entry, "reason"),
        ))
    })
}

/// The attempt number of a job message: 0 when the header is absent or unreadable.
pub(crate) fn attempt_of(headers: Option<&FieldTable>) -> u32 {
    headers
        .and_then(|h| get_int(h, ATTEMPT))
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// Inserts a string header.
pub(crate) fn put_str(headers: &mut FieldTable, key: &str, value: &str) {
    headers.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
}

/// Inserts an integer header (signed 64-bit, the type every client reads).
pub(crate) fn put_int(headers: &mut FieldTable, key: &str, value: i64) {
    headers.insert(key.into(), AMQPValue::LongLongInt(value));
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn value_as_string(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn value_as_int(v: &AMQPValue) -> Option<i64> {
    match *v {
        AMQPValue::ShortShortInt(n) => Some(i64::from(n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(n)),
        AMQPValue::ShortInt(n) => Some(i64::from(n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(n)),
        AMQPValue::LongInt(n) => Some(i64::from(n)),
        AMQPValue::LongUInt(n) => Some(i64::from(n)),
        AMQPValue::LongLongInt(n) => Some(n),
        AMQPValue::Timestamp(n) => i64::try_from(n).ok(),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use lapin::types::FieldArray;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }

    #[test]
    fn ints_of_any_width_are_read() {
        let mut h = FieldTable::default();
        h.insert(ATTEMPT.into(), AMQPValue::ShortShortUInt(3));
        assert_eq!(attempt_of(Some(&h)), 3);
        put_int(&mut h, ATTEMPT, 4);
        assert_eq!(attempt_of(Some(&h)), 4);
        put_int(&mut h, ATTEMPT, -1);
        assert_eq!(attempt_of(Some(&h)), 0);
        assert_eq!(attempt_of(None), 0);
    }

    #[test]
    fn x_death_entry_for_a_queue() {
        let mut entry = FieldTable::default();
        put_str(&mut entry, "queue", "p.jobs");
        put_str(&mut entry, "reason", "delivery_limit");
        put_int(&mut entry, "count", 2);
        let mut other = FieldTable::default();
        put_str(&mut other, "queue", "p.jobs.retry.200ms");
        put_int(&mut other, "count", 5);
        let mut h = FieldTable::default();
        h.insert(
            X_DEATH.into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::FieldTable(other),
                AMQPValue::FieldTable(entry),
            ])),
        );
        assert_eq!(
            death_from(&h, "p.jobs"),
            Some((2, Some("delivery_limit".into())))
        );
        assert_eq!(death_from(&h, "nope"), None);
    }
}
