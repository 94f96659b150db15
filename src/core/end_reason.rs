//! callEndReason {code, subCode}: the one table. docs/protocol.md repeats it for client authors.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEndReason {
    pub code: u16,
    pub sub_code: u32,
}

macro_rules! reasons {
    ($($name:ident = ($code:expr, $sub:expr), $text:expr;)*) => {
        impl CallEndReason {
            $(pub const $name: CallEndReason = CallEndReason { code: $code, sub_code: $sub };)*
            /// Every documented reason, for docs and tests.
            pub const ALL: &'static [(CallEndReason, &'static str)] = &[$((CallEndReason::$name, $text)),*];
        }
    };
}

reasons! {
    NORMAL = (0, 0), "a party hung up";
    ANSWERED_ELSEWHERE = (0, 10003), "answered on another device of this user";
    DECLINED_ELSEWHERE = (0, 10004), "declined on another device of this user";
    FORBIDDEN = (403, 0), "the callee rejected the call with reason forbidden";
    UNKNOWN_USER = (404, 0), "no such user or number";
    NO_ANSWER = (408, 0), "nobody answered before the ring timeout";
    PEER_LOST = (410, 0), "the other party's connection was lost";
    INVALID_CALLEE = (400, 0), "the call could not be placed: bad callee list (empty, yourself)";
    OFFLINE = (480, 0), "the callee has no device signed in";
    BUSY = (486, 0), "the callee rejected the call as busy";
    CANCELLED = (487, 0), "the caller hung up before the call was answered";
    SERVER_ERROR = (500, 0), "the switchboard failed";
    CONNECTION_LOST = (503, 0), "this device lost its connection to the switchboard";
    DECLINED = (603, 0), "the callee declined the call";
}

impl CallEndReason {
    pub fn describe(self) -> &'static str {
        CallEndReason::ALL
            .iter()
            .find(|(r, _)| *r == self)
            .map(|(_, t)| *t)
            .unwrap_or("undocumented reason")
    }
}

impl std::fmt::Display for CallEndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({})", self.code, self.sub_code, self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates() {
        for (i, (a, _)) in CallEndReason::ALL.iter().enumerate() {
            for (b, _) in &CallEndReason::ALL[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(CallEndReason::DECLINED.describe(), "the callee declined the call");
    }
}
