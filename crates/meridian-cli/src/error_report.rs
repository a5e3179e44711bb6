//! Turning a failed command into the one line (plus an optional hint) printed after `error: `.

use std::error::Error;
use std::fmt;

use meridian_api::ClientError;

/// Advice attached as the outermost context of an error; printed on its own line after it.
#[derive(Debug)]
pub struct Hint(pub String);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Renders an error chain as `context: context: cause`. API errors read
/// `<message> (<code>, HTTP <status>)`; an unreachable server reads
/// `cannot reach <url>: <root cause>`.
pub fn render(err: &anyhow::Error) -> String {
    let hint = err.downcast_ref::<Hint>();
    let skip = usize::from(hint.is_some());
    let mut parts = Vec::new();
    for cause in err.chain().skip(skip) {
        if let Some(client_err) = cause.downcast_ref::<ClientError>() {
            parts.push(render_client(client_err));
            // render_client already says what lies beneath.
            break;
        }
        parts.push(cause.to_string());
    }
    let mut text = parts.join(": ");
    if let Some(Hint(hint)) = hint {
        text.push_str("\nhint: ");
        text.push_str(hint);
    }
    text
}

fn render_client(err: &ClientError) -> String {
    match err {
        ClientError::Api {
            status,
            code,
            message,
        } => format!("{message} ({code}, HTTP {status})"),
        // reqwest's own chain repeats the URL at every level; the root cause is what helps
        // ("Connection refused", "dns error", "operation timed out").
        ClientError::Transport { url, source } => {
            let mut root: &dyn Error = source;
            while let Some(next) = root.source() {
                root = next;
            }
            format!("cannot reach {url}: {root}")
        }
        ClientError::Decode { .. } => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn api(status: u16) -> anyhow::Error {
        ClientError::Api {
            status,
            code: "not_found".into(),
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
