//! Adversarial tests: volumes (see mod.rs).
