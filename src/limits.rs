//! Admission limits per node: the token bucket lives in `ecp_actors::bucket`.

pub use ecp_actors::bucket::Bucket;
