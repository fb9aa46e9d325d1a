//! Why the server closed an agent's session: a code in the WebSocket close
//! frame, from the private range 4000–4999. The close frame's text is only a
//! human explanation; an agent decides by the code alone.
//!
//! | variant | code | meaning | the agent |
//! |---|---|---|---|
//! | `Revoked` | 4000 | the agent's credential was revoked or the agent removed (console Revoke, `unregister` by another copy) | drops its credential, idles |
//! | `ClusterDeleted` | 4001 | the agent's cluster was deleted | drops its credential, idles |
//! | `Unregistered` | 4002 | the agent acknowledged `Unregister` | drops its credential, idles |
//! | `Superseded` | 4010 | a newer session of the same agent replaced this one | reconnects with backoff |
//! | `Reregistered` | 4011 | a new registration of this agent instance replaced the credential | reconnects with backoff (with the credential on disk) |
//! | `BadFrame` | 4020 | a frame that does not decode or is not allowed here, a text message, a WebSocket protocol error, a Hello naming another agent | reconnects with backoff |
//! | `OverBound` | 4021 | a frame over a bound (1 MiB, the protocol's limits) or over a budget (frames or reports a second, log batches waiting, a tunnel window) | reconnects with backoff |
//! | `TooSlow` | 4022 | the agent reads too slowly: its outbound queue is full | reconnects with backoff |
//! | `Timeout` | 4023 | no Hello in time, or no traffic for the idle timeout | reconnects with backoff |
//! | `UnsupportedProtocol` | 4024 | the Hello's protocol is not one the server accepts | reconnects with backoff |
//! | `Draining` | 4030 | the node is going away: connect to another one | reconnects at once (staggered) |
//! | `Shutdown` | 4031 | the node stops without draining (reserved: not sent yet) | reconnects with backoff |
//! | `TryAgain` | 4032 | a passing problem on the server: store unavailable, cluster actor restarting, credential rotation failed | reconnects with backoff |
//!
//! The numbers are fixed forever: a new reason gets a new number, never an
//! old one. A code the agent does not know (from a newer server, or outside
//! this range) never drops the credential: the agent reconnects with backoff
//! ([`after_close`]), and a credential that really is gone is then refused
//! at connect (401/410), which is what drops it.
//!
//! Agents of protocol 1 decided by the close text ("deleted",
//! "unregistered" dropped the credential); the texts for `ClusterDeleted`,
//! `Revoked` and `Unregistered` keep those words, and no other text carries
//! them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why the server closed an agent's session (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    Revoked,
    ClusterDeleted,
    Unregistered,
    Superseded,
    Reregistered,
    BadFrame,
    OverBound,
    TooSlow,
    Timeout,
    UnsupportedProtocol,
    Draining,
    Shutdown,
    TryAgain,
}

/// What an agent does after the server closed its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterClose {
    /// The agent was removed: drop the credential and idle until registered again.
    DropCredential,
    /// Connect again at once (a short random stagger), to another node.
    ReconnectNow,
    /// Connect again after the usual backoff.
    Reconnect,
}

impl CloseCode {
    /// Every code, in table order.
    pub const ALL: [CloseCode; 13] = [
        CloseCode::Revoked,
        CloseCode::ClusterDeleted,
        CloseCode::Unregistered,
        CloseCode::Superseded,
        CloseCode::Reregistered,
        CloseCode::BadFrame,
        CloseCode::OverBound,
        CloseCode::TooSlow,
        CloseCode::Timeout,
        CloseCode::UnsupportedProtocol,
        CloseCode::Draining,
        CloseCode::Shutdown,
        CloseCode::TryAgain,
    ];

    /// The number sent in the WebSocket close frame.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Revoked => 4000,
            CloseCode::ClusterDeleted => 4001,
            CloseCode::Unregistered => 4002,
            CloseCode::Superseded => 4010,
            CloseCode::Reregistered => 4011,
            CloseCode::BadFrame => 4020,
            CloseCode::OverBound => 4021,
            CloseCode::TooSlow => 4022,
            CloseCode::Timeout => 4023,
            CloseCode::UnsupportedProtocol => 4024,
            CloseCode::Draining => 4030,
            CloseCode::Shutdown => 4031,
            CloseCode::TryAgain => 4032,
        }
    }

    /// The code a close frame's number stands for; `None` for a number this
    /// build does not know.
    pub fn from_u16(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// What the agent does after a close with this code.
    pub fn after_close(self) -> AfterClose {
        match self {
            CloseCode::Revoked | CloseCode::ClusterDeleted | CloseCode::Unregistered => {
                AfterClose::DropCredential
            }
            CloseCode::Draining => AfterClose::ReconnectNow,
            CloseCode::Superseded
            | CloseCode::Reregistered
            | CloseCode::BadFrame
            | CloseCode::OverBound
            | CloseCode::TooSlow
            | CloseCode::Timeout
            | CloseCode::UnsupportedProtocol
            | CloseCode::Shutdown
            | CloseCode::TryAgain => AfterClose::Reconnect,
        }
    }
}

