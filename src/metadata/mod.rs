//! Who is this instance? A small trait so identity sources other than Exoscale's metadata
//! server can be added beside it.

mod exoscale;

pub use exoscale::ExoscaleMetadata;

use crate::error::Result;
use crate::retry::Deadline;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub instance_id: String,
    pub zone: String,
}

pub trait IdentitySource {
    /// For log lines: where the identity comes from.
    fn describe(&self) -> String;
    fn fetch(&self, deadline: &Deadline) -> Result<Identity>;
}
