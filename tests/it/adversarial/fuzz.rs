//! Adversarial property test: a seeded generator throws random query parameters, numbers at
//! the edges of their types and random nesting at create, patch, delete, log, exec and watch
//! of pods, configmaps, deployments and jobs, as a namespace admin. Whatever it sends, the
//! answer is never 5xx and the server neither dies nor logs a panic. `ORCH_FUZZ_SEED=<n>`
//! replays a run; each failure names its seed and request.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::crash::{assert_unharmed, shared, NS};
use super::Caller;

/// Query values at the edges of every type a parameter could be read as.
const TEXT_EDGES: &[&str] = &[
    "0",
    "1",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551615",
    "99999999999999999999",
    "1e308",
    "-1e308",
    "NaN",
    "1.5",
    "abc",
    "",
    "true",
    "%00",
    "%FF%FE",
    "2147483648",
    "-2147483649",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "Exact",
    "NotOlderThan",
    "Orphan",
    "Foreground",
];

const PARAMS: &[&str] = &[
    "gracePeriodSeconds",
    "timeoutSeconds",
    "limit",
    "continue",
    "resourceVersion",
    "resourceVersionMatch",
    "labelSelector",
    "fieldSelector",
    "allowWatchBookmarks",
    "sinceSeconds",
    "sinceTime",
    "tailLines",
    "limitBytes",
    "container",
    "previous",
    "timestamps",
    "propagationPolicy",
    "fieldManager",
    "fieldValidation",
    "dryRun",
    "force",
    "command",
    "stdout",
    "tty",
];

/// Watch timeouts that end a watch at once or are refused, so no request waits.
const WATCH_TIMEOUTS: &[&str] = &["-1", "1", "-9223372036854775808", "abc", "1e308", "99999999999999999999"];

fn number_edges() -> Vec<Value> {
    vec![
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(-1),
        json!(0),
        json!(1),
        json!(1e308),
        json!(-1e308),
        json!(0.5),
        json!(2147483648i64),
        json!(-2147483649i64),
        json!("9223372036854775807"),
        json!(null),
        json!(true),
        json!([]),
        json!({}),
    ]
}

/// Numeric fields of the kinds, as JSON pointers under the object.
const FIELDS: &[(&str, &[&str])] = &[
    (
        "pods",
        &[
            "/spec/terminationGracePeriodSeconds",
            "/spec/activeDeadlineSeconds",
            "/spec/containers/0/livenessProbe/periodSeconds",
            "/spec/containers/0/livenessProbe/initialDelaySeconds",
            "/spec/containers/0/lifecycle/preStop/sleep/seconds",
            "/metadata/generation",
            "/spec/priority",
            "/spec/containers/0/ports/0/containerPort",
            "/metadata/deletionGracePeriodSeconds",
        ],
    ),
    ("configmaps", &["/data/k", "/metadata/annotations/a", "/metadata/resourceVersion", "/immutable"]),
    (
        "deployments",
        &[
            "/spec/replicas",
            "/spec/minReadySeconds",
            "/spec/progressDeadlineSeconds",
            "/spec/revisionHistoryLimit",
            "/spec/template/spec/terminationGracePeriodSeconds",
            "/spec/strategy/rollingUpdate/maxSurge",
        ],
    ),
    (
        "jobs",
        &[
            "/spec/activeDeadlineSeconds",
            "/spec/ttlSecondsAfterFinished",
            "/spec/backoffLimit",
            "/spec/parallelism",
            "/spec/completions",
            "/spec/template/spec/activeDeadlineSeconds",
        ],
    ),
];

fn base(plural: &str, name: &str) -> (String, Value) {
    let container = json!([{ "name": "c", "image": "busybox", "ports": [{ "containerPort": 80 }] }]);
    let template = json!({ "metadata": { "labels": { "app": name } }, "spec": { "restartPolicy": "Never", "containers": container } });
    match plural {
        "pods" => (format!("/api/v1/namespaces/{NS}/pods"), json!({ "metadata": { "name": name }, "spec": { "containers": container } })),
        "configmaps" => (format!("/api/v1/namespaces/{NS}/configmaps"), json!({ "metadata": { "name": name }, "data": { "k": "v" } })),
        "deployments" => {
            let mut t = template.clone();
            t["spec"]["restartPolicy"] = json!("Always");
            let spec = json!({ "selector": { "matchLabels": { "app": name } }, "template": t });
            (format!("/apis/apps/v1/namespaces/{NS}/deployments"), json!({ "metadata": { "name": name }, "spec": spec }))
        }
        _ => (
            format!("/apis/batch/v1/namespaces/{NS}/jobs"),
            json!({ "metadata": { "name": name }, "spec": { "suspend": true, "template": template } }),
        ),
    }
}

/// `value` wrapped in a random number of arrays and objects (sometimes past any limit).
fn nest(rng: &mut StdRng, value: Value) -> Value {
    let depth = [0, 1, 5, 60, 126, 127, 128, 200, 400][rng.gen_range(0..9)];
    (0..depth).fold(value, |v, i| if i % 2 == 0 { json!([v]) } else { json!({ "n": v }) })
}

