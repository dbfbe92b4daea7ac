//! Adversarial tests: tokens (see mod.rs).
