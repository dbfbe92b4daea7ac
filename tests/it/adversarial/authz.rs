//! Adversarial tests: authz (see mod.rs).