/// Sets the field at `pointer` (making the objects on the way).
fn set(obj: &mut Value, pointer: &str, value: Value) {
    let (parent, last) = pointer.rsplit_once('/').expect("a pointer names a field");
    if obj.pointer(parent).is_none_or(|p| !p.is_object() && !p.is_array()) {
        set(obj, parent, json!({}));
    }
    match (obj.pointer_mut(parent), last.parse::<usize>()) {
        (Some(Value::Array(items)), Ok(n)) if n < items.len() => items[n] = value,
        (Some(Value::Array(items)), _) => items.push(value),
        (Some(slot), _) => slot[last] = value,
        (None, _) => {}
    }
}

fn query(rng: &mut StdRng, extra: &[(&str, &str)]) -> String {
    let mut pairs: Vec<String> = (0..rng.gen_range(0..4))
        .map(|_| format!("{}={}", PARAMS[rng.gen_range(0..PARAMS.len())], TEXT_EDGES[rng.gen_range(0..TEXT_EDGES.len())]))
        .collect();
    pairs.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    pairs.join("&")
}

#[tokio::test]
async fn random_requests_never_get_5xx_nor_crash_the_server() {
    let shared = shared().await;
    let tenant = shared.tenant();
    let seed = std::env::var("ORCH_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(40) && sent < 600 {
        let (plural, fields) = FIELDS[rng.gen_range(0..FIELDS.len())];
        let name = format!("fz-{}", rng.gen_range(0..4));
        let (collection, mut obj) = base(plural, &name);
        let at = format!("{collection}/{name}");
        let edges = number_edges();
        let pick = |rng: &mut StdRng| edges[rng.gen_range(0..edges.len())].clone();
        let (method, path, content_type, body) = match rng.gen_range(0..8) {
            0 | 1 => {
                for _ in 0..rng.gen_range(0..3) {
                    let value = pick(&mut rng);
                    set(&mut obj, fields[rng.gen_range(0..fields.len())], value);
                }
                if rng.gen_bool(0.2) {
                    let deep = nest(&mut rng, json!(1));
                    set(&mut obj, fields[rng.gen_range(0..fields.len())], deep);
                }
                ("POST", format!("{collection}?{}", query(&mut rng, &[])), "application/json", obj.to_string())
            }
            2 => {
                let value = pick(&mut rng);
                let value = if rng.gen_bool(0.3) { nest(&mut rng, value) } else { value };
                let field = fields[rng.gen_range(0..fields.len())];
                let (content_type, body) = match rng.gen_range(0..3) {
                    0 => ("application/json-patch+json", json!([{ "op": "add", "path": field, "value": value }]).to_string()),
                    1 => {
                        let mut patch = json!({});
                        set(&mut patch, field, value);
                        ("application/merge-patch+json", patch.to_string())
                    }
                    _ => {
                        let mut patch = json!({});
                        set(&mut patch, field, value);
                        ("application/strategic-merge-patch+json", patch.to_string())
                    }
                };
                ("PATCH", format!("{at}?{}", query(&mut rng, &[])), content_type, body)
            }
            3 => {
                let body = if rng.gen_bool(0.5) { json!({ "gracePeriodSeconds": pick(&mut rng) }).to_string() } else { String::new() };
                ("DELETE", format!("{at}?{}", query(&mut rng, &[])), "application/json", body)
            }
            4 => {
                let timeout = WATCH_TIMEOUTS[rng.gen_range(0..WATCH_TIMEOUTS.len())];
                ("GET", format!("{collection}?{}", query(&mut rng, &[("watch", "1"), ("timeoutSeconds", timeout)])), "", String::new())
            }
            5 => ("GET", format!("{collection}?{}", query(&mut rng, &[])), "", String::new()),
            6 => ("GET", format!("{}/log?{}", at.replace(&format!("/{plural}/"), "/pods/"), query(&mut rng, &[])), "", String::new()),
            _ => ("POST", format!("{}/exec?{}", at.replace(&format!("/{plural}/"), "/pods/"), query(&mut rng, &[])), "", String::new()),
        };
        let answer = send(&tenant, method, &path, content_type, body.clone()).await;
        let shown: String = body.chars().take(300).collect();
        assert!(answer < 500, "seed {seed}: {method} {path} ({content_type}) {shown}: answered {answer}");
        sent += 1;
    }
    eprintln!("fuzz: seed {seed}, {sent} requests in {:?}", started.elapsed());
    assert_unharmed(&shared.server).await;
}

/// The status code of one request (a refusal to answer counts as 599).
async fn send(caller: &Caller, method: &str, path: &str, content_type: &str, body: String) -> u16 {
    let call = caller.send(method, path, content_type, body);
    match tokio::time::timeout(Duration::from_secs(20), call).await {
        Ok(answer) => answer.code,
        Err(_) => 599,
    }
}
