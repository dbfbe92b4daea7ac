//! The forwarder's answer cache (CoreDNS's `cache 30`): upstream replies kept by question for
//! at most 30 s, or less when their records' TTLs are shorter; served with TTLs counted down.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};

/// The longest an answer is kept.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// The most answers kept; when full, expired ones go, then everything.
const CAPACITY: usize = 10_000;

type Key = (Name, RecordType, DNSClass);

struct Entry {
    reply: Message,
    stored: Instant,
    expires: Instant,
}

/// Upstream replies by question (the name lowercased).
#[derive(Default)]
pub struct Cache {
    entries: HashMap<Key, Entry>,
}

fn key(request: &Message) -> Option<Key> {
    let q = request.queries.first()?;
    Some((q.name().to_lowercase(), q.query_type(), q.query_class()))
}

impl Cache {
    /// The cached reply to `request` at `now`, with its id, question and TTLs adjusted.
    pub fn get(&self, request: &Message, now: Instant) -> Option<Message> {
        let entry = self.entries.get(&key(request)?)?;
        if now >= entry.expires {
            return None;
        }
        let age = now.duration_since(entry.stored).as_secs() as u32;
        let mut reply = entry.reply.clone();
        reply.metadata.id = request.metadata.id;
        reply.queries = request.queries.clone();
        for r in reply.answers.iter_mut().chain(reply.authorities.iter_mut()).chain(reply.additionals.iter_mut()) {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(reply)
    }

    /// Keeps `reply` to `request` (successful and NXDOMAIN replies only) from `now`.
    pub fn put(&mut self, request: &Message, reply: &Message, now: Instant) {
        let Some(key) = key(request) else { return };
        if !matches!(reply.metadata.response_code, ResponseCode::NoError | ResponseCode::NXDomain) || reply.metadata.truncation {
            return;
        }
        let min_ttl = reply.answers.iter().chain(reply.authorities.iter()).map(|r| r.ttl).min();
        let age = min_ttl.map_or(MAX_AGE, |ttl| MAX_AGE.min(Duration::from_secs(u64::from(ttl))));
        if age.is_zero() {
            return;
        }
        if self.entries.len() >= CAPACITY {
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.len() >= CAPACITY {
                self.entries.clear();
            }
        }
        self.entries.insert(key, Entry { reply: reply.clone(), stored: now, expires: now + age });
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};

    use super::*;

    fn request(id: u16, name: &str) -> Message {
        let mut m = Message::query();
        m.metadata.id = id;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m
    }

    fn reply_with_ttl(request: &Message, ttl: u32) -> Message {
        let mut m = Message::response(request.metadata.id, request.metadata.op_code);
        m.queries = request.queries.clone();
        m.add_answer(Record::from_rdata(request.queries[0].name().clone(), ttl, RData::A(A(Ipv4Addr::new(192, 0, 2, 7)))));
        m
    }

    #[test]
    fn serves_by_question_with_the_askers_id_and_aged_ttls() {
        let mut cache = Cache::default();
        let now = Instant::now();
        let first = request(1, "Example.ORG.");
        cache.put(&first, &reply_with_ttl(&first, 300), now);
        let again = request(2, "example.org.");
        let hit = cache.get(&again, now + Duration::from_secs(10)).expect("a hit");
        assert_eq!(hit.metadata.id, 2);
        assert_eq!(hit.queries, again.queries);
        assert_eq!(hit.answers[0].ttl, 290);
        assert!(cache.get(&again, now + MAX_AGE).is_none(), "kept longer than 30 s");
        assert!(cache.get(&request(3, "other.org."), now).is_none());
    }

    #[test]
    fn short_ttls_shorten_the_stay_and_failures_are_not_kept() {
        let mut cache = Cache::default();
        let now = Instant::now();
        let q = request(1, "short.example.");
        cache.put(&q, &reply_with_ttl(&q, 3), now);
        assert!(cache.get(&q, now + Duration::from_secs(2)).is_some());
        assert!(cache.get(&q, now + Duration::from_secs(3)).is_none());
        let failed = request(1, "fail.example.");
        let mut servfail = reply_with_ttl(&failed, 300);
        servfail.metadata.response_code = ResponseCode::ServFail;
        cache.put(&failed, &servfail, now);
        assert!(cache.get(&failed, now).is_none());
    }
}
