//! Running a request's webhooks as kube-apiserver does: mutating webhooks one after another
//! (each sees the previous one's JSON patch applied; `reinvocationPolicy: IfNeeded` webhooks
//! run once more when a later one changed the object), then validating webhooks all at once.
//! A denial answers with the webhook's Status; a failed call is `failurePolicy`'s: `Ignore`
//! lets the request through, `Fail` answers kube's 500 `failed calling webhook "NAME": ...`.
//! Dry-run requests reach only webhooks without side effects.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::matching::{self, Attributes};
use super::review::{self, Verdict};
use super::{Admission, Hook};
use crate::api::objects::{self, Scope};
use crate::api::patch::PatchType;
use crate::api::registry;
use crate::api::status::ApiError;

/// The admission operation of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }

    fn options_kind(self) -> &'static str {
        match self {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
        }
    }
}

/// One write as its webhooks are told about it.
pub struct Call<'a> {
    pub operation: Operation,
    /// The object's name.
    pub name: &'a str,
    pub dry_run: bool,
}

/// kube-apiserver's `NewInternalError`: 500 `Internal error occurred: <err>`.
fn internal_error(err: String) -> ApiError {
    ApiError {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        reason: "InternalError",
        message: format!("Internal error occurred: {err}"),
        details: Some(json!({ "causes": [{ "message": err }] })),
    }
}

impl Admission {
    /// Runs the mutating webhooks on `object` (none for a delete); whether any changed it.
    pub async fn mutate(
        &self,
        scope: &Scope<'_>,
        call: &Call<'_>,
        mut object: Option<&mut Value>,
        old: Option<&Value>,
    ) -> Result<bool, ApiError> {
        let mut labels = None;
        let (mut changed, mut invoked, mut again) = (false, Vec::new(), Vec::new());
        for (i, hook) in self.hooks.mutating.iter().enumerate() {
            let Some(changed_now) = self.mutate_once(hook, scope, call, object.as_deref_mut(), old, &mut labels).await? else { continue };
            if changed_now {
                // Everything reinvocable called before this change sees the object again.
                again.append(&mut invoked);
                changed = true;
            }
            if hook.reinvoke {
                invoked.push(i);
            }
        }
        for i in again {
            changed |=
                self.mutate_once(&self.hooks.mutating[i], scope, call, object.as_deref_mut(), old, &mut labels).await?.unwrap_or(false);
        }
        Ok(changed)
    }

    /// Calls one mutating webhook if it takes the request: `None` when it does not, else
    /// whether its patch changed the object.
    async fn mutate_once(
        &self,
        hook: &Hook,
        scope: &Scope<'_>,
        call: &Call<'_>,
        object: Option<&mut Value>,
        old: Option<&Value>,
        labels: &mut Option<Value>,
    ) -> Result<Option<bool>, ApiError> {
        let attributes = attributes(scope, call, object.as_deref(), old);
        if !self.takes(hook, &attributes, labels).await? {
            return Ok(None);
        }
        let Some(verdict) = self.call(hook, scope, call, object.as_deref(), old).await? else { return Ok(Some(false)) };
        if !verdict.allowed {
            return Err(review::denied(&hook.name, &verdict.status));
        }
        let Some(patch) = verdict.patch else { return Ok(Some(false)) };
        let ops: Vec<Value> = serde_json::from_slice(&patch).map_err(|e| internal_error(format!("invalid JSON patch: {e}")))?;
        if ops.is_empty() {
            return Ok(Some(false));
        }
        let Some(object) = object else {
            return Err(internal_error(format!(
                "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
                hook.name
            )));
        };
        let mut patched = object.clone();
        crate::api::patch::apply(&mut patched, PatchType::Json, &patch, Default::default()).map_err(|e| internal_error(e.message))?;
        let changed = patched != *object;
        *object = patched;
        Ok(Some(changed))
    }

    /// Runs the validating webhooks (concurrently); the first refusal, in webhook order, wins.
    pub async fn validate(&self, scope: &Scope<'_>, call: &Call<'_>, object: Option<&Value>, old: Option<&Value>) -> Result<(), ApiError> {
        let attributes = attributes(scope, call, object, old);
        let mut labels = None;
        let mut chosen = Vec::new();
        for hook in &self.hooks.validating {
            if self.takes(hook, &attributes, &mut labels).await? {
                chosen.push(hook);
            }
        }
        let verdicts = futures::future::join_all(chosen.iter().map(|hook| self.call(hook, scope, call, object, old))).await;
        for (hook, verdict) in chosen.into_iter().zip(verdicts) {
            if let Some(v) = verdict?.filter(|v| !v.allowed) {
                return Err(review::denied(&hook.name, &v.status));
            }
        }
        Ok(())
    }

