//! The encrypted state store: save and load of a 10,000-node state, and unlock (key
//! derivation with the default parameters).
//!
//! `cargo bench --bench state`

mod common;

use divan::Bencher;
use legion::engine::state::crypto::{KdfParams, StateKey};
use legion::engine::state::model::State;
use legion::engine::state::store::StateFile;

fn main() {
    divan::main();
}

const FAST: KdfParams = KdfParams {
    m_cost_kib: 1024,
    t_cost: 1,
    p_cost: 1,
};

struct Fixture {
    _dir: tempfile::TempDir,
    file: StateFile,
    key: StateKey,
    bytes: Vec<u8>,
}

fn fixture(params: KdfParams) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = StateFile::in_home(dir.path());
    let bytes = serde_json::to_vec(&common::state_with_nodes(10_000)).expect("serialize");
    let key = file
        .create(b"bench password", params, &bytes)
        .expect("create");
    Fixture {
        _dir: dir,
        file,
        key,
        bytes,
    }
}

/// Serialize, encrypt, write, fsync, rename, fsync the directory.
#[divan::bench(sample_count = 20)]
fn save_10k_nodes(b: Bencher) {
    let f = fixture(FAST);
    let state = common::state_with_nodes(10_000);
    eprintln!("10,000-node state: {} bytes of JSON", f.bytes.len());
    b.bench_local(|| {
        let bytes = serde_json::to_vec(&state).expect("serialize");
        f.file.save(&f.key, &bytes).expect("save")
    });
}

/// Read, verify, decrypt and parse (with minimal key derivation, to show the rest).
#[divan::bench(sample_count = 20)]
fn load_10k_nodes(b: Bencher) {
    let f = fixture(FAST);
    b.bench_local(|| {
        let (_key, plaintext) = f.file.open(b"bench password").expect("open");
        let state: State = serde_json::from_slice(&plaintext).expect("parse");
        state.plan.nodes.len()
    });
}

/// Key derivation alone with the shipped defaults (RFC 9106's second recommendation).
#[divan::bench(sample_count = 10)]
fn unlock_kdf_default(b: Bencher) {
    b.bench_local(|| StateKey::derive_new(b"bench password", KdfParams::DEFAULT).expect("derive"));
}
