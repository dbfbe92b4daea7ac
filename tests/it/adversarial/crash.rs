//! Adversarial tests: crash (see mod.rs).
