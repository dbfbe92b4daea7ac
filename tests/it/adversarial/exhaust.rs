//! Adversarial tests: exhaust (see mod.rs).
