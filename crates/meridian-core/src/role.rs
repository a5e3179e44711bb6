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

    /// What a holder of this role, limited to `apps` when given, may do, in words: "may deploy
    /// app hello only".
    pub fn scope_text(self, apps: Option<&[Name]>) -> String {
        match (self, apps) {
            (Role::Admin, _) => "may do anything".into(),
            (Role::Deployer, None) => "may read, deploy any app and push images".into(),
            (Role::Deployer, Some(apps)) => format!("may deploy {} only", apps_text(apps)),
            (Role::Viewer, _) => "may only read".into(),
            (Role::Agent, _) => "is for worker agents only".into(),
            (Role::Router, _) => "is for edge routers only".into(),
        }
    }

    /// Why a holder of this role, limited to `apps` when given, may not do `action`, in words:
    /// the sentence to answer, and which tokens may, as advice.
    pub fn refusal(self, apps: Option<&[Name]>, action: &Action) -> (String, String) {
        let message = format!(
            "this {self} token {}; it cannot {action}",
            self.scope_text(apps)
        );
        (message, action.who_may())
    }
}

/// `app a`, `apps a and b`, `apps a, b and c`.
fn apps_text(apps: &[Name]) -> String {
    match apps {
        [] => "no app".into(),
        [one] => format!("app {one}"),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(Name::as_str).collect();
            format!("apps {} and {last}", init.join(", "))
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

impl Action {
    /// Which tokens may do this, in words: "a viewer, deployer or admin token may do this".
    pub fn who_may(&self) -> String {
        match self {
            Action::Read => "a viewer, deployer or admin token may do this".into(),
            Action::CreateApp => {
                "a deployer token not limited to some apps, or an admin token, may do this".into()
            }
            Action::WriteApp(app) => {
                format!("a deployer token for app {app}, or an admin token, may do this")
            }
            Action::PushImage => "a deployer or admin token may do this".into(),
            Action::WriteRegion | Action::ManageTokens | Action::ManageCluster => {
                "only an admin token may do this".into()
            }
            Action::AgentEndpoint => "only an agent token may do this".into(),
            Action::RouterEndpoint => "only a router token may do this".into(),
        }
    }
}

/// What the action does, in words: "change app web".
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Read => f.write_str("read the cluster's state"),
            Action::CreateApp => f.write_str("create apps"),
            Action::WriteApp(app) => write!(f, "change app {app}"),
            Action::WriteRegion => f.write_str("change regions"),
            Action::ManageTokens => f.write_str("manage tokens"),
            Action::ManageCluster => {
                f.write_str("manage the cluster's servers, nodes and settings")
            }
            Action::PushImage => f.write_str("push images"),
            Action::AgentEndpoint => f.write_str("act as a worker agent"),
            Action::RouterEndpoint => f.write_str("act as an edge router"),
        }
    }
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
    fn refusals_say_what_and_why_in_words() {
        let hello = [n("hello")];
        let (message, hint) = Role::Deployer.refusal(Some(&hello), &Action::WriteApp(n("web")));
        assert_eq!(
            message,
            "this deployer token may deploy app hello only; it cannot change app web"
        );
        assert_eq!(
            hint,
            "a deployer token for app web, or an admin token, may do this"
        );
        let two = [n("a"), n("b"), n("c")];
        let (message, _) = Role::Deployer.refusal(Some(&two), &Action::CreateApp);
        assert_eq!(
            message,
            "this deployer token may deploy apps a, b and c only; it cannot create apps"
        );
        let (message, hint) = Role::Viewer.refusal(None, &Action::ManageTokens);
        assert_eq!(
            message,
            "this viewer token may only read; it cannot manage tokens"
        );
        assert_eq!(hint, "only an admin token may do this");
        let (message, _) = Role::Agent.refusal(None, &Action::Read);
        assert_eq!(
            message,
            "this agent token is for worker agents only; it cannot read the cluster's state"
        );
    }

    #[test]
    fn no_refusal_reads_like_debug_output() {
        let actions = [
            Action::Read,
            Action::CreateApp,
            Action::WriteApp(n("web")),
            Action::WriteRegion,
            Action::ManageTokens,
            Action::ManageCluster,
            Action::PushImage,
            Action::AgentEndpoint,
            Action::RouterEndpoint,
        ];
        let scope = [n("web")];
        for role in Role::ALL {
            for apps in [None, Some(&scope[..])] {
                for action in &actions {
                    let (message, hint) = role.refusal(apps, action);
                    for text in [&message, &hint] {
                        assert!(
                            !text.contains(['(', ')', '"', '{', '}']) && !text.contains("Name"),
                            "{role} {action:?}: {text}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
