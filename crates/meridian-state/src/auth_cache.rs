//! Tokens and the signing key in memory, so authenticating a request reads no database.
//!
//! The cache is a function of `state.db` alone: it is reloaded at start, after every applied
//! entry that touches tokens, and after a snapshot is installed, each time after the
//! transaction committed. A revocation is therefore visible here as soon as it is applied.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use sqlx::SqliteConnection;

use crate::settings;
use crate::tokens::{self, TokenRecord};

/// What the cache holds at one moment.
#[derive(Debug, Default)]
pub struct AuthView {
    /// The HMAC key (base64), once bootstrapped.
    pub signing_key: Option<String>,
    /// Every token by id, revoked ones included.
    pub tokens: HashMap<String, TokenRecord>,
}

/// Shared by the state machine (which reloads it) and the readers.
#[derive(Debug, Default)]
pub struct AuthCache {
    view: RwLock<Arc<AuthView>>,
}

impl AuthCache {
    /// The current view; cheap, and never blocks on the database.
    pub fn view(&self) -> Arc<AuthView> {
        self.view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Rebuilds the view from the tables.
    pub async fn reload(&self, c: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        let signing_key = settings::setting(c, "signing_key").await?;
        let tokens = tokens::tokens(c)
            .await?
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
        *self.view.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(AuthView {
            signing_key,
            tokens,
        });
        Ok(())
    }
}
