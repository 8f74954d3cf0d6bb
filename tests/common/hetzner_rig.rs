//! The Hetzner rig: [`Rig::hetzner`], the Hetzner fake with short actions, the token from
//! `HCLOUD_TOKEN`. Include with `#[path = "common/hetzner_rig.rs"] mod hetzner_rig;` next
//! to `cloud_rig`, `sshd` and `#[path = "fakes/hetzner.rs"] mod hetzner_fake;`.

#![allow(dead_code)]

use std::time::Duration;

use super::cloud_rig::Rig;

impl Rig<super::hetzner_fake::HetznerFake> {
    /// The Hetzner fake with short actions; the token comes from `HCLOUD_TOKEN`.
    pub fn hetzner() -> Option<Self> {
        Rig::start("hetzner", || {
            let fake = super::hetzner_fake::HetznerFake::start();
            fake.set_action_duration(Duration::from_millis(30));
            fake.set_server_ipv4("127.0.0.1");
            let vars = fake.legion_vars();
            (fake, vars)
        })
    }
}
