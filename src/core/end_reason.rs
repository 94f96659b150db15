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
    TRANSFERRED = (0, 7000), "the call was transferred: the transferee went on in a new call";
    FORWARDED = (0, 7300), "the call was forwarded elsewhere before this device answered";
    MOVED = (0, 7200), "the call moved to another device of this user (take over)";
    VOICEMAIL_FULL = (0, 7400), "the voicemail message reached its maximum length";
    DECLINED_ELSEWHERE = (0, 10004), "declined on another device of this user";
    REMOVED = (0, 5300), "another participant removed you from the call";
    ENDED_FOR_EVERYONE = (0, 7500), "a participant ended the group call for everyone";
    CALLER_ID_REQUIRED = (400, 7601), "calling a number needs an alternateCallerId (one of your own numbers)";
    CALLER_ID_NOT_OWNED = (403, 7602), "the alternateCallerId is not one of your numbers";
    NUMBER_UNOWNED = (404, 7600), "no user owns that number (numbers outside the switchboard need a SIP trunk, not configured)";
    FORBIDDEN = (403, 0), "the callee rejected the call with reason forbidden";
    UNKNOWN_USER = (404, 0), "no such user or number";
    NO_ANSWER = (408, 0), "nobody answered before the ring timeout";
    PEER_LOST = (410, 0), "the other party's connection was lost";
    INVALID_CALLEE = (400, 0), "the call could not be placed: bad callee list (empty, invalid, duplicates, yourself)";
    OFFLINE = (480, 0), "the callee has no device signed in";
    BUSY = (486, 0), "the callee rejected the call as busy";
    CANCELLED = (487, 0), "the caller hung up before the call was answered";
    SERVER_ERROR = (500, 0), "the switchboard failed";
    CONNECTION_LOST = (503, 0), "this device lost its connection to the switchboard";
    DECLINED = (603, 0), "the callee declined the call";
    TRANSFER_TARGET_FORBIDDEN = (403, 7100), "transfer failed: the target rejected the call with reason forbidden";
    TRANSFER_TARGET_UNKNOWN = (404, 7100), "transfer failed: the target does not exist";
    TRANSFER_NO_ANSWER = (408, 7100), "transfer failed: the target did not answer";
    TRANSFER_TARGET_LOST = (410, 7100), "transfer failed: the target's connection was lost";
    TRANSFER_TARGET_OFFLINE = (480, 7100), "transfer failed: the target has no device signed in";
    TRANSFER_TARGET_BUSY = (486, 7100), "transfer failed: the target is busy";
    TRANSFER_TARGET_DECLINED = (603, 7100), "transfer failed: the target declined";
    TRANSFER_REJECTED = (603, 7101), "transfer failed: the transferee rejected it";
    TRANSFEROR_LEFT = (487, 7102), "transfer failed: the transferor hung up first";
    TRANSFEREE_LEFT = (487, 7103), "transfer failed: the transferee hung up first";
    TRANSFER_CALL_GONE = (481, 7104), "transfer failed: the target call ended first";
    TRANSFER_REFUSED = (400, 7105), "transfer refused: the call, the target or the state does not allow it (see the error event)";
}

impl CallEndReason {
    /// The transfer error for a target leg that ended with `reason`.
    pub fn as_transfer_failure(self) -> CallEndReason {
        match self.code {
            403 => CallEndReason::TRANSFER_TARGET_FORBIDDEN,
            404 => CallEndReason::TRANSFER_TARGET_UNKNOWN,
            410 => CallEndReason::TRANSFER_TARGET_LOST,
            480 => CallEndReason::TRANSFER_TARGET_OFFLINE,
            486 => CallEndReason::TRANSFER_TARGET_BUSY,
            603 => CallEndReason::TRANSFER_TARGET_DECLINED,
            _ => CallEndReason::TRANSFER_NO_ANSWER,
        }
    }
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
        assert_eq!(
            CallEndReason::DECLINED.describe(),
            "the callee declined the call"
        );
    }
}
