//! The cluster DNS's counters, rendered in Prometheus's text format under CoreDNS's metric
//! names (so dashboards made for CoreDNS read them): queries by type, replies by code, cache
//! hits and misses, forwarded queries, dropped packets and a latency histogram.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// The query types counted on their own; the rest count as "other".
const TYPES: [RecordType; 9] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::CNAME,
    RecordType::SOA,
    RecordType::NS,
    RecordType::TXT,
    RecordType::MX,
];
/// Reply codes counted on their own, with their names in CoreDNS's labels; the rest count as "other".
const CODES: [ResponseCode; 6] = [
    ResponseCode::NoError,
    ResponseCode::NXDomain,
    ResponseCode::ServFail,
    ResponseCode::Refused,
    ResponseCode::FormErr,
    ResponseCode::NotImp,
];
const CODE_NAMES: [&str; 6] = ["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "FORMERR", "NOTIMP"];
/// Upper bounds of the latency buckets in seconds (CoreDNS's: 0.25 ms doubling 16 times).
const BUCKETS: [f64; 16] =
    [0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/// Why a packet got no answer.
#[derive(Debug, Clone, Copy)]
pub enum Dropped {
    /// Not a DNS message (too short to carry an id).
    Malformed,
    /// Its source sent more than its rate allows.
    RateLimited,
    /// Too many queries were already waiting on the upstreams.
    Busy,
}

/// The counters; shared by the server's tasks.
#[derive(Default)]
pub struct Metrics {
    queries: [AtomicU64; TYPES.len() + 1],
    replies: [AtomicU64; CODES.len() + 1],
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    forwarded: AtomicU64,
    malformed: AtomicU64,
    rate_limited: AtomicU64,
    busy: AtomicU64,
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
}

fn index<T: PartialEq>(list: &[T], item: &T) -> usize {
    list.iter().position(|t| t == item).unwrap_or(list.len())
}

impl Metrics {
    pub fn query(&self, qtype: RecordType) {
        self.queries[index(&TYPES, &qtype)].fetch_add(1, Relaxed);
    }

    /// A reply with `code` sent `took` after its query arrived.
    pub fn reply(&self, code: ResponseCode, took: Duration) {
        self.replies[index(&CODES, &code)].fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        let bucket = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.latency[bucket].fetch_add(1, Relaxed);
        self.latency_sum_micros.fetch_add(took.as_micros() as u64, Relaxed);
    }

    pub fn cache(&self, hit: bool) {
        if hit { &self.cache_hits } else { &self.cache_misses }.fetch_add(1, Relaxed);
    }

    pub fn forwarded(&self) {
        self.forwarded.fetch_add(1, Relaxed);
    }

    pub fn dropped(&self, why: Dropped) {
        match why {
            Dropped::Malformed => &self.malformed,
            Dropped::RateLimited => &self.rate_limited,
            Dropped::Busy => &self.busy,
        }
        .fetch_add(1, Relaxed);
    }

    /// The counters in Prometheus's text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let section = |text: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(text, "{name}{labels} {value}");
            }
        };
        let types = self
            .queries
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{{type=\"{}\"}}", TYPES.get(i).map_or("other".to_string(), |t| t.to_string())), c.load(Relaxed)))
            .collect();
        section(&mut text, "coredns_dns_requests_total", "counter", "Counter of DNS requests made per type.", types);
        let codes = self
            .replies
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{{rcode=\"{}\"}}", CODE_NAMES.get(i).unwrap_or(&"other")), c.load(Relaxed)))
            .collect();
        section(&mut text, "coredns_dns_responses_total", "counter", "Counter of response status codes.", codes);
        let one = |c: &AtomicU64| vec![(String::new(), c.load(Relaxed))];
        section(&mut text, "coredns_cache_hits_total", "counter", "The count of cache hits.", one(&self.cache_hits));
        section(&mut text, "coredns_cache_misses_total", "counter", "The count of cache misses.", one(&self.cache_misses));
        section(&mut text, "coredns_forward_requests_total", "counter", "Counter of requests made per upstream.", one(&self.forwarded));
        let drops = vec![
            ("{reason=\"malformed\"}".to_string(), self.malformed.load(Relaxed)),
            ("{reason=\"rate_limited\"}".to_string(), self.rate_limited.load(Relaxed)),
            ("{reason=\"busy\"}".to_string(), self.busy.load(Relaxed)),
        ];
        section(&mut text, "orch_dns_dropped_total", "counter", "Packets dropped without an answer.", drops);
        let mut rows = Vec::new();
        let mut cumulative = 0;
        for (i, count) in self.latency.iter().enumerate() {
            cumulative += count.load(Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            rows.push((format!("_bucket{{le=\"{le}\"}}"), cumulative));
        }
        rows.push(("_count".to_string(), cumulative));
        let name = "coredns_dns_request_duration_seconds";
        let _ = writeln!(text, "# HELP {name} Histogram of the time (in seconds) each request took.\n# TYPE {name} histogram");
        for (suffix, value) in rows {
            let _ = writeln!(text, "{name}{suffix} {value}");
        }
        let sum = self.latency_sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(text, "{name}_sum {sum}");
        text
    }
}
