//! One Deployment sync (`syncDeployment`): find or create the new ReplicaSet and keep the
//! revision bookkeeping, then either only scale (paused, or a resize) or roll out with the
//! strategy, clean up old sets, and write status. Works on an in-memory copy of the
//! Deployment and its ReplicaSets, refreshed by every write.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::json;

use super::revisions::{self, equal_ignore_hash, find_new, max_revision, replicas_of, revision_of, set_new_annotations, HASH_LABEL};
use super::rollout::{self, available, is_rolling, max_surge, spec_replicas};
use super::status::{self, progress_deadline};
use crate::controllers::common::{hash, is_conflict, owner, Error};

/// The state of one sync.
pub struct Rollout {
    d: Deployment,
    /// Owned ReplicaSets, oldest first.
    sets: Vec<ReplicaSet>,
    /// Pods of the namespace (for Recreate).
    pods: Vec<Arc<Pod>>,
    api: Api<Deployment>,
    rs_api: Api<ReplicaSet>,
    now: Timestamp,
}

/// Writes observedGeneration alone (a Deployment that selects everything is not synced).
pub async fn observe_generation_only(api: &Api<Deployment>, d: &Deployment) -> Result<(), Error> {
    let observed = d.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
    if observed < d.metadata.generation.unwrap_or(0) {
        let patch = json!({ "status": { "observedGeneration": d.metadata.generation } });
        api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
    }
    Ok(())
}

impl Rollout {
    pub fn new(d: Deployment, sets: Vec<ReplicaSet>, pods: Vec<Arc<Pod>>, api: Api<Deployment>, rs_api: Api<ReplicaSet>) -> Self {
        Self { d, sets, pods, api, rs_api, now: Timestamp::now() }
    }

    /// The sync itself.
    pub async fn run(&mut self) -> Result<(), Error> {
        if self.d.metadata.deletion_timestamp.is_some() {
            let new = self.sync_revision(false).await?;
            return self.sync_status(new).await;
        }
        let mut st = self.status();
        if status::paused_conditions(&self.d, &mut st, self.now) {
            self.write_status(st).await?;
        }
        if self.paused() {
            return self.sync().await;
        }
        let new = self.find_new();
        let all: Vec<&ReplicaSet> = self.sets.iter().collect();
        if new.is_some() && rollout::is_scaling_event(&self.d, &all) {
            return self.sync().await;
        }
        if is_rolling(&self.d) {
            self.rolling().await
        } else {
            self.recreate().await
        }
    }

    /// When to look again: at the progress deadline of an unfinished rollout.
    pub fn requeue(&self) -> Action {
        match status::deadline_left(&self.d, &self.status(), Timestamp::now()) {
            Some(left) => Action::requeue(Duration::from_secs(left.max(0) as u64 + 1)),
            None => Action::requeue(Duration::from_secs(600)),
        }
    }

    fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    fn paused(&self) -> bool {
        self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
    }

    fn find_new(&self) -> Option<usize> {
        let found = find_new(&self.d, &self.sets)?;
        self.sets.iter().position(|rs| rs.metadata.uid == found.metadata.uid)
    }

    fn refs(&self, indices: &[usize]) -> Vec<&ReplicaSet> {
        indices.iter().map(|i| &self.sets[*i]).collect()
    }

    fn olds(&self, new: Option<usize>) -> Vec<usize> {
        (0..self.sets.len()).filter(|i| Some(*i) != new).collect()
    }

    fn active_olds(&self, new: Option<usize>) -> Vec<usize> {
        self.olds(new).into_iter().filter(|i| spec_replicas(&self.sets[*i]) > 0).collect()
    }

    fn all_refs(&self) -> Vec<&ReplicaSet> {
        self.sets.iter().collect()
    }

    fn new_ref(&self, new: Option<usize>) -> Option<&ReplicaSet> {
        new.map(|i| &self.sets[i])
    }