    /// Whether `hook` takes the request (reading the namespace's labels once, if needed).
    async fn takes(&self, hook: &Hook, request: &Attributes<'_>, labels: &mut Option<Value>) -> Result<bool, ApiError> {
        if !matching::rules_match(hook, request) {
            return Ok(false);
        }
        if let (true, Some(namespace)) = (matching::needs_namespace(hook, request), request.stored_namespace()) {
            if labels.is_none() {
                let scope = Scope::new(registry::namespaces(), None, Default::default());
                let stored = objects::get(self.context.store.as_ref(), &scope, namespace).await?;
                *labels = Some(stored["metadata"]["labels"].clone());
            }
        }
        Ok(matching::namespace_matches(hook, request, labels.as_ref().unwrap_or(&Value::Null)))
    }

    /// Calls `hook`: its verdict, or `None` when the call failed and its policy ignores that.
    async fn call(
        &self,
        hook: &Hook,
        scope: &Scope<'_>,
        call: &Call<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<Option<Verdict>, ApiError> {
        if call.dry_run && !hook.dry_run_safe {
            return Err(ApiError::bad_request(format!("admission webhook {:?} does not support dry run", hook.name)));
        }
        match self.try_call(hook, scope, call, object, old).await {
            Ok(verdict) => {
                self.context.warnings.lock().extend(verdict.warnings.iter().cloned());
                Ok(Some(verdict))
            }
            Err(reason) if hook.ignore_failures => {
                tracing::warn!(webhook = hook.name, %reason, "failed calling webhook, failing open");
                Ok(None)
            }
            Err(reason) => {
                tracing::warn!(webhook = hook.name, %reason, "failed calling webhook, failing closed");
                Err(internal_error(format!("failed calling webhook {:?}: {reason}", hook.name)))
            }
        }
    }

    async fn try_call(
        &self,
        hook: &Hook,
        scope: &Scope<'_>,
        call: &Call<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<Verdict, String> {
        let r = scope.resource;
        let uid = objects::new_uid();
        let attributes = attributes(scope, call, object, old);
        let mut options = json!({ "kind": call.operation.options_kind(), "apiVersion": "meta.k8s.io/v1" });
        if call.dry_run {
            options["dryRun"] = json!(["All"]);
        }
        if let Some(manager) = self.context.field_manager.as_deref().filter(|_| call.operation != Operation::Delete) {
            options["fieldManager"] = json!(manager);
        }
        let request = review::Request {
            uid: &uid,
            kind: json!({ "group": r.group, "version": r.version, "kind": r.kind }),
            resource: json!({ "group": r.group, "version": r.version, "resource": r.plural }),
            subresource: attributes.subresource,
            name: call.name,
            namespace: attributes.namespace,
            operation: call.operation.as_str(),
            user_info: self.context.user_info(),
            object,
            old_object: old,
            dry_run: call.dry_run,
            options,
        };
        let body = serde_json::to_vec(&review::body(hook.review_version, &request)).map_err(|e| e.to_string())?;
        let to = hook.endpoint.resolve(&self.context.store, hook.timeout).await.map_err(|e| format!("failed to call webhook: {e}"))?;
        let answer = tokio::time::timeout(hook.timeout, self.transport.post(&to, body))
            .await
            .map_err(|_| format!("failed to call webhook: Post {:?}: context deadline exceeded", to.url))?
            .map_err(|e| format!("failed to call webhook: {e}"))?;
        review::parse(&answer, &uid, hook.review_version, hook.mutating).map_err(|e| format!("received invalid webhook response: {e}"))
    }
}

/// The request as webhooks match it. A Namespace's namespace is its own name (but on create,
/// as kube-apiserver's request path has none).
fn attributes<'a>(scope: &'a Scope<'_>, call: &'a Call<'_>, object: Option<&'a Value>, old: Option<&'a Value>) -> Attributes<'a> {
    let r = scope.resource;
    let namespace = match (r.group, r.plural, call.operation) {
        ("", "namespaces", Operation::Create) => "",
        ("", "namespaces", _) => call.name,
        _ if r.namespaced => scope.namespace.unwrap_or_default(),
        _ => "",
    };
    Attributes {
        group: r.group,
        version: r.version,
        resource: r.plural,
        subresource: scope.subresource.unwrap_or_default(),
        namespace,
        operation: call.operation,
        object,
        old,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine;
    use bytes::Bytes;
    use parking_lot::Mutex;

    use super::super::client::{CallError, Resolved, Transport};
    use super::super::{configuration, Context, Hooks};
    use super::*;

    /// Answers each review by the webhook's URL path; records the paths called.
    struct Fake {
        called: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Transport for Fake {
        async fn post(&self, to: &Resolved, body: Vec<u8>) -> Result<Bytes, CallError> {
            let path = to.path.split('?').next().unwrap_or_default().to_string();
            self.called.lock().push(path.clone());
            let review: Value = serde_json::from_slice(&body).unwrap();
            let labels = &review["request"]["object"]["metadata"]["labels"];
            let mut response = json!({ "uid": review["request"]["uid"], "allowed": true });
            let patch = |ops: Value| base64::engine::general_purpose::STANDARD.encode(ops.to_string());
            match path.as_str() {
                "/down" => return Err(CallError::Post { url: to.url.clone(), reason: "connection refused".into() }),
                "/deny" => response = json!({ "uid": response["uid"], "allowed": false, "status": { "message": "no", "code": 403 } }),
                // Labels `a` once; unchanged the second time.
                "/a" if labels.get("a").is_none() => {
                    response["patchType"] = json!("JSONPatch");
                    response["patch"] = json!(patch(json!([{ "op": "add", "path": "/metadata/labels/a", "value": "1" }])));
                }
                "/b" => {
                    response["patchType"] = json!("JSONPatch");
                    response["patch"] = json!(patch(json!([{ "op": "add", "path": "/metadata/labels/b", "value": "1" }])));
                }
                _ => {}
            }
            Ok(Bytes::from(json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response }).to_string()))
        }
    }

    fn hook(path: &str, mutating: bool, extra: Value) -> Hook {
        let mut config = json!({ "webhooks": [{ "name": format!("{}.example.com", path.trim_start_matches('/')), "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "clientConfig": { "url": format!("https://127.0.0.1:1{path}") },
            "rules": [{ "operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"] }] }] });
        for (k, v) in extra.as_object().into_iter().flatten() {
            config["webhooks"][0][k] = v.clone();
        }
        configuration::apply_defaults(&mut config, mutating);
        Hook::compile(&config["webhooks"][0], mutating).unwrap()
    }

    fn admission(hooks: Hooks, store: crate::api::objects::SharedStore) -> (Admission, Arc<Fake>) {
        let fake = Arc::new(Fake { called: Mutex::default() });
        let context = Context { store, user: Default::default(), warnings: Default::default(), field_manager: None };
        (Admission { hooks: Arc::new(hooks), transport: fake.clone(), context }, fake)
    }

    fn store() -> (tempfile::TempDir, crate::api::objects::SharedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::LocalStore::open(dir.path(), &Default::default()).unwrap());
        (dir, store)
    }

