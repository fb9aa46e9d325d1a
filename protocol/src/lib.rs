//! The wire protocol between the `ecp` server and `emqxee-agent`.
//!
//! Every WebSocket binary message carries exactly one [`Frame`], encoded by
//! [`codec`]. The size limit ([`MAX_FRAME_BYTES`]) is checked before any
//! decoding happens.
//!
//! Compatibility rule: new `Frame` variants are added only at the end of the
//! enum, new fields only at the end of a variant's payload (the decoder ignores
//! trailing bytes, so an older peer still reads a newer frame). Any other change
//! bumps [`PROTOCOL_VERSION`]; the server keeps accepting
//! [`MIN_PROTOCOL_VERSION`] and newer.
//!
//! Beside the frames, this crate holds the other contracts the server and
//! the agent share: the registration body and answer ([`register`], JSON
//! over HTTP; with the `openapi` feature they derive `utoipa::ToSchema` for
//! the server's OpenAPI document), and why a session was closed
//! ([`close::CloseCode`], the WebSocket close code, 4000–4999).
//!
//! Old agents: an agent of protocol 1 read the close frame's text, and
//! dropped its credential when it said "deleted" or "unregistered". The
//! server closes with a [`CloseCode`] now and keeps those words in the texts
//! of exactly the codes that mean the agent was removed (`ClusterDeleted`,
//! `Revoked`, `Unregistered`), so an old agent behaves as before; no other
//! close text carries them. Close codes are new numbers for new reasons:
//! nothing changed incompatibly, and the protocol number stays. An agent of
//! this build decides by the code only, and treats a code it does not know
//! as "reconnect with backoff" ([`close::after_close`]).

pub mod close;
pub mod codec;
pub mod examples;
mod frame;
pub mod limits;
pub mod metrics;
pub mod path;
pub mod register;
pub mod version;

pub use close::{AfterClose, CloseCode};
pub use codec::{decode, encode, CodecError, MAX_FRAME_BYTES};
pub use frame::*;
pub use version::check_emqx_version;

/// The protocol version this build speaks (2: credential rotation; 3:
/// metrics and alarms).
pub const PROTOCOL_VERSION: u16 = 3;
/// The oldest protocol version a server of this build still accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// Whether a server of this build accepts an agent speaking `version`.
pub fn server_accepts(version: u16) -> bool {
    (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version)
}

/// The first protocol version whose agents take [`Frame::Credential`].
pub const CREDENTIAL_ROTATION_SINCE: u16 = 2;

/// The first protocol version whose agents send [`Frame::Metrics`] and
/// [`Frame::Alarms`].
pub const METRICS_SINCE: u16 = 3;