    async fn write_status(&mut self, st: DeploymentStatus) -> Result<(), Error> {
        if self.d.status.as_ref() == Some(&st) {
            return Ok(());
        }
        let patch = json!({ "status": st });
        let written = self.api.patch_status(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        self.d.status = written.status;
        Ok(())
    }

    /// Records the new ReplicaSet's revision on the Deployment itself.
    async fn set_deployment_revision(&mut self, revision: String) -> Result<(), Error> {
        if self.d.metadata.annotations.as_ref().and_then(|a| a.get(revisions::REVISION)) == Some(&revision) {
            return Ok(());
        }
        let patch = json!({ "metadata": { "annotations": { revisions::REVISION: revision } } });
        let written = self.api.patch(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        self.d.metadata.annotations = written.metadata.annotations;
        Ok(())
    }

    /// `getNewReplicaSet`: the new set's index, bringing its revision up to date; creates it
    /// (scaled as far as the strategy allows) when `create` and there is none.
    async fn sync_revision(&mut self, create: bool) -> Result<Option<usize>, Error> {
        let new = self.find_new();
        let olds: Vec<ReplicaSet> = self.olds(new).into_iter().map(|i| self.sets[i].clone()).collect();
        let new_revision = max_revision(&olds) + 1;
        let surge = max_surge(&self.d)?;
        if let Some(i) = new {
            let mut rs = self.sets[i].clone();
            let annotated = set_new_annotations(&self.d, &mut rs, new_revision, true, surge);
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let spec = rs.spec.get_or_insert_with(Default::default);
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
            if annotated || min_ready_changed {
                spec.min_ready_seconds = min_ready;
                self.sets[i] = self.rs_api.replace(&rs.name_any(), &PostParams::default(), &rs).await?;
            }
            self.set_deployment_revision(revision_of(&self.sets[i]).to_string()).await?;
            let mut st = self.status();
            if progress_deadline(&self.d).is_some() && status::get(&st, status::PROGRESSING).is_none() {
                let msg = format!("Found new replica set \"{}\"", self.sets[i].name_any());
                status::set(&mut st, status::condition(status::PROGRESSING, "True", status::FOUND_NEW_RS, msg, self.now));
                self.write_status(st).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let mut rs = self.new_replica_set()?;
        let all: Vec<&ReplicaSet> = olds.iter().chain(std::iter::once(&rs)).collect();
        let replicas = rollout::new_rs_replicas(&self.d, &all, 0)?;
        rs.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
        set_new_annotations(&self.d, &mut rs, new_revision, false, surge);
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                tracing::info!(deployment = %self.d.name_any(), replicaset = %created.name_any(), replicas, "created new replica set");
                self.sets.push(created);
                true
            }
            Err(e) if is_conflict(&e) => {
                let existing = self.rs_api.get(&rs.name_any()).await?;
                let ours = owner::controller_of(&existing.metadata).is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .zip(self.d.spec.as_ref())
                    .is_some_and(|(t, s)| equal_ignore_hash(t, &s.template));
                if !(ours && same) {
                    let mut st = self.status();
                    st.collision_count = Some(st.collision_count.unwrap_or(0) + 1);
                    self.write_status(st).await?;
                    return Err(Error::Conflict(format!("replica set name {} collides; collisionCount raised", rs.name_any())));
                }
                self.sets.push(existing);
                false
            }
            Err(e) => {
                if progress_deadline(&self.d).is_some() {
                    let mut st = self.status();
                    let msg = format!("Failed to create new replica set \"{}\": {e}", rs.name_any());
                    status::set(&mut st, status::condition(status::PROGRESSING, "False", status::FAILED_RS_CREATE, msg, self.now));
                    self.write_status(st).await?;
                }
                return Err(e.into());
            }
        };
        self.set_deployment_revision(new_revision.to_string()).await?;
        if created && progress_deadline(&self.d).is_some() {
            let mut st = self.status();
            let msg = format!("Created new replica set \"{}\"", rs.name_any());
            status::set(&mut st, status::condition(status::PROGRESSING, "True", status::NEW_RS_CREATED, msg, self.now));
            self.write_status(st).await?;
        }
        Ok(Some(self.sets.len() - 1))
    }

    /// The ReplicaSet for the Deployment's current template, not yet created.
    fn new_replica_set(&self) -> Result<ReplicaSet, Error> {
        let spec = self.d.spec.as_ref().ok_or_else(|| Error::Invalid { what: "deployment", detail: "no spec".into() })?;
        let mut template = spec.template.clone();
        let hash = hash::compute_hash(&template, self.status().collision_count);
        let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.clone());
        template.metadata.get_or_insert_with(Default::default).labels = Some(labels.clone());
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.clone());
        Ok(ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", self.d.name_any())),
                namespace: self.d.namespace(),
                owner_references: Some(vec![owner::controller_ref(&self.d)]),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        })
    }

    /// `scaleReplicaSet`: sets replicas and the replicas annotations; whether the size changed.
    async fn scale(&mut self, i: usize, replicas: i32) -> Result<bool, Error> {
        let want = replicas_of(&self.d);
        let max = want + max_surge(&self.d)?;
        let rs = &self.sets[i];
        let resize = spec_replicas(rs) != replicas;
        if resize || revisions::replicas_annotations_need_update(rs, want, max) {
            let mut c = rs.clone();
            let from = spec_replicas(rs);
            c.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
            revisions::set_replicas_annotations(&mut c, want, max);
            self.sets[i] = self.rs_api.replace(&c.name_any(), &PostParams::default(), &c).await?;
            if resize {
                let direction = if replicas > from { "up" } else { "down" };
                tracing::info!(deployment = %self.d.name_any(), replicaset = %c.name_any(), from, to = replicas, "scaled {direction} replica set");
            }
        }
        Ok(resize)
    }

    async fn apply_plan(&mut self, plan: Vec<(String, i32)>) -> Result<i32, Error> {
        let mut moved = 0;
        for (name, replicas) in plan {
            if let Some(i) = self.sets.iter().position(|rs| rs.metadata.name.as_deref() == Some(name.as_str())) {
                let before = spec_replicas(&self.sets[i]);
                self.scale(i, replicas).await?;
                moved += (before - replicas).abs();
            }
        }
        Ok(moved)
    }

    /// `rolloutRolling`.
    async fn rolling(&mut self) -> Result<(), Error> {
        let new = self.sync_revision(true).await?.ok_or_else(|| Error::Conflict("no new replica set".into()))?;
        let want = replicas_of(&self.d);
        let current = spec_replicas(&self.sets[new]);
        let scaled_up = if current == want {
            false
        } else if current > want {
            self.scale(new, want).await?
        } else {
            let target = rollout::new_rs_replicas(&self.d, &self.all_refs(), current)?;
            self.scale(new, target).await?
        };
        if scaled_up {
            return self.sync_rollout_status(Some(new)).await;
        }
        let olds = self.active_olds(Some(new));
        if !olds.is_empty() {
            let budget = rollout::max_scaled_down(&self.d, &self.all_refs(), &self.sets[new])?;
            if budget > 0 {
                let cleaned = self.apply_plan(rollout::cleanup_unhealthy(&self.refs(&olds), budget)).await?;
                let available_total: i32 = self.sets.iter().map(available).sum();
                let plan = rollout::scale_down_old(&self.d, &self.refs(&olds), available_total)?;
                let scaled = self.apply_plan(plan).await?;
                if cleaned + scaled > 0 {
                    return self.sync_rollout_status(Some(new)).await;
                }
            }
        }
        if status::complete(&self.d, &self.status()) {
            self.cleanup(Some(new)).await?;
        }
        self.sync_rollout_status(Some(new)).await
    }

    /// `rolloutRecreate`: every old pod gone before the new set grows.
    async fn recreate(&mut self) -> Result<(), Error> {
        let new = self.sync_revision(false).await?;
        let mut scaled = false;
        for i in self.active_olds(new) {
            scaled |= self.scale(i, 0).await?;
        }
        if scaled || self.old_pods_running(new) {
            return self.sync_rollout_status(new).await;
        }
        let new = match new {
            Some(n) => n,
            None => self.sync_revision(true).await?.ok_or_else(|| Error::Conflict("no new replica set".into()))?,
        };
        self.scale(new, replicas_of(&self.d)).await?;
        if status::complete(&self.d, &self.status()) {
            self.cleanup(Some(new)).await?;
        }
        self.sync_rollout_status(Some(new)).await
    }

    fn old_pods_running(&self, new: Option<usize>) -> bool {
        let olds = self.olds(new);
        if olds.iter().any(|i| self.sets[*i].status.as_ref().is_some_and(|s| s.replicas > 0)) {
            return true;
        }
        let old_uids: Vec<&str> = olds.iter().filter_map(|i| self.sets[*i].metadata.uid.as_deref()).collect();
        self.pods.iter().any(|p| {
            let finished = matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
            !finished && owner::controller_of(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid.as_str()))
        })
    }

    /// `sync`: scaling only (paused Deployments and resizes), then status.
    async fn sync(&mut self) -> Result<(), Error> {
        let new = self.sync_revision(false).await?;
        self.scale_all(new).await?;
        if self.paused() {
            self.cleanup(new).await?;
        }
        self.sync_status(new).await
    }

    /// `scale`: one active set takes the whole size; a saturated new set empties the old ones;
    /// otherwise every active set grows or shrinks in proportion.
    async fn scale_all(&mut self, new: Option<usize>) -> Result<(), Error> {
        let want = replicas_of(&self.d);
        let active: Vec<usize> = (0..self.sets.len()).filter(|i| spec_replicas(&self.sets[*i]) > 0).collect();
        let single = match active.len() {
            0 => new.or_else(|| self.olds(new).last().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = single {
            if spec_replicas(&self.sets[i]) != want {
                self.scale(i, want).await?;
            }
            return Ok(());
        }
        if rollout::is_saturated(&self.d, self.new_ref(new)) {
            for i in self.active_olds(new) {
                self.scale(i, 0).await?;
            }
            return Ok(());
        }
        if is_rolling(&self.d) {
            let sizes = rollout::proportional(&self.d, &self.refs(&active))?;
            self.apply_plan(sizes.into_iter().collect()).await?;
        }
        Ok(())
    }

    /// `cleanupDeployment`: deletes the oldest empty old sets beyond revisionHistoryLimit.
    async fn cleanup(&mut self, new: Option<usize>) -> Result<(), Error> {
        let limit = self.d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
        if limit == i32::MAX {
            return Ok(());
        }
        let mut cleanable: Vec<&ReplicaSet> =
            self.olds(new).into_iter().map(|i| &self.sets[i]).filter(|rs| rs.metadata.deletion_timestamp.is_none()).collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by_key(|rs| revision_of(rs));
        let doomed: Vec<String> = cleanable
            .into_iter()
            .take(excess as usize)
            .filter(|rs| {
                let st = rs.status.clone().unwrap_or_default();
                st.replicas == 0 && spec_replicas(rs) == 0 && rs.metadata.generation.unwrap_or(0) <= st.observed_generation.unwrap_or(0)
            })
            .map(|rs| rs.name_any())
            .collect();
        for name in doomed {
            tracing::info!(deployment = %self.d.name_any(), replicaset = %name, "deleting old replica set beyond the revision history limit");
            match self.rs_api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => self.sets.retain(|rs| rs.metadata.name.as_deref() != Some(name.as_str())),
                Err(e) if crate::controllers::common::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `syncDeploymentStatus`: counts and Available, no Progressing changes.
    async fn sync_status(&mut self, new: Option<usize>) -> Result<(), Error> {
        let st = status::calculate(&self.d, &self.all_refs(), self.new_ref(new), self.now)?;
        self.write_status(st).await
    }

    /// `syncRolloutStatus`: counts, Available, Progressing and ReplicaFailure.
    async fn sync_rollout_status(&mut self, new: Option<usize>) -> Result<(), Error> {
        let mut st = status::calculate(&self.d, &self.all_refs(), self.new_ref(new), self.now)?;
        status::rollout_conditions(&self.d, &mut st, self.new_ref(new), self.now);
        let failure = self
            .sets
            .iter()
            .filter_map(|rs| rs.status.as_ref()?.conditions.as_ref())
            .flatten()
            .find(|c| c.type_ == "ReplicaFailure" && c.status == "True");
        match failure {
            Some(c) => status::set(
                &mut st,
                status::condition(
                    "ReplicaFailure",
                    "True",
                    c.reason.as_deref().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                    self.now,
                ),
            ),
            None => status::remove(&mut st, "ReplicaFailure"),
        }
        self.write_status(st).await
    }
}
