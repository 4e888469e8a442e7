//! Threat feeds: named lists operators subscribe to, fetched on a schedule
//! and applied to the datapath as one unit each.

pub mod format;
pub mod ranges;

pub use ranges::Ranges;
