//! Turning a failed command into the one line (plus an optional hint) printed after `error: `.

use std::fmt;

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
/// `cannot reach <url>: <root cause>`.
pub fn render(err: &anyhow::Error) -> String {
    let hint = err.downcast_ref::<Hint>();
    let skip = usize::from(hint.is_some());
    let parts: Vec<String> = err.chain().skip(skip).map(|e| e.to_string()).collect();
    let mut text = parts.join(": ");
    if let Some(Hint(hint)) = hint {
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
    use meridian_client::ClientError;

    fn api(status: u16) -> anyhow::Error {
        ClientError::Api {
            status,
            code: ErrorCode::NotFound,
            message: "no app named web".into(),
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
    fn plain_chains_join_with_colons() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = Err::<(), _>(io).context("reading app.json").unwrap_err();
        assert_eq!(render(&err), "reading app.json: No such file");
    }
}
