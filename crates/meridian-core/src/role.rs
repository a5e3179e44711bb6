//! Roles and what each may do. Default deny: an action not granted here is refused.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::name::Name;

/// What a token's holder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads, and writes apps (all, or those the token names).
    Deployer,
    /// Reads.
    Viewer,
    /// A worker node: only the agent endpoints.
    Agent,
    /// An edge router: only the router endpoints.
    Router,
}

impl Role {
    /// Every role, for listings and parsing.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Deployer,
        Role::Viewer,
        Role::Agent,
        Role::Router,
    ];

    /// Parses `admin`, `deployer`, ...
    pub fn parse(s: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Deployer => "deployer",
            Role::Viewer => "viewer",
            Role::Agent => "agent",
            Role::Router => "router",
        }
    }

    /// Whether a holder of this role, limited to `apps` when given, may do `action`.
    pub fn allows(self, apps: Option<&[Name]>, action: &Action) -> bool {
        match (self, action) {
            (Role::Admin, _) => true,
            (Role::Deployer | Role::Viewer, Action::Read) => true,
            (Role::Deployer, Action::WriteApp(app)) => apps.is_none_or(|a| a.contains(app)),
            (Role::Deployer, Action::CreateApp) => apps.is_none(),
            (Role::Deployer, Action::PushImage) => true,
            (Role::Agent, Action::AgentEndpoint) => true,
            (Role::Router, Action::RouterEndpoint) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a request wants to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read regions, apps and the cluster's shape.
    Read,
    /// Create a new app (a deployer limited to named apps may not).
    CreateApp,
    /// Change or delete this existing app.
    WriteApp(Name),
    /// Create, change or delete regions.
    WriteRegion,
    /// Create, list and revoke tokens.
    ManageTokens,
    /// Change cluster membership.
    ManageCluster,
    /// Upload images to the control plane (any deployer: images are not tied to one app).
    PushImage,
    /// The endpoints worker agents use.
    AgentEndpoint,
    /// The endpoints edge routers use.
    RouterEndpoint,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn default_deny_matrix() {
        let web = Action::WriteApp(n("web"));
        let table = [
            (Role::Admin, [true, true, true, true, true, true]),
            (Role::Deployer, [true, true, true, false, false, false]),
            (Role::Viewer, [true, false, false, false, false, false]),
            (Role::Agent, [false, false, false, false, false, false]),
            (Role::Router, [false, false, false, false, false, false]),
        ];
        let actions = [
            Action::Read,
            Action::CreateApp,
            web,
            Action::WriteRegion,
            Action::ManageTokens,
            Action::ManageCluster,
        ];
        for (role, expected) in table {
            for (a, want) in actions.iter().zip(expected) {
                assert_eq!(role.allows(None, a), want, "{role} {a:?}");
            }
        }
        assert!(Role::Agent.allows(None, &Action::AgentEndpoint));
        assert!(Role::Deployer.allows(Some(&[n("web")]), &Action::PushImage));
        assert!(!Role::Viewer.allows(None, &Action::PushImage));
        assert!(!Role::Agent.allows(None, &Action::PushImage));
        assert!(!Role::Router.allows(None, &Action::AgentEndpoint));
        assert!(Role::Router.allows(None, &Action::RouterEndpoint));
    }

    #[test]
    fn deployer_scoped_to_apps() {
        let scope = [n("web")];
        assert!(Role::Deployer.allows(Some(&scope), &Action::WriteApp(n("web"))));
        assert!(!Role::Deployer.allows(Some(&scope), &Action::WriteApp(n("db"))));
        assert!(!Role::Deployer.allows(Some(&scope), &Action::CreateApp));
        assert!(Role::Deployer.allows(Some(&scope), &Action::Read));
    }

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
