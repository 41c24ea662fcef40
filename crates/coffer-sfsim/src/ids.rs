//! Salesforce record ids: 15-character case-sensitive ids and their 18-character case-safe form.
//!
//! A 15-character id is a 3-character key prefix (the object type), 2 characters naming the pod,
//! one reserved character and a 9-character base-62 counter. The 18-character form appends a
//! 3-character checksum: each 5-character chunk contributes one character, chosen by a bitmask of
//! which positions in the chunk hold an upper-case letter.

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 3-character case-safe suffix of a 15-character id, by Salesforce's documented algorithm.
pub fn checksum_suffix(id15: &str) -> String {
    id15.as_bytes()
        .chunks(5)
        .take(3)
        .map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, b)| b.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            char::from(SUFFIX[bits])
        })
        .collect()
}

/// An 18-character id for record number `counter` of the object with `key_prefix` on pod `pod`.
pub fn record_id(key_prefix: &str, pod: &str, counter: u64) -> String {
    let mut id = [b'0'; 18];
    for (slot, b) in id[..3].iter_mut().zip(key_prefix.bytes()) {
        *slot = b;
    }
    for (slot, b) in id[3..5].iter_mut().zip(pod.bytes()) {
        *slot = b;
    }
    let mut n = counter;
    for slot in id[6..15].iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    for chunk in 0..3 {
        let bits = (0..5)
            .filter(|i| id[chunk * 5 + i].is_ascii_uppercase())
            .fold(0usize, |acc, i| acc | (1 << i));
        id[15 + chunk] = SUFFIX[bits];
    }
    String::from_utf8_lossy(&id).into_owned()
}

/// The record counter of an 18-character id made by [`record_id`] (the 9 base-62 digits after the
/// key prefix, pod and reserved character), or `None` if `id` is not shaped like one.
pub fn id_counter(id: &str) -> Option<u64> {
    let digits = id.get(6..15).filter(|_| id.len() == 18 && id.is_ascii())?;
    digits.bytes().try_fold(0u64, |acc, b| {
        let digit = BASE62.iter().position(|c| *c == b)?;
        acc.checked_mul(62)?.checked_add(digit as u64)
    })
}

/// The two pod characters of an org id (`00D5g000004XyZa` -> `5g`).
pub fn pod_of(org_id: &str) -> String {
    let pod: String = org_id.chars().skip(3).take(2).collect();
    if pod.len() == 2 { pod } else { "00".to_owned() }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_documented_example() {
        assert_eq!(checksum_suffix("001A0000006Vm9r"), "IAC");
        assert_eq!(checksum_suffix("000000000000000"), "AAA");
    }

    #[test]
    fn record_ids_are_18_characters_with_prefix() {
        let id = record_id("001", "5g", 61);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("0015g000000000z"));
        assert_eq!(&id[15..], checksum_suffix(&id[..15]));
        assert_eq!(id_counter(&id), Some(61));
        assert_eq!(
            id_counter(&record_id("a0I", "5g", 123_456_789)),
            Some(123_456_789)
        );
        assert_eq!(id_counter("short"), None);
    }
}
