//! Integration tests: one binary, a module per area (DESIGN.md §7).

mod support;

mod adversarial;
mod api_basics;
mod api_deletion;
mod api_patch;
mod cli;
mod cluster_dns;
mod containerd_runtime;
mod custom_resources;
mod examples;
mod hollow_nodes;
mod installer;
mod kube_client;
mod kubelet;
mod kubelet_features;
mod kubelet_proxy;
mod kubelet_streams;
mod lifecycle;
mod local_storage;
mod manifests;
mod overlay;
mod pod_network;
mod python_client;
mod raft_cluster;
mod raft_crash;
mod scheduler;
mod scheduler_scale;
mod server_tls;
mod service_proxy;
mod servicelb;
mod services;
mod store_conformance;
mod tables;
mod workload_api;
mod workloads;
