//! Offset commits as Kafka brokers write them to `__consumer_offsets` (the records Burrow reads):
//! the key names the group, topic and partition; the value holds the offset and the commit time.
//! Group metadata records and tombstones are told apart from commits.

/// One decoded record of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        offset: i64,
        timestamp_ms: i64,
    },
    /// The group's offsets for the partition were deleted (a tombstone).
    Deleted {
        group: String,
        topic: String,
        partition: i32,
    },
    /// A group metadata record, or a version this decoder does not know.
    Other,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let len = self.i16()?;
        let bytes = self.take(usize::try_from(len).ok()?)?;
        String::from_utf8(bytes.to_vec()).ok()
    }
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    /// A flexible version's compact string: length + 1 as an unsigned varint.
    fn compact_string(&mut self) -> Option<()> {
        let len = self.varint()?.checked_sub(1)?;
        self.take(usize::try_from(len).ok()?).map(|_| ())
    }
}

/// Decodes one record; `None` when it is malformed.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<OffsetsRecord> {
    let mut k = Reader(key);
    // Key versions 0 and 1 are offset commits; 2 is group metadata.
    if !matches!(k.i16()?, 0 | 1) {
        return Some(OffsetsRecord::Other);
    }
    let (group, topic, partition) = (k.string()?, k.string()?, k.i32()?);
    let Some(value) = value else { return Some(OffsetsRecord::Deleted { group, topic, partition }) };
    let mut v = Reader(value);
    let version = v.i16()?;
    let offset = v.i64()?;
    let timestamp_ms = match version {
        // offset, metadata, commit timestamp (v0, v2), then an expire timestamp (v1).
        0..=2 => {
            v.string()?;
            v.i64()?
        }
        // offset, leader epoch, metadata, commit timestamp.
        3 => {
            v.i32()?;
            v.string()?;
            v.i64()?
        }
        // Flexible versions: the metadata is a compact string.
        4 => {
            v.i32()?;
            v.compact_string()?;
            v.i64()?
        }
        _ => return Some(OffsetsRecord::Other),
    };
    Some(OffsetsRecord::Commit { group, topic, partition, offset, timestamp_ms })
}

/// Encodes a commit as a broker does (key version 1, value version 3): what tests and benches
/// write to a broker that keeps no `__consumer_offsets` of its own, for causeway and Burrow alike.
pub fn encode_commit(group: &str, topic: &str, partition: i32, offset: i64, timestamp_ms: i64) -> (Vec<u8>, Vec<u8>) {
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as i16).to_be_bytes());
        out.extend(s.as_bytes());
    };
    let mut key = 1i16.to_be_bytes().to_vec();
    string(&mut key, group);
    string(&mut key, topic);
    key.extend(partition.to_be_bytes());
    let mut value = 3i16.to_be_bytes().to_vec();
    value.extend(offset.to_be_bytes());
    value.extend((-1i32).to_be_bytes()); // no leader epoch
    string(&mut value, "");
    value.extend(timestamp_ms.to_be_bytes());
    (key, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_round_trips() {
        let (key, value) = encode_commit("billing", "orders", 3, 1234, 1_700_000_000_123);
        assert_eq!(
            decode(&key, Some(&value)),
            Some(OffsetsRecord::Commit {
                group: "billing".into(),
                topic: "orders".into(),
                partition: 3,
                offset: 1234,
                timestamp_ms: 1_700_000_000_123
            })
        );
    }

    #[test]
    fn value_version_1_carries_an_expire_timestamp_after_the_commit_time() {
        let (key, _) = encode_commit("g", "t", 0, 0, 0);
        let mut value = 1i16.to_be_bytes().to_vec();
        value.extend(42i64.to_be_bytes());
        value.extend(0i16.to_be_bytes());
        value.extend(777i64.to_be_bytes());
        value.extend(999i64.to_be_bytes());
        assert!(matches!(decode(&key, Some(&value)), Some(OffsetsRecord::Commit { offset: 42, timestamp_ms: 777, .. })));
    }

    #[test]
    fn flexible_value_version_4_is_read() {
        let (key, _) = encode_commit("g", "t", 0, 0, 0);
        let mut value = 4i16.to_be_bytes().to_vec();
        value.extend(42i64.to_be_bytes());
        value.extend(7i32.to_be_bytes());
        value.extend([3, b'a', b'b']); // compact string "ab"
        value.extend(555i64.to_be_bytes());
        value.push(0); // no tagged fields
        assert!(matches!(decode(&key, Some(&value)), Some(OffsetsRecord::Commit { offset: 42, timestamp_ms: 555, .. })));
    }

    #[test]
    fn tombstones_metadata_and_garbage_are_told_apart() {
        let (key, _) = encode_commit("g", "t", 2, 0, 0);
        assert_eq!(decode(&key, None), Some(OffsetsRecord::Deleted { group: "g".into(), topic: "t".into(), partition: 2 }));
        assert_eq!(decode(&2i16.to_be_bytes(), Some(b"whatever")), Some(OffsetsRecord::Other));
        assert_eq!(decode(&[0, 1, 0], Some(b"")), None);
        assert_eq!(decode(&key, Some(&[0, 3, 1])), None);
    }
}
