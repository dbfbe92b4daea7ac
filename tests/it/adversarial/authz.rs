//! Adversarial tests: authorisation (see mod.rs). One server is shared by the three classes:
//! cluster-scoped resources reached through a namespace path, RBAC escalation, and what a node
//! certificate can read or write.

use std::time::Duration;

use serde_json::{json, Value};

use super::{assert_alive, make_namespace_admin, Answer, Caller};
use crate::support::{kubectl, wait_for, ServerProc};

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";

fn assert_refused(answer: &Answer, code: u16, reason: &str, what: &str) {
    assert_eq!(answer.code, code, "{what}: {}", answer.text);
    assert_eq!(answer.body["kind"], "Status", "{what}: {}", answer.text);
    assert_eq!(answer.body["reason"], reason, "{what}: {}", answer.text);
    assert_eq!(answer.body["code"], code, "{what}: {}", answer.text);
}

/// The names of every object of a cluster-wide or namespaced list, as the admin sees them.
async fn names(admin: &Caller, path: &str) -> Vec<String> {
    let list = admin.get(path).await;
    assert_eq!(list.code, 200, "{path}: {}", list.text);
    let mut names: Vec<String> =
        list.body["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

async fn apply(server: &ServerProc, home: &std::path::Path, manifest: &str) {
    let (ok, out, err) = kubectl(server, home, &["apply", "-f", "-"], Some(manifest)).await;
    assert!(ok, "kubectl apply: {out}{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn authorisation_attacks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::ready_server(dir.path(), &["--disable-controllers".to_string()]).await;
    let home = dir.path().join("home");
    let tenant = make_namespace_admin(&server, &home, "team", "tenant").await;
    cluster_scope_through_namespace_paths(&server, &tenant).await;
    rbac_escalation(&server, &home).await;
    node_authorizer(&server, &home).await;
}

/// Item 1: a namespace admin cannot reach cluster-scoped resources through its namespace.
async fn cluster_scope_through_namespace_paths(server: &ServerProc, tenant: &Caller) {
    let admin = Caller::admin(server);
    let bindings_before = names(&admin, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings").await;
    let grab = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": { "name": "tenant-owns-all" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "tenant" }],
    });
    let attacks = [
        ("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/team/clusterrolebindings", grab.to_string()),
        ("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/team/clusterrolebindings", String::new()),
        ("GET", "/api/v1/namespaces/team/namespaces/kube-system", String::new()),
        ("DELETE", "/api/v1/namespaces/team/namespaces/kube-system", String::new()),
        ("PATCH", "/api/v1/namespaces/team/nodes/any", "{}".to_string()),
        ("GET", "/api/v1/namespaces/team/nodes", String::new()),
    ];
    for (method, path, body) in attacks {
        let content_type = if method == "PATCH" { MERGE } else { JSON };
        let answer = tenant.send(method, path, if body.is_empty() { "" } else { content_type }, body).await;
        assert_refused(&answer, 404, "NotFound", &format!("{method} {path}"));
        assert_eq!(answer.body["message"], "the server could not find the requested resource", "{method} {path}");
    }
    // Namespaced resources outside a namespace: only list and watch exist there.
    assert_refused(&admin.get("/api/v1/configmaps/anything").await, 404, "NotFound", "a named configmap without a namespace");
    let create = admin.send("POST", "/api/v1/configmaps", JSON, json!({ "metadata": { "name": "x" } }).to_string()).await;
    assert_refused(&create, 405, "MethodNotAllowed", "a configmap created without a namespace");
    // The namespace's own subresources still work.
    assert_eq!(admin.get("/api/v1/namespaces/team/status").await.code, 200);
    assert_eq!(admin.get("/api/v1/configmaps").await.code, 200, "listing across namespaces");

    assert_alive(server).await;
    assert_eq!(names(&admin, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings").await, bindings_before, "no binding was made");
    assert_eq!(admin.get("/api/v1/namespaces/kube-system").await.body["status"]["phase"], "Active", "kube-system is untouched");
    let list = tenant.get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings").await;
    assert_refused(&list, 403, "Forbidden", "the tenant gained no cluster rights");
}

/// Item 2: writing RBAC objects never grants more than the writer holds; default roles,
/// aggregation and nonResourceURLs work as kube-apiserver's.
async fn rbac_escalation(server: &ServerProc, home: &std::path::Path) {
    let admin = Caller::admin(server);
    // A role manager: writes Roles and RoleBindings in team, reads ConfigMaps; no escalate/bind.
    apply(
        server,
        home,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: role-manager, namespace: team }
rules:
  - { apiGroups: [rbac.authorization.k8s.io], resources: [roles, rolebindings], verbs: [get, list, create, update, patch, delete] }
  - { apiGroups: [""], resources: [configmaps], verbs: [get, list] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: role-manager, namespace: team }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: role-manager }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: manager }]
"#,
    )
    .await;
    let (ok, out, err) = kubectl(server, home, &["create", "serviceaccount", "sa", "-n", "team"], None).await;
    assert!(ok, "{out}{err}");
    let manager = Caller::cert(server, "manager", &[]);
    wait_for(Duration::from_secs(10), "the manager's binding to take effect", || async {
        (manager.get("/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles").await.code == 200).then_some(())
    })
    .await;
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles";
    let bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings";
    let roles_before = names(&admin, roles).await;
    let bindings_before = names(&admin, bindings).await;
    let role = |name: &str, rules: Value| json!({ "metadata": { "name": name }, "rules": rules }).to_string();

    let escalate = manager
        .send("POST", roles, JSON, role("secret-reader", json!([{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] }])))
        .await;
    assert_refused(&escalate, 403, "Forbidden", "a Role granting what its writer lacks");
    assert_eq!(
        escalate.body["message"],
        "roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden: user \"manager\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
    );
    let wildcard =
        manager.send("POST", roles, JSON, role("star", json!([{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"] }]))).await;
    assert_refused(&wildcard, 403, "Forbidden", "a wildcard verb is more than get+list");
    let grow = json!({ "rules": [{ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] }] }).to_string();
    let patched = manager.send("PATCH", &format!("{roles}/role-manager"), MERGE, grow).await;
    assert_refused(&patched, 403, "Forbidden", "widening its own Role by a patch");
    let bind = |name: &str, kind: &str, role: &str| {
        json!({ "metadata": { "name": name }, "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "manager" }] })
        .to_string()
    };
    for target in ["admin", "edit", "cluster-admin"] {
        let answer = manager.send("POST", bindings, JSON, bind(&format!("manager-{target}"), "ClusterRole", target)).await;
        assert_refused(&answer, 403, "Forbidden", &format!("binding itself to {target}"));
        assert!(answer.text.contains("is attempting to grant RBAC permissions not currently held"), "{}", answer.text);
    }
    // What it holds, it may grant.
    let allowed = manager
        .send("POST", roles, JSON, role("cm-reader", json!([{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"] }])))
        .await;
    assert_eq!(allowed.code, 201, "{}", allowed.text);
    let allowed = manager.send("POST", bindings, JSON, bind("cm-reader", "Role", "cm-reader")).await;
    assert_eq!(allowed.code, 201, "{}", allowed.text);

    // The defaults kube-apiserver bootstraps.
    for name in
        ["cluster-admin", "admin", "edit", "view", "system:discovery", "system:basic-user", "system:public-info-viewer", "system:node"]
    {
        let role = admin.get(&format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}")).await;
        assert_eq!(role.code, 200, "{name}: {}", role.text);
        assert_eq!(role.body["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"], "true", "{name}");
    }
    let view = admin.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/view").await;
    assert!(view.text.contains("\"configmaps\""), "view holds the rules it aggregates: {}", view.text);

    // nonResourceURLs: discovery for every authenticated caller, nothing more.
    let nobody = Caller::cert(server, "nobody", &[]);
    assert_eq!(nobody.get("/apis").await.code, 200);
    assert_eq!(nobody.get("/api/v1").await.code, 200);
    let can = |path: &str| {
        json!({ "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": { "nonResourceAttributes": { "verb": "get", "path": path } } })
        .to_string()
    };
    let review = nobody.send("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", JSON, can("/version")).await;
    assert_eq!(review.body["status"]["allowed"], true, "{}", review.text);
    let review = nobody.send("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", JSON, can("/metrics")).await;
    assert_eq!(review.body["status"]["allowed"], false, "{}", review.text);

    assert_refused(&Caller::anonymous(server).get("/apis").await, 401, "Unauthorized", "no anonymous discovery");
    let minted = admin.send("POST", "/api/v1/namespaces/team/serviceaccounts/sa/token", JSON, "{}").await;
    let account = Caller::token(server, minted.body["status"]["token"].as_str().expect("a token"));
    assert_eq!(account.get("/api/v1").await.code, 200, "a ServiceAccount is authenticated for discovery");
    assert_refused(&account.get("/api/v1/namespaces/team/secrets").await, 403, "Forbidden", "a ServiceAccount reads no secrets");

    // Aggregation: a ClusterRole labelled for `view` adds to what `view` grants.
    apply(
        server,
        home,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: viewer }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: viewer }]
"#,
    )
    .await;
    let viewer = Caller::cert(server, "viewer", &[]);
    wait_for(Duration::from_secs(10), "view to take effect", || async {
        (viewer.get("/api/v1/configmaps").await.code == 200).then_some(())
    })
    .await;
    assert_refused(&viewer.get("/api/v1/nodes").await, 403, "Forbidden", "view does not read nodes");
    apply(
        server,
        home,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: node-viewer, labels: { rbac.authorization.k8s.io/aggregate-to-view: "true" } }
rules: [{ apiGroups: [""], resources: [nodes], verbs: [list] }]
"#,
    )
    .await;
    wait_for(Duration::from_secs(10), "view to aggregate node-viewer", || async {
        (viewer.get("/api/v1/nodes").await.code == 200).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(10), "the stored view role to show the gathered rule", || async {
        admin.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/view").await.text.contains("\"nodes\"").then_some(())
    })
    .await;
    let (ok, out, err) = kubectl(server, home, &["delete", "clusterrole", "node-viewer"], None).await;
    assert!(ok, "{out}{err}");
    wait_for(Duration::from_secs(10), "view to drop node-viewer's rule", || async {
        (viewer.get("/api/v1/nodes").await.code == 403).then_some(())
    })
    .await;

    assert_alive(server).await;
    let mut expected_roles = roles_before;
    expected_roles.push("cm-reader".into());
    expected_roles.sort();
    assert_eq!(names(&admin, roles).await, expected_roles, "no escalating Role was stored");
    let mut expected_bindings = bindings_before;
    expected_bindings.push("cm-reader".into());
    expected_bindings.sort();
    assert_eq!(names(&admin, bindings).await, expected_bindings, "no escalating RoleBinding was stored");
    let own = admin.get(&format!("{roles}/role-manager")).await;
    assert_eq!(own.body["rules"].as_array().unwrap().len(), 2, "its own Role is unchanged: {}", own.text);
}

/// Item 3: a node reads only what the pods bound to it refer to, gets tokens only for them,
/// and writes only its own pods.
async fn node_authorizer(server: &ServerProc, home: &std::path::Path) {
    let admin = Caller::admin(server);
    apply(
        server,
        home,
        r#"
apiVersion: v1
kind: Secret
metadata: { name: mine, namespace: team }
stringData: { k: n1-may-read }
---
apiVersion: v1
kind: Secret
metadata: { name: theirs, namespace: team }
stringData: { k: only-n2 }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: env, namespace: team }
data: { k: v }
---
apiVersion: v1
kind: Pod
metadata: { name: p1, namespace: team }
spec:
  nodeName: n1
  serviceAccountName: sa
  containers: [{ name: c, image: busybox, envFrom: [{ configMapRef: { name: env } }] }]
  volumes: [{ name: s, secret: { secretName: mine } }]
---
apiVersion: v1
kind: Pod
metadata: { name: p2, namespace: team }
spec:
  nodeName: n2
  serviceAccountName: sa
  containers: [{ name: c, image: busybox }]
  volumes: [{ name: s, secret: { secretName: theirs } }]
"#,
    )
    .await;
    let n1 = Caller::cert(server, "system:node:n1", &["system:nodes"]);
    wait_for(Duration::from_secs(10), "node n1 to read the secret its pod mounts", || async {
        (n1.get("/api/v1/namespaces/team/secrets/mine").await.code == 200).then_some(())
    })
    .await;
    assert_eq!(n1.get("/api/v1/namespaces/team/configmaps/env").await.code, 200, "a ConfigMap its pod takes env from");
    assert_eq!(
        n1.get("/api/v1/namespaces/team/secrets?fieldSelector=metadata.name%3Dmine").await.code,
        200,
        "a list of one referenced name"
    );

    let theirs = n1.get("/api/v1/namespaces/team/secrets/theirs").await;
    assert_refused(&theirs, 403, "Forbidden", "another node's secret");
    assert_eq!(
        theirs.body["message"],
        "secrets \"theirs\" is forbidden: User \"system:node:n1\" cannot get resource \"secrets\" in API group \"\" in the namespace \"team\": no relationship found between node 'n1' and this object"
    );
    for path in
        ["/api/v1/secrets", "/api/v1/namespaces/kube-system/secrets", "/api/v1/namespaces/team/configmaps", "/api/v1/secrets?watch=1"]
    {
        let answer = n1.get(path).await;
        assert_refused(&answer, 403, "Forbidden", path);
        assert!(answer.text.contains("can only get individual resources of this type"), "{path}: {}", answer.text);
    }

    // Tokens: only bound to a pod of its own, and never longer than a day.
    let p1_uid = admin.get("/api/v1/namespaces/team/pods/p1").await.body["metadata"]["uid"].as_str().unwrap().to_string();
    let p2_uid = admin.get("/api/v1/namespaces/team/pods/p2").await.body["metadata"]["uid"].as_str().unwrap().to_string();
    let token = |bound: Value| {
        json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": { "audiences": [], "expirationSeconds": 4294967296i64, "boundObjectRef": bound } }).to_string()
    };
    let path = "/api/v1/namespaces/team/serviceaccounts/sa/token";
    let unbound = n1.send("POST", path, JSON, token(Value::Null)).await;
    assert_refused(&unbound, 403, "Forbidden", "an unbound token");
    assert!(unbound.text.contains("not bound to a pod"), "{}", unbound.text);
    let other = n1.send("POST", path, JSON, token(json!({ "kind": "Pod", "apiVersion": "v1", "name": "p2", "uid": p2_uid }))).await;
    assert_refused(&other, 403, "Forbidden", "a token bound to another node's pod");
    let default = n1.send("POST", "/api/v1/namespaces/team/serviceaccounts/default/token", JSON, token(Value::Null)).await;
    assert_refused(&default, 403, "Forbidden", "a token of an account none of its pods uses");
    let ok = n1.send("POST", path, JSON, token(json!({ "kind": "Pod", "apiVersion": "v1", "name": "p1", "uid": p1_uid }))).await;
    assert_eq!(ok.code, 201, "a token for its own pod: {}", ok.text);
    assert!(ok.body["spec"]["expirationSeconds"].as_i64().unwrap() <= 24 * 3600, "capped: {}", ok.text);

    // Pod status: checked as stored, not only as the patch claims it will be.
    let hijack = json!({ "spec": { "nodeName": "n1" }, "status": { "podIP": "203.0.113.66" } }).to_string();
    let answer = n1.send("PATCH", "/api/v1/namespaces/team/pods/p2/status", MERGE, hijack).await;
    assert_refused(&answer, 403, "Forbidden", "a status patch of another node's pod claiming its nodeName");
    let answer = n1.send("DELETE", "/api/v1/namespaces/team/pods/p2", "", "").await;
    assert_refused(&answer, 403, "Forbidden", "deleting another node's pod");
    let own =
        n1.send("PATCH", "/api/v1/namespaces/team/pods/p1/status", MERGE, json!({ "status": { "podIP": "10.42.0.7" } }).to_string()).await;
    assert_eq!(own.code, 200, "its own pod's status: {}", own.text);

    // Events: about itself (in `default`) and about its pods, never in other namespaces.
    let event = |ns: &str| {
        json!({ "apiVersion": "v1", "kind": "Event", "metadata": { "generateName": "n1-", "namespace": ns },
            "involvedObject": { "kind": "Node", "name": "n1" }, "reason": "Flood", "message": "x", "type": "Normal" })
        .to_string()
    };
    let own = n1.send("POST", "/api/v1/namespaces/team/events", JSON, event("team")).await;
    assert_eq!(own.code, 201, "an event where its pod lives: {}", own.text);
    let flood = n1.send("POST", "/api/v1/namespaces/kube-system/events", JSON, event("kube-system")).await;
    assert_refused(&flood, 403, "Forbidden", "an event in a namespace without its pods");
    assert!(!admin.get("/api/v1/namespaces/kube-system/events").await.text.contains("Flood"), "nothing stored");

    assert_alive(server).await;
    let p2 = admin.get("/api/v1/namespaces/team/pods/p2").await;
    assert_eq!(p2.body["spec"]["nodeName"], "n2");
    assert!(p2.body["status"]["podIP"].is_null(), "p2's status is untouched: {}", p2.text);
    assert_eq!(admin.get("/api/v1/namespaces/team/secrets/theirs").await.code, 200);
}
