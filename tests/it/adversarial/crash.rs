//! Adversarial tests: crash (see mod.rs). Requests a tenant (a namespace admin) or any
//! ServiceAccount can send that once panicked, overflowed the stack or expanded without bound:
//! each must get kube-apiserver's refusal, leave the store as it was, and leave the server
//! answering with no panic in its log (a debug build only loses the handler thread, so the log
//! is what shows it). The tests share one server; the last one to finish stops it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{json, Value};

use super::{assert_alive, make_namespace_admin, Answer, Caller};
use crate::support::{kubectl, ready_server, ServerProc};

/// The file's server. Callers are made per test: a client's connections belong to the
/// runtime of the test that made it.
pub(super) struct Shared {
    pub server: ServerProc,
    /// A token of ServiceAccount `intruder` in [`NS`], which has no role at all.
    token: String,
    _dir: tempfile::TempDir,
}

impl Shared {
    /// The administrator of namespace [`NS`].
    pub fn tenant(&self) -> Caller {
        Caller::cert(&self.server, TENANT, &[])
    }

    /// ServiceAccount `intruder` of [`NS`].
    pub fn service_account(&self) -> Caller {
        Caller::token(&self.server, &self.token)
    }
}

const TENANT: &str = "mallory";

pub(super) const NS: &str = "tenant";

static SHARED: tokio::sync::Mutex<Weak<Shared>> = tokio::sync::Mutex::const_new(Weak::new());

