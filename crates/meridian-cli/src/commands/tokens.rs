//! `meridian tokens ...`

use clap::builder::PossibleValuesParser;
use clap::{Args, Subcommand};
use meridian_api::tokens::{CreateToken, TokenCreated, TokenInfo};
use meridian_client::Client;
use meridian_core::Role;

use crate::output::{or_dash, Output, Table};
use crate::timestamp::format_unix;

/// Token subcommands.
#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create a token. Its secret is shown once.
    Create(CreateTokenArgs),
    /// List tokens (ids and roles; never the secrets).
    List,
    /// Revoke a token by id.
    Revoke {
        /// Token id, as `tokens list` shows it.
        id: String,
    },
}

/// `meridian tokens create`.
#[derive(Args)]
pub struct CreateTokenArgs {
    /// What the token may do.
    #[arg(long, value_parser = roles())]
    role: String,

    /// Lifetime in seconds [default: 90 days].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    ttl_seconds: Option<u64>,

    /// For deployers: an app the token may change (repeatable, comma-separated).
    #[arg(long = "app", value_name = "NAME", value_delimiter = ',')]
    apps: Vec<String>,
}

fn roles() -> PossibleValuesParser {
    PossibleValuesParser::new(Role::ALL.map(Role::as_str))
}

/// Runs a token subcommand.
pub async fn run(command: TokensCommand, client: &Client, out: &Output) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create(args) => {
            let request = CreateToken {
                role: args.role,
                ttl_seconds: args.ttl_seconds,
                apps: (!args.apps.is_empty()).then_some(args.apps),
            };
            let created = client.create_token(&request).await?;
            out.show(&created, || render_created(&created))
        }
        TokensCommand::List => {
            let tokens = client.tokens().await?;
            out.show(&tokens, || render_list(&tokens))
        }
        TokensCommand::Revoke { id } => {
            client.revoke_token(&id).await?;
            // The API answers 204 with no body; give JSON readers something to parse.
            out.show(&serde_json::json!({ "revoked": id }), || {
                format!("Revoked token {id}\n")
            })
        }
    }
}

fn render_created(created: &TokenCreated) -> String {
    let mut table = Table::headless();
    table.row(vec!["id:".into(), created.id.clone()]);
    table.row(vec!["token:".into(), created.token.clone()]);
    format!(
        "{}\nStore the token now; it is not shown again.\n",
        table.render()
    )
}

fn render_list(tokens: &[TokenInfo]) -> String {
    let mut table = Table::new(&["ID", "ROLE", "APPS", "CREATED", "EXPIRES", "REVOKED"]);
    for t in tokens {
        table.row(vec![
            t.id.clone(),
            t.role.clone(),
            or_dash(t.apps.as_ref().map(|a| a.join(",")).as_deref()),
            format_unix(t.created_at),
            format_unix(t.expires_at),
            or_dash(t.revoked_at.map(format_unix).as_deref()),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_shows_dashes_for_absent_values() {
        let tokens = [TokenInfo {
            id: "t1".into(),
            role: "viewer".into(),
            apps: None,
            created_at: 0,
            expires_at: 86_400,
            revoked_at: None,
        }];
        assert_eq!(
            render_list(&tokens),
            "ID  ROLE    APPS  CREATED               EXPIRES               REVOKED\n\
             t1  viewer  -     1970-01-01T00:00:00Z  1970-01-02T00:00:00Z  -\n"
        );
    }
}
