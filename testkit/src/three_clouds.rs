//! The three integrated clouds' fakes side by side (Hetzner, Scaleway, OVHcloud), each
//! handing out 127.0.0.1 with short transitions, and the variables that point Legion at
//! them with their default credential variables, for [`crate::rig::Rig::start_clouds`].

use std::time::Duration;

use crate::hetzner::HetznerFake;
use crate::ovh::OvhFake;
use crate::scaleway::ScalewayFake;

/// The provider kinds, in the order the rig configures them.
pub const KINDS: [&str; 3] = ["hetzner", "scaleway", "ovh"];

pub struct Clouds {
    pub hetzner: HetznerFake,
    pub scaleway: ScalewayFake,
    pub ovh: OvhFake,
}

impl Clouds {
    /// Start the three fakes; `transition` is how long their servers take to change state.
    pub fn start(transition: Duration) -> (Clouds, Vec<(&'static str, String)>) {
        let hetzner = HetznerFake::start();
        hetzner.set_action_duration(transition);
        hetzner.set_server_ipv4("127.0.0.1");
        let scaleway = ScalewayFake::start();
        scaleway.set_action_duration(transition);
        scaleway.set_server_ipv4("127.0.0.1");
        let ovh = OvhFake::start();
        ovh.set_task_duration(transition);
        ovh.set_server_ipv4("127.0.0.1");
        let mut vars = hetzner.legion_vars();
        vars.extend(scaleway.legion_vars());
        vars.extend(ovh.legion_vars());
        (
            Clouds {
                hetzner,
                scaleway,
                ovh,
            },
            vars,
        )
    }
}
