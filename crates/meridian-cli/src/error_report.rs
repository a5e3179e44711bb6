//! Turning a failed command into the one line (plus optional hints) printed after `error: `.

use std::fmt;

use meridian_client::ClientError;

/// Advice attached as the outermost context of an error; printed on its own line after it.
#[derive(Debug)]
pub struct Hint(pub String);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Renders an error chain as `context: context: cause`: each error says each thing once (in
/// its own message or as its `source`, never both), so joining the chain repeats nothing.
/// API errors read `<message> (<code>, HTTP <status>)`; an unreachable server reads
/// `cannot reach <url>: <root cause>`. The server's advice, then this command's, follow on
/// lines of their own.
pub fn render(err: &anyhow::Error) -> String {
    let hint = err.downcast_ref::<Hint>();
    let skip = usize::from(hint.is_some());
    let parts: Vec<String> = err.chain().skip(skip).map(|e| e.to_string()).collect();
    let mut text = parts.join(": ");
    let from_server = err
        .chain()
        .find_map(|e| e.downcast_ref::<ClientError>())
        .and_then(ClientError::hint);
    for hint in from_server
        .into_iter()
        .chain(hint.map(|Hint(h)| h.as_str()))
    {
        text.push_str("\nhint: ");
        text.push_str(hint);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use meridian_api::ErrorCode;

    fn api(status: u16) -> anyhow::Error {
        ClientError::Api {
            status,
            code: ErrorCode::NotFound,
            message: "no app named web".into(),
            hint: None,
        }
        .into()
    }

    #[test]
    fn api_errors_read_message_code_status() {
        assert_eq!(render(&api(404)), "no app named web (not_found, HTTP 404)");
    }

    #[test]
    fn context_comes_first_and_hint_last() {
        let err = Err::<(), _>(api(401))
            .context("loading apps")
            .context(Hint("run `meridian login`".into()))
            .unwrap_err();
        assert_eq!(
            render(&err),
            "loading apps: no app named web (not_found, HTTP 401)\nhint: run `meridian login`"
        );
    }

    #[test]
    fn the_servers_hint_comes_before_the_commands() {
        let refused = ClientError::Api {
            status: 403,
            code: ErrorCode::Forbidden,
            message: "this viewer token may only read; it cannot create apps".into(),
            hint: Some("a deployer or admin token may".into()),
        };
        assert_eq!(
            render(&refused.into()),
            "this viewer token may only read; it cannot create apps (forbidden, HTTP 403)\n\
             hint: a deployer or admin token may"
        );
        let refused = ClientError::Api {
            status: 401,
            code: ErrorCode::Unauthorized,
            message: "token t1 has expired".into(),
            hint: Some("ask an admin for a new token".into()),
        };
        let err = Err::<(), _>(refused)
            .context(Hint("the saved token is for another server".into()))
            .unwrap_err();
        assert_eq!(
            render(&err),
            "token t1 has expired (unauthorized, HTTP 401)\nhint: ask an admin for a new \
             token\nhint: the saved token is for another server"
        );
    }

    #[test]
    fn plain_chains_join_with_colons() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = Err::<(), _>(io).context("reading app.json").unwrap_err();
        assert_eq!(render(&err), "reading app.json: No such file");
    }
}
