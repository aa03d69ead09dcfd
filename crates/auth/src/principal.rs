//! Who is asking: the principal a request was authenticated as.
//!
//! A principal is built by the API layer after it checked a credential (a
//! password, a robot secret, a personal access token, a bearer token); this
//! module only describes it. Disabled accounts never become principals.

use crate::rbac::Grant;

/// Robot account names start with this, as in Harbor (`robot$ci` at system
/// level, `robot$team+ci` in project `team`). `docker login` with such a
/// user name authenticates a robot.
pub const ROBOT_NAME_PREFIX: &str = "robot$";

/// The full name of a robot account: `robot$name` for a system robot,
/// `robot$project+name` for a project robot.
pub fn robot_account_name(project: Option<&str>, name: &str) -> String {
    match project {
        Some(project) => format!("{ROBOT_NAME_PREFIX}{project}+{name}"),
        None => format!("{ROBOT_NAME_PREFIX}{name}"),
    }
}

/// Whether a login name names a robot account.
pub fn is_robot_name(name: &str) -> bool {
    name.starts_with(ROBOT_NAME_PREFIX)
}

/// Checks a new user name: 1 to 255 characters, no control characters,
/// no `:` (Basic credentials split there), no surrounding spaces, and not
/// starting with [`ROBOT_NAME_PREFIX`] (logins route on it).
pub fn validate_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 255 {
        return Err("user name must be 1 to 255 characters".into());
    }
    if name.chars().any(|c| c.is_control() || c == ':') {
        return Err(format!(
            "user name {name:?} must not contain ':' or control characters"
        ));
    }
    if name.trim() != name {
        return Err(format!(
            "user name {name:?} must not start or end with spaces"
        ));
    }
    if is_robot_name(name) {
        return Err(format!(
            "user name {name:?} must not start with {ROBOT_NAME_PREFIX:?}, which names robot accounts"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credential was presented.
    Anonymous,
    /// A person (local, LDAP or OIDC account).
    User {
        id: i64,
        name: String,
        system_admin: bool,
        /// Ids of the groups the user is in; the caller resolves project
        /// roles through them.
        groups: Vec<i64>,
        /// Set when the user authenticated with a scoped personal access
        /// token: the token's grants narrow what the user's roles allow.
        limited_to: Option<Vec<Grant>>,
    },
    /// A robot account: exactly the permissions it lists.
    Robot {
        id: i64,
        name: String,
        permissions: Vec<Grant>,
        /// Milliseconds since the Unix epoch; `None` never expires.
        expires_at: Option<i64>,
    },
}

impl Principal {
    /// The account name, `None` for anonymous.
    pub fn name(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::User { name, .. } | Principal::Robot { name, .. } => Some(name),
        }
    }

    /// The JWT `sub` claim and the audit log's actor: the account name, or
    /// the empty string for anonymous (as Distribution's token servers do).
    pub fn subject(&self) -> &str {
        self.name().unwrap_or("")
    }

    pub fn is_system_admin(&self) -> bool {
        matches!(
            self,
            Principal::User {
                system_admin: true,
                ..
            }
        )
    }

    /// Robots cannot log into the management UI (Harbor's rule).
    pub fn may_use_ui(&self) -> bool {
        matches!(self, Principal::User { .. })
    }

    /// Kind for the audit log: `anonymous`, `user` or `robot`.
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User { .. } => "user",
            Principal::Robot { .. } => "robot",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robot_names() {
        assert_eq!(robot_account_name(None, "ci"), "robot$ci");
        assert_eq!(robot_account_name(Some("team"), "ci"), "robot$team+ci");
        assert!(is_robot_name("robot$team+ci"));
        assert!(!is_robot_name("robot"));
        assert!(!is_robot_name("alice"));
    }

    #[test]
    fn user_names() {
        for ok in ["alice", "Alice.Smith@example.com", "ü", "a b"] {
            assert!(validate_user_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "a:b",
            "robot$x",
            " alice",
            "alice ",
            "a\nb",
            long.as_str(),
        ] {
            assert!(validate_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subjects_and_kinds() {
        assert_eq!(Principal::Anonymous.subject(), "");
        assert_eq!(Principal::Anonymous.kind(), "anonymous");
        let robot = Principal::Robot {
            id: 1,
            name: "robot$ci".into(),
            permissions: vec![],
            expires_at: None,
        };
        assert_eq!(robot.subject(), "robot$ci");
        assert!(!robot.may_use_ui());
        assert!(!robot.is_system_admin());
        let admin = Principal::User {
            id: 1,
            name: "admin".into(),
            system_admin: true,
            groups: vec![],
            limited_to: None,
        };
        assert!(admin.is_system_admin());
        assert!(admin.may_use_ui());
        assert_eq!(admin.kind(), "user");
    }
}
