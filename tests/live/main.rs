//! Live tests against the real clouds, one module per provider, in a binary of their own:
//! run by hand with the provider's credentials (`cargo test --test live hetzner --
//! --nocapture`); without them each test prints `SKIPPED` and passes.

mod hetzner;
mod ovh;
mod scaleway;