/// What the agent does after a close frame with this number (or none):
/// only a known code can drop the credential; anything else reconnects
/// with backoff.
pub fn after_close(code: Option<u16>) -> AfterClose {
    code.and_then(CloseCode::from_u16)
        .map_or(AfterClose::Reconnect, CloseCode::after_close)
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?} ({})", self.code())
    }
}

/// Serialized as its number (messages between nodes).
impl Serialize for CloseCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.code())
    }
}

/// A number this build does not know is an error; a caller that must take
/// any number reads a `u16` and uses [`CloseCode::from_u16`].
impl<'de> Deserialize<'de> for CloseCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u16::deserialize(d)?;
        CloseCode::from_u16(n)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown close code {n}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_private_unique_and_round_trips() {
        let mut seen = std::collections::BTreeSet::new();
        for c in CloseCode::ALL {
            let n = c.code();
            assert!((4000..=4999).contains(&n), "{c:?} = {n}");
            assert!(seen.insert(n), "{n} used twice");
            assert_eq!(CloseCode::from_u16(n), Some(c));
        }
    }

    #[test]
    fn the_numbers_are_fixed() {
        // Changing one of these breaks every deployed agent: add, never edit.
        let table: Vec<(CloseCode, u16)> = CloseCode::ALL.iter().map(|c| (*c, c.code())).collect();
        assert_eq!(
            table,
            vec![
                (CloseCode::Revoked, 4000),
                (CloseCode::ClusterDeleted, 4001),
                (CloseCode::Unregistered, 4002),
                (CloseCode::Superseded, 4010),
                (CloseCode::Reregistered, 4011),
                (CloseCode::BadFrame, 4020),
                (CloseCode::OverBound, 4021),
                (CloseCode::TooSlow, 4022),
                (CloseCode::Timeout, 4023),
                (CloseCode::UnsupportedProtocol, 4024),
                (CloseCode::Draining, 4030),
                (CloseCode::Shutdown, 4031),
                (CloseCode::TryAgain, 4032),
            ]
        );
    }

    #[test]
    fn unknown_numbers_are_none() {
        for n in [0, 1000, 1008, 1009, 3999, 4003, 4999, 5000, u16::MAX] {
            assert_eq!(CloseCode::from_u16(n), None, "{n}");
        }
    }

    #[test]
    fn only_removal_drops_the_credential() {
        for c in CloseCode::ALL {
            let drops = matches!(
                c,
                CloseCode::Revoked | CloseCode::ClusterDeleted | CloseCode::Unregistered
            );
            assert_eq!(
                c.after_close() == AfterClose::DropCredential,
                drops,
                "{c:?}"
            );
            assert_eq!(after_close(Some(c.code())), c.after_close());
        }
        assert_eq!(CloseCode::Draining.after_close(), AfterClose::ReconnectNow);
    }

    #[test]
    fn a_code_from_a_newer_server_or_none_reconnects_with_backoff() {
        // 4999 is not in this build's table: a newer encoder's reason.
        assert_eq!(after_close(Some(4999)), AfterClose::Reconnect);
        assert_eq!(after_close(Some(4003)), AfterClose::Reconnect);
        // Standard codes (an older server closed with 1008 "cluster was deleted").
        assert_eq!(after_close(Some(1008)), AfterClose::Reconnect);
        assert_eq!(after_close(None), AfterClose::Reconnect);
    }

    #[test]
    fn serde_uses_the_number_and_refuses_unknown_ones() {
        use serde::de::value::{Error, U16Deserializer};
        use serde::de::IntoDeserializer;
        let d: U16Deserializer<Error> = 4001u16.into_deserializer();
        assert_eq!(CloseCode::deserialize(d), Ok(CloseCode::ClusterDeleted));
        let d: U16Deserializer<Error> = 4999u16.into_deserializer();
        assert!(CloseCode::deserialize(d).is_err());
    }
}
