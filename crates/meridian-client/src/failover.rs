//! When a failed attempt may be sent to the next server.
//!
//! Failing over must never apply a write twice. So the rule asks two things: could this server
//! have acted on the request, and may the request be repeated?
//!
//! - **Nothing was done**, any request moves on: the connection could not be made (nothing
//!   was sent), or the server answered 503 `no_leader` (it found no leader to hand the request
//!   to) or `shutting_down`.
//! - **The outcome is unknown or the server is unwell**, only a repeatable request moves on:
//!   the exchange broke off or timed out after sending, any other 5xx (`commit_timeout`,
//!   `not_leader` and `leader_unreachable` mean a write may still commit), or an answer that
//!   cannot be read. Reads are repeatable; so are the few writes that set a value rather than
//!   add one (registrations, heartbeats, reports), and every write of a client that opted in
//!   with [`Client::repeating_writes`](crate::Client::repeating_writes).
//! - **Anything else is the answer** (4xx above all): another server would say the same.

use meridian_api::ErrorCode;

use crate::error::ClientError;

/// Whether the call may try the next server after `e`.
pub(crate) fn try_next(e: &ClientError, repeatable: bool) -> bool {
    match e {
        ClientError::Transport { error, .. } => error.is_connect() || repeatable,
        ClientError::NoAnswer { .. } => repeatable,
        ClientError::Api {
            status: 503,
            code: ErrorCode::NoLeader | ErrorCode::ShuttingDown,
            ..
        } => true,
        ClientError::Api { status, .. } => *status >= 500 && repeatable,
        // A garbled success or a proxy's error page.
        ClientError::Decode { status, .. } => (*status < 400 || *status >= 500) && repeatable,
        ClientError::Encode { .. } | ClientError::Servers { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: ErrorCode) -> ClientError {
        ClientError::Api {
            status,
            code,
            message: "m".into(),
            hint: None,
        }
    }

    #[test]
    fn writes_move_on_only_when_nothing_was_done() {
        assert!(try_next(&api(503, ErrorCode::NoLeader), false));
        assert!(try_next(&api(503, ErrorCode::ShuttingDown), false));
        for unknown in [
            ErrorCode::CommitTimeout,
            ErrorCode::NotLeader,
            ErrorCode::LeaderUnreachable,
            ErrorCode::RaftUnavailable,
        ] {
            assert!(!try_next(&api(503, unknown.clone()), false), "{unknown}");
            assert!(try_next(&api(503, unknown.clone()), true), "{unknown}");
        }
        assert!(!try_next(&api(500, ErrorCode::Other("x".into())), false));
    }

    #[test]
    fn refusals_are_the_answer() {
        for (status, code) in [
            (404, ErrorCode::NotFound),
            (409, ErrorCode::AlreadyExists),
            (422, ErrorCode::Invalid),
            (401, ErrorCode::Unauthorized),
        ] {
            assert!(!try_next(&api(status, code.clone()), true), "{code}");
        }
    }

    #[test]
    fn garbled_answers_move_on_when_repeatable() {
        let garbled = |status| ClientError::Decode {
            url: "u".into(),
            status,
            detail: "d".into(),
        };
        assert!(try_next(&garbled(200), true));
        assert!(try_next(&garbled(502), true));
        assert!(!try_next(&garbled(200), false));
        assert!(!try_next(&garbled(413), true));
    }
}