/// The file's server, started by the first test that needs it.
pub(super) async fn shared() -> Arc<Shared> {
    let mut slot = SHARED.lock().await;
    if let Some(shared) = slot.upgrade() {
        return shared;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ready_server(dir.path(), &[]).await;
    let home = dir.path().join("home");
    make_namespace_admin(&server, &home, NS, TENANT).await;
    let (ok, out, err) = kubectl(&server, &home, &["create", "serviceaccount", "intruder", "-n", NS], None).await;
    assert!(ok, "{out}{err}");
    let token = crate::support::wait_for(Duration::from_secs(10), "a ServiceAccount token", || async {
        let path = format!("/api/v1/namespaces/{NS}/serviceaccounts/intruder/token");
        let answer = Caller::admin(&server).send("POST", &path, "application/json", r#"{"spec":{}}"#).await;
        answer.body["status"]["token"].as_str().map(str::to_string)
    })
    .await;
    let shared = Arc::new(Shared { server, token, _dir: dir });
    *slot = Arc::downgrade(&shared);
    shared
}

/// Asserts the server still answers and has logged no panic.
pub(super) async fn assert_unharmed(server: &ServerProc) {
    assert_alive(server).await;
    let log = server.log();
    assert!(!log.contains("panicked at"), "the server panicked:\n{}", &log[log.find("panicked at").unwrap_or(0)..][..2000.min(log.len())]);
}

/// Asserts `answer` is kube's refusal: `code` with Status reason `reason`.
#[track_caller]
fn assert_refused(answer: &Answer, code: u16, reason: &str) {
    assert_eq!((answer.code, answer.body["reason"].as_str()), (code, Some(reason)), "{}", answer.text);
    assert_eq!(answer.body["kind"], "Status", "{}", answer.text);
}

async fn create(caller: &Caller, path: &str, obj: Value) -> Value {
    let answer = caller.send("POST", path, "application/json", obj.to_string()).await;
    assert_eq!(answer.code, 201, "{}", answer.text);
    answer.body
}

fn pod(name: &str, extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
        "spec": { "nodeName": "nowhere", "containers": [{ "name": "c", "image": "busybox" }] },
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        pod["spec"][k] = v.clone();
    }
    pod
}

#[tokio::test]
async fn grace_periods_at_the_edges_of_int64_do_not_crash_deletion() {
    let shared = shared().await;
    let tenant = shared.tenant();
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    create(&tenant, &pods, pod("grace", json!({ "terminationGracePeriodSeconds": 9223372036854775807i64 }))).await;
    let at = format!("{pods}/grace");
    // Malformed periods are the parameter codec's 400.
    let answer = tenant.send("DELETE", &format!("{at}?gracePeriodSeconds=abc"), "", "").await;
    assert_refused(&answer, 400, "BadRequest");
    assert!(answer.body["message"].as_str().unwrap().contains("strconv.ParseInt: parsing \"abc\""), "{}", answer.text);
    let answer = tenant.send("DELETE", &at, "application/json", r#"{"gracePeriodSeconds": 1e300}"#).await;
    assert_refused(&answer, 400, "BadRequest");
    assert!(tenant.get(&at).await.body["metadata"]["deletionTimestamp"].is_null(), "a refused delete changed nothing");
    // The largest period is accepted and saturates; the pod's own (just as large) one too.
    let answer = tenant.send("DELETE", &format!("{at}?gracePeriodSeconds=9223372036854775807"), "", "").await;
    assert_eq!(answer.code, 200, "{}", answer.text);
    assert_eq!(answer.body["metadata"]["deletionTimestamp"], "9999-12-31T23:59:59Z", "{}", answer.text);
    assert_eq!(answer.body["metadata"]["deletionGracePeriodSeconds"], 9223372036854775807i64);
    let answer = tenant.send("DELETE", &at, "", "").await;
    assert_eq!(answer.code, 200, "deleting again with the pod's own period: {}", answer.text);
    // A negative period means one second, as kube-apiserver has it.
    let answer = tenant.send("DELETE", &format!("{at}?gracePeriodSeconds=-9223372036854775808"), "", "").await;
    assert_eq!(answer.code, 200, "{}", answer.text);
    assert_eq!(answer.body["metadata"]["deletionGracePeriodSeconds"], 1, "{}", answer.text);
    let answer = tenant.send("DELETE", &format!("{at}?gracePeriodSeconds=0"), "", "").await;
    assert_eq!(answer.code, 200, "{}", answer.text);
    assert_eq!(tenant.get(&at).await.code, 404);
    assert_unharmed(&shared.server).await;
}

#[tokio::test]
async fn token_requests_outside_kube_bounds_are_invalid() {
    let shared = shared().await;
    let tenant = shared.tenant();
    let path = format!("/api/v1/namespaces/{NS}/serviceaccounts/intruder/token");
    for (seconds, why) in [
        (i64::MAX, "may not specify a duration larger than 2^32 seconds"),
        (i64::MIN, "may not specify a duration less than 10 minutes"),
        (599, "may not specify a duration less than 10 minutes"),
    ] {
        let answer = tenant.send("POST", &path, "application/json", json!({ "spec": { "expirationSeconds": seconds } }).to_string()).await;
        assert_refused(&answer, 422, "Invalid");
        assert!(answer.body["message"].as_str().unwrap().contains(why), "{seconds}: {}", answer.text);
    }
    assert_unharmed(&shared.server).await;
}

#[tokio::test]
async fn json_patch_copies_cannot_build_unbounded_nesting() {
    let shared = shared().await;
    let tenant = shared.tenant();
    let path = format!("/api/v1/namespaces/{NS}/configmaps");
    let before = create(&tenant, &path, json!({ "metadata": { "name": "deep" }, "data": { "k": "v" } })).await;
    // Each copy of /x into its own leaf doubles its depth: 65k levels from a 130 KB body.
    let mut ops = vec![json!({ "op": "add", "path": "/x", "value": {} })];
    ops.extend((0..16).map(|k| json!({ "op": "copy", "from": "/x", "path": "/x".repeat((1 << k) + 1) })));
    let answer = tenant.send("PATCH", &format!("{path}/deep"), "application/json-patch+json", json!(ops).to_string()).await;
    assert_refused(&answer, 422, "Invalid");
    assert!(answer.body["message"].as_str().unwrap().contains("nest more than 127 levels"), "{}", answer.text);
    // Copies that double the size: kube's 3 MiB copy budget.
    let big = json!([
        { "op": "add", "path": "/x", "value": ["x".repeat(100_000)] },
    ]);
    let mut ops = big.as_array().unwrap().clone();
    ops.extend((0..40).map(|_| json!({ "op": "copy", "from": "/x", "path": "/x/-" })));
    let answer = tenant.send("PATCH", &format!("{path}/deep"), "application/json-patch+json", json!(ops).to_string()).await;
    assert_refused(&answer, 422, "Invalid");
    assert!(answer.body["message"].as_str().unwrap().contains("accumulated size increase of copy"), "{}", answer.text);
    let after = tenant.get(&format!("{path}/deep")).await.body;
    assert_eq!(after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"], "nothing was written");
    assert_unharmed(&shared.server).await;
}

#[tokio::test]
async fn yaml_alias_bombs_are_refused_before_they_expand() {
    let shared = shared().await;
    let tenant = shared.tenant();
    // 25 million nodes from 35 KB: one wide anchor, repeated (serde_yaml's own repetition
    // limit counts jumps, not what they expand to).
    let bomb = format!(
        "apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectAccessReview\nmetadata:\n  labels: &a [{}]\n  annotations: [{}]\nspec: {{}}\n",
        vec!["1"; 5000].join(","),
        vec!["*a"; 5000].join(",")
    );
    let started = std::time::Instant::now();
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let answer = shared.service_account().send("POST", path, "application/yaml", bomb.clone()).await;
    assert_refused(&answer, 400, "BadRequest");
    assert!(answer.body["message"].as_str().unwrap().contains("document contains excessive aliasing"), "{}", answer.text);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // The same through server-side apply of a ConfigMap.
    let apply = format!("{NS}/configmaps/bomb?fieldManager=m");
    let answer = tenant.send("PATCH", &format!("/api/v1/namespaces/{apply}"), "application/apply-patch+yaml", bomb).await;
    assert_refused(&answer, 400, "BadRequest");
    assert_eq!(tenant.get(&format!("/api/v1/namespaces/{NS}/configmaps/bomb")).await.code, 404);
    assert_unharmed(&shared.server).await;
}

#[tokio::test]
async fn malformed_resource_versions_and_list_options_are_refused() {
    let shared = shared().await;
    let tenant = shared.tenant();
    let list = format!("/api/v1/namespaces/{NS}/configmaps");
    create(&tenant, &list, json!({ "metadata": { "name": "rv" } })).await;
    for query in ["resourceVersion=abc", "watch=1&resourceVersion=abc", "resourceVersion=-1", "resourceVersion=18446744073709551616"] {
        let answer = shared.service_account().get(&format!("{list}?{query}")).await;
        // Authorisation comes first for a ServiceAccount without roles; the tenant may list.
        assert_eq!(answer.code, 403, "{query}: {}", answer.text);
        let answer = tenant.get(&format!("{list}?{query}")).await;
        assert_refused(&answer, 400, "BadRequest");
        assert!(
            answer.body["message"].as_str().unwrap().starts_with("invalid resource version: resourceVersion: Invalid value:"),
            "{}",
            answer.text
        );
    }
    let answer = tenant.get(&format!("{list}/rv?resourceVersion=abc")).await;
    assert_refused(&answer, 400, "BadRequest");
    for query in ["limit=abc", "limit=99999999999999999999", "timeoutSeconds=1e9&watch=1"] {
        assert_refused(&tenant.get(&format!("{list}?{query}")).await, 400, "BadRequest");
    }
    let answer = tenant.get(&format!("{list}?resourceVersion=1&resourceVersionMatch=Bogus")).await;
    assert_refused(&answer, 422, "Invalid");
    assert!(answer.text.contains(r#"resourceVersionMatch: Unsupported value: \"Bogus\""#), "{}", answer.text);
    // Edges of the types that are valid are served.
    let edges = [
        "limit=-9223372036854775808",
        "limit=9223372036854775807",
        "watch=1&timeoutSeconds=-1",
        "resourceVersion=0",
        "resourceVersion=9223372036854775807",
        "watch=1&timeoutSeconds=1&resourceVersion=9223372036854775807",
    ];
    for query in edges {
        let answer = tenant.get(&format!("{list}?{query}")).await;
        assert_eq!(answer.code, 200, "{query}: {}", answer.text);
    }
    assert_unharmed(&shared.server).await;
}

#[tokio::test]
async fn pod_log_options_are_validated_before_reaching_a_kubelet() {
    let shared = shared().await;
    let tenant = shared.tenant();
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    create(&tenant, &pods, pod("logs", json!({}))).await;
    for (query, field) in [
        ("sinceSeconds=-9223372036854775808", "sinceSeconds"),
        ("sinceSeconds=0", "sinceSeconds"),
        ("tailLines=-1", "tailLines"),
        ("limitBytes=0", "limitBytes"),
    ] {
        let answer = tenant.get(&format!("{pods}/logs/log?{query}")).await;
        assert_refused(&answer, 422, "Invalid");
        assert!(
            answer.body["message"].as_str().unwrap().starts_with(&format!("PodLogOptions \"logs\" is invalid: {field}")),
            "{}",
            answer.text
        );
    }
    assert_refused(&tenant.get(&format!("{pods}/logs/log?sinceSeconds=1e3")).await, 400, "BadRequest");
    assert_refused(&tenant.get(&format!("{pods}/logs/log?sinceTime=yesterday")).await, 400, "BadRequest");
    assert_unharmed(&shared.server).await;
}

#[tokio::test]
async fn numbers_in_objects_are_typed_and_range_checked_and_stored_extremes_compute() {
    let shared = shared().await;
    let tenant = shared.tenant();
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    // Out of its Go type: the decoder's 400. Out of kube's range: 422.
    let probe = json!({ "containers": [{ "name": "c", "image": "busybox", "livenessProbe": { "exec": { "command": ["true"] }, "periodSeconds": 1e18 } }] });
    let answer = tenant.send("POST", &pods, "application/json", pod("typed", probe).to_string()).await;
    assert_refused(&answer, 400, "BadRequest");
    assert!(answer.text.contains("of type int32"), "{}", answer.text);
    let answer = tenant.send("POST", &pods, "application/json", pod("ranged", json!({ "activeDeadlineSeconds": 0 })).to_string()).await;
    assert_refused(&answer, 422, "Invalid");
    assert!(answer.text.contains("must be between 1 and 2147483647, inclusive"), "{}", answer.text);
    for name in ["typed", "ranged"] {
        assert_eq!(tenant.get(&format!("{pods}/{name}")).await.code, 404, "nothing stored");
    }
    // kube takes any int64 here: the controllers must compute with them without overflowing.
    let template = json!({ "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox" }] } });
    let jobs = format!("/apis/batch/v1/namespaces/{NS}/jobs");
    let job = json!({ "metadata": { "name": "forever" }, "spec": { "activeDeadlineSeconds": i64::MAX, "template": template } });
    create(&tenant, &jobs, job).await;
    let cronjobs = format!("/apis/batch/v1/namespaces/{NS}/cronjobs");
    let cronjob = json!({ "metadata": { "name": "late" }, "spec": { "schedule": "* * * * *", "startingDeadlineSeconds": i64::MAX,
        "jobTemplate": { "spec": { "template": template } } } });
    create(&tenant, &cronjobs, cronjob).await;
    crate::support::wait_for(Duration::from_secs(20), "the job controller to start the job", || async {
        tenant.get(&format!("{jobs}/forever")).await.body["status"]["startTime"].as_str().map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_unharmed(&shared.server).await;
}
