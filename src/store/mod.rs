//! Store back ends. The interface is `ecp_actors::store::Store`.

pub mod embedded;
pub mod redis;
pub mod redis_coord;

pub use ecp_actors::store::*;