    #[tokio::test]
    async fn mutations_apply_in_order_and_reinvoke_when_needed() {
        let (_dir, store) = store();
        let hooks = Hooks {
            mutating: vec![hook("/a", true, json!({ "reinvocationPolicy": "IfNeeded" })), hook("/b", true, json!({}))],
            validating: vec![],
        };
        let (admission, fake) = admission(hooks, store);
        let cm = registry::lookup("", "v1", "configmaps").unwrap();
        let scope = Scope::new(cm, Some("default"), Default::default());
        let mut obj = json!({ "metadata": { "name": "x", "labels": {} } });
        let call = Call { operation: Operation::Create, name: "x", dry_run: false };
        assert!(admission.mutate(&scope, &call, Some(&mut obj), None).await.unwrap());
        assert_eq!(obj["metadata"]["labels"], json!({ "a": "1", "b": "1" }));
        assert_eq!(*fake.called.lock(), ["/a", "/b", "/a"], "`a` (IfNeeded) runs again after `b` changed the object");

        let err =
            admission.mutate(&scope, &Call { operation: Operation::Delete, name: "x", dry_run: false }, None, None).await.unwrap_err();
        assert_eq!(err.code, 500);
        assert!(
            err.message
                .ends_with("admission webhook \"a.example.com\" attempted to modify the object, which is not supported for this operation"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn validation_follows_failure_policies_and_dry_run() {
        let (_dir, store) = store();
        let cm = registry::lookup("", "v1", "configmaps").unwrap();
        let scope = Scope::new(cm, Some("default"), Default::default());
        let obj = json!({ "metadata": { "name": "x" } });
        let call = Call { operation: Operation::Create, name: "x", dry_run: false };
        let validating = |hooks| Hooks { mutating: vec![], validating: hooks };

        let (ignoring, _) = admission(
            validating(vec![hook("/down", false, json!({ "failurePolicy": "Ignore" })), hook("/ok", false, json!({}))]),
            store.clone(),
        );
        ignoring.validate(&scope, &call, Some(&obj), None).await.unwrap();

        let (failing, _) = admission(validating(vec![hook("/down", false, json!({}))]), store.clone());
        let err = failing.validate(&scope, &call, Some(&obj), None).await.unwrap_err();
        assert_eq!((err.code.as_u16(), err.reason), (500, "InternalError"));
        assert_eq!(
            err.message,
            "Internal error occurred: failed calling webhook \"down.example.com\": failed to call webhook: Post \"https://127.0.0.1:1/down?timeout=10s\": connection refused"
        );

        let (denying, _) = admission(validating(vec![hook("/ok", false, json!({})), hook("/deny", false, json!({}))]), store.clone());
        let err = denying.validate(&scope, &call, Some(&obj), None).await.unwrap_err();
        assert_eq!((err.code.as_u16(), err.message.as_str()), (403, "admission webhook \"deny.example.com\" denied the request: no"));

        let (effects, fake) = admission(validating(vec![hook("/ok", false, json!({ "sideEffects": "Some" }))]), store);
        let dry = Call { operation: Operation::Create, name: "x", dry_run: true };
        let err = effects.validate(&scope, &dry, Some(&obj), None).await.unwrap_err();
        assert_eq!((err.code.as_u16(), err.message.as_str()), (400, "admission webhook \"ok.example.com\" does not support dry run"));
        assert!(fake.called.lock().is_empty());
    }
}
