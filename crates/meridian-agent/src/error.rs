//! Why an agent stops. Everything else (an engine or server that is down for a while) is
//! logged where it is handled and retried.

use std::path::PathBuf;

/// A reason the agent cannot run at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A setting is unusable.
    #[error("invalid agent setting {field}: {problem}")]
    Config {
        /// The setting at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The token file could not be read.
    #[error("cannot read the token file {}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The token file holds nothing but white space.
    #[error("the token file {} is empty", path.display())]
    EmptyToken {
        /// The file.
        path: PathBuf,
    },
    /// The control plane answered the registration with a client error (unknown region, bad
    /// token, ...): retrying would not help.
    #[error(
        "the control plane at {server} refused to register node {node}: {message} \
         ({code}, HTTP {status})"
    )]
    Refused {
        /// The server that answered.
        server: String,
        /// The node name.
        node: String,
        /// HTTP status.
        status: u16,
        /// The error code from the answer.
        code: String,
        /// The error message from the answer.
        message: String,
    },
    /// The client for the control plane cannot be set up.
    #[error("cannot set up the control-plane client")]
    Client(#[source] meridian_client::BuildError),
    /// The Docker engine address cannot be used (unsupported scheme, malformed).
    #[error("cannot use the Docker engine at {host}: {detail}")]
    Docker {
        /// The address given.
        host: String,
        /// What is wrong.
        detail: String,
    },
}
