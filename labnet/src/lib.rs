//! Network namespaces, veth links and the built-in lab: a gateway between
//! three segments modelled on a municipal network. `cargo xtask lab` and the
//! end-to-end tests both build it, so the tests exercise what users see.
//!
//! Nothing here connects to the root namespace: every link is made inside
//! the namespaces the lab owns, and no route leads out of them.

pub mod cmd;
pub mod domain;
pub mod fleet;
pub mod lab;
pub mod netns;

pub use lab::{Lab, LabHost, LabOptions};
pub use netns::Netns;
